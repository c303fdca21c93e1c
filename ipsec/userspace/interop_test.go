package userspace

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
	"github.com/spiagent/spiagent/ipsec/userspace/tuntest"
)

// Interop with strongSwan 5.9.8's userspace IPsec (kernel-libipsec, ESP in
// UDP only), in the lab of swanlab_test.go: two charons negotiate (IKEv1,
// the ESP proposal under test) between routers a and b; the test reads the
// CHILD_SA keys from charon a's log, then
//   - captures ESP-in-UDP that charon b sends to a and decrypts it with
//     this package's dataplane (HandleESPInUDP);
//   - encrypts a packet with this package's dataplane using a's outbound
//     SA and sends it from a's namespace: charon b must decrypt it and
//     forward it to h2, where a socket receives it.
// It needs root (it skips without) and strongSwan (it fails without).

type childKeys struct {
	encrI, encrR, integI, integR []byte
	inSPI, outSPI                uint32
}

var (
	keyHdrRE  = regexp.MustCompile(`\[CHD\] <[^>]*> (encryption|integrity) (initiator|responder) key => (\d+) bytes`)
	keyLineRE = regexp.MustCompile(`\[CHD\] <[^>]*>\s+\d+: ((?:[0-9A-F]{2} )+)`)
	spiRE     = regexp.MustCompile(`\[CHD\] <[^>]*> adding (inbound|outbound) ESP SA`)
	spiLineRE = regexp.MustCompile(`SPI 0x([0-9a-f]{8})`)
)

// parseChildKeys reads the first CHILD_SA's keys and SPIs from a charon
// log written with chd = 4 and ike_name = yes.
func parseChildKeys(log []byte) (childKeys, error) {
	var k childKeys
	lines := strings.Split(string(log), "\n")
	for i := 0; i < len(lines); i++ {
		if m := keyHdrRE.FindStringSubmatch(lines[i]); m != nil {
			n, _ := strconv.Atoi(m[3])
			var b []byte
			for j := i + 1; j < len(lines) && len(b) < n; j++ {
				lm := keyLineRE.FindStringSubmatch(lines[j])
				if lm == nil {
					break
				}
				h, _ := hex.DecodeString(strings.ReplaceAll(lm[1], " ", ""))
				b = append(b, h...)
			}
			if len(b) != n {
				return k, fmt.Errorf("key %s %s: got %d of %d bytes", m[1], m[2], len(b), n)
			}
			dst := map[string]*[]byte{"encryption initiator": &k.encrI, "encryption responder": &k.encrR,
				"integrity initiator": &k.integI, "integrity responder": &k.integR}[m[1]+" "+m[2]]
			if *dst == nil {
				*dst = b
			}
		}
		if m := spiRE.FindStringSubmatch(lines[i]); m != nil && i+1 < len(lines) {
			sm := spiLineRE.FindStringSubmatch(lines[i+1])
			if sm == nil {
				continue
			}
			v, _ := strconv.ParseUint(sm[1], 16, 32)
			if m[1] == "inbound" && k.inSPI == 0 {
				k.inSPI = uint32(v)
			} else if m[1] == "outbound" && k.outSPI == 0 {
				k.outSPI = uint32(v)
			}
		}
	}
	if k.encrI == nil || k.encrR == nil || k.inSPI == 0 || k.outSPI == 0 {
		return k, fmt.Errorf("keys or SPIs missing from the log")
	}
	return k, nil
}

// rawUDPSender sends ESP-in-UDP as raw IPv4+UDP from a namespace (charon
// holds port 4500 there, so a UDP socket cannot be bound).
type rawUDPSender struct{ fd int }

func (r *rawUDPSender) SendESPInUDP(b []byte, src, dst netip.AddrPort) error {
	p := make([]byte, 28+len(b))
	writeIPv4(p, src.Addr(), dst.Addr(), protoUDP, len(p), 0x7777, 0)
	binary.BigEndian.PutUint16(p[20:], src.Port())
	binary.BigEndian.PutUint16(p[22:], dst.Port())
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(b))) // checksum 0: allowed for IPv4 (RFC 3948 §2.1)
	copy(p[28:], b)
	return unix.Sendto(r.fd, p, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()})
}

func TestStrongSwanInterop(t *testing.T) {
	requireRoot(t)
	requireStrongSwan(t)
	for _, tc := range []struct {
		prop   string
		cipher alg.Cipher
		integ  alg.Integrity
	}{
		{"aes128-sha1", alg.AES128, alg.HMACSHA1},
		{"aes128gcm16", alg.AESGCM128, alg.IntegNone},
		{"aes256-sha256", alg.AES256, alg.HMACSHA256},
		{"aes192-sha384", alg.AES192, alg.HMACSHA384},
		{"aes256gcm16", alg.AESGCM256, alg.IntegNone},
	} {
		t.Run(tc.prop, func(t *testing.T) { swanInterop(t, tc.prop, tc.cipher, tc.integ) })
	}
}

func swanInterop(t *testing.T, prop string, cipher alg.Cipher, integ alg.Integrity) {
	lab := newSwanLab(t)
	lab.startCharon(t, swanB, prop) // b responds, a initiates as soon as it is loaded
	lab.startCharon(t, swanA, prop)
	lab.waitChild(t, "a", 30*time.Second)
	lab.waitChild(t, "b", 30*time.Second)
	// The responder installs after Quick Mode's last message and libipsec
	// its routes after that: give the tunnel a few tries (bounded).
	var pingOut []byte
	var pingErr error
	for try := 0; try < 10; try++ {
		pingOut, pingErr = exec.Command("ip", "netns", "exec", lab.ns("h1"), "ping", "-c", "1", "-W", "1", "203.0.113.10").CombinedOutput()
		if pingErr == nil {
			break
		}
	}
	if pingErr != nil {
		t.Fatalf("charon tunnel does not carry ping after 10 tries: %v\n%s", pingErr, pingOut)
	}
	log, err := os.ReadFile(lab.log("a"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := parseChildKeys(log)
	if err != nil {
		t.Fatal(err)
	}
	nsA, err := netns.GetFromName(lab.ns("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer nsA.Close()
	nsH2, err := netns.GetFromName(lab.ns("h2"))
	if err != nil {
		t.Fatal(err)
	}
	defer nsH2.Close()

	// Our dataplane plays router A with charon A's keys. A is the IKE
	// initiator: initiator keys protect A->B.
	dev := tuntest.New("interop", 16)
	sender := &rawUDPSender{fd: -1}
	inNS(t, nsA, func() { sender.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW) })
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sender.fd)
	dp, err := New(Config{TUN: dev, UDP: sender, SweepInterval: -1, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	ctx := context.Background()
	encap := &ipsec.UDPEncap{SrcPort: 4500, DstPort: 4500}
	out := ipsec.SA{Src: addrA, Dst: addrB, Proto: alg.ESP, SPI: keys.outSPI, Dir: ipsec.DirOut, Encap: encap,
		Cipher: cipher, CipherKey: keys.encrI, Integ: integ, IntegKey: keys.integI, ReqID: 1}
	in := out
	in.Src, in.Dst, in.SPI, in.Dir, in.CipherKey, in.IntegKey, in.ReplayWindow = addrB, addrA, keys.inSPI, ipsec.DirIn, keys.encrR, keys.integR, 64
	for _, sa := range []ipsec.SA{out, in} {
		if err := dp.AddSA(ctx, sa); err != nil {
			t.Fatal(err)
		}
	}
	// Charon A already used the first sequence numbers of this SA; start
	// well ahead of them so charon B's replay window accepts ours.
	s, _ := dp.sad.out.get(outKey{reqID: 1, proto: alg.ESP, dst: addrB})
	s.seq.Store(1 << 20)
	tmpl := []ipsec.Template{{Proto: alg.ESP, Mode: alg.Tunnel, Src: addrA, Dst: addrB, ReqID: 1}}
	if err := dp.AddPolicy(ctx, ipsec.Policy{ID: 1, Dir: ipsec.DirOut, Selector: ipsec.Selector{Src: lanA, Dst: lanB}, Action: ipsec.ActionProtect, Templates: tmpl}); err != nil {
		t.Fatal(err)
	}

	// strongSwan to us first: ours moves charon B's replay window far
	// ahead, after which B drops charon A's own packets as replays.
	t.Run("strongswan-to-ours", func(t *testing.T) {
		// Capture ESP-in-UDP arriving at A from charon B, while H1 pings
		// H2 (the replies are B->A ESP).
		var fd int
		inNS(t, nsA, func() {
			ifc, e := net.InterfaceByName("a-b")
			if e != nil {
				err = e
				return
			}
			if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP))); err != nil {
				return
			}
			err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifc.Index})
		})
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
		// Enough pings that a loaded machine losing a few still yields
		// three; the ping is stopped once three are decrypted.
		ping := exec.Command("ip", "netns", "exec", lab.ns("h1"), "ping", "-c", "50", "-i", "0.2", "203.0.113.10")
		if err := ping.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { ping.Process.Kill(); ping.Wait() }()
		buf := make([]byte, 65536)
		got := 0
		deadline := time.Now().Add(10 * time.Second)
		for got < 3 && time.Now().Before(deadline) {
			n, err := unix.Read(fd, buf)
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				t.Logf("capture: %v", err)
			}
			if err != nil || n < 36 || buf[9] != protoUDP || binary.BigEndian.Uint16(buf[22:]) != 4500 {
				continue
			}
			payload := buf[28:n]
			if binary.BigEndian.Uint32(payload) != keys.inSPI {
				continue
			}
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[12:16])), binary.BigEndian.Uint16(buf[20:]))
			dp.HandleESPInUDP(payload, src, netip.AddrPortFrom(addrA, 4500))
			select {
			case inner := <-dev.Outbound:
				_, _, f, ok := parseIPv4(inner)
				if !ok || f.proto != protoICMP || f.src != hostB || f.dst != hostA || inner[20] != 0 {
					t.Fatalf("decrypted packet is not H2's echo reply: %x", inner)
				}
				got++
			case <-time.After(time.Second):
				t.Fatalf("charon B's ESP did not decrypt here: stats %+v counters %+v", dp.Stats(), counters(t, dp, addrA, alg.ESP, keys.inSPI))
			}
		}
		if got < 3 {
			t.Fatalf("decrypted %d of charon B's packets, want 3", got)
		}
		if c := counters(t, dp, addrA, alg.ESP, keys.inSPI); c.AuthFailures != 0 || c.Packets != uint64(got) {
			t.Fatalf("counters %+v", c)
		}
	})
	t.Run("ours-to-strongswan", func(t *testing.T) {
		var srv *net.UDPConn
		inNS(t, nsH2, func() { srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(203, 0, 113, 10), Port: 7777}) })
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		msg := []byte("encrypted by spiagent, decrypted by strongSwan libipsec")
		for range 3 {
			dev.Inbound <- udpPacket(hostA, hostB, 5555, 7777, msg)
		}
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2000)
		n, from, err := srv.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("H2 received nothing from our ESP through charon B: %v (stats %+v)", err, dp.Stats())
		}
		if !bytes.Equal(buf[:n], msg) || from.Addr() != hostA || from.Port() != 5555 {
			t.Fatalf("H2 got %q from %s", buf[:n], from)
		}
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

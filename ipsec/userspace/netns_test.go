package userspace

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
	"github.com/spiagent/spiagent/ipsec/userspace/rawnet"
	"github.com/spiagent/spiagent/ipsec/userspace/tun"
)

// Root tests: two dataplanes in two network namespaces joined by a veth,
// each with a real TUN and raw sockets (or its own UDP-4500 socket):
//
//	[upT..a: 198.51.100.1 on lo, TUN]  192.0.2.1 --veth-- 192.0.2.2  [upT..b: 203.0.113.1 on lo, TUN]
//
// The namespaces have no route between the two LAN addresses except the
// ones the dataplanes put into their TUNs, so a ping that gets through went
// through ESP.

var nsSeq atomic.Int32

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, TUN, raw sockets); run as root to exercise the real kernel path")
	}
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs fn on a locked thread switched into ns, then switches the
// thread back before releasing it, so no other goroutine (and never the
// process's main thread) is left in ns: lab scripts kill the processes
// they find in their namespaces.
func inNS(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		fn()
		// Back to where the thread was, then release it. If that fails
		// the thread stays locked and dies with the goroutine.
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("setns: %v", err)
	}
}

type nsSide struct {
	name string
	ns   netns.NsHandle
	dp   *Dataplane
	tun  *tun.Device
	addr netip.Addr // on the veth
	lan  netip.Addr // on lo
}

// topology builds the two router namespaces and returns them with
// dataplanes running. udp selects the dataplanes' own UDP-4500 sockets for
// ciphertext instead of raw sockets.
func topology(t testing.TB, udp bool) (a, b *nsSide) {
	a, b, _ = buildTopology(t, udp, false, false)
	return a, b
}

// buildTopology is topology, optionally with a host namespace behind each
// router (the same 4-namespace layout as the strongSwan lab of swanlab_test.go):
//
//	h1 198.51.100.10 -- 198.51.100.1 a 192.0.2.1 -- 192.0.2.2 b 203.0.113.1 -- 203.0.113.10 h2
//
// Without hosts the LAN addresses sit on the routers' loopbacks. tso opens
// the TUNs with TCP segmentation offload.
func buildTopology(t testing.TB, udp, hosts, tso bool) (a, b *nsSide, hostNS [2]string) {
	t.Helper()
	p := fmt.Sprintf("upT%d%d", os.Getpid()%10000, nsSeq.Add(1))
	a = &nsSide{name: p + "a", addr: addrA, lan: netip.MustParseAddr("198.51.100.1")}
	b = &nsSide{name: p + "b", addr: addrB, lan: netip.MustParseAddr("203.0.113.1")}
	names := []string{a.name, b.name}
	if hosts {
		hostNS = [2]string{p + "h1", p + "h2"}
		names = append(names, hostNS[:]...)
	}
	for _, n := range names {
		run(t, "ip", "netns", "add", n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
		run(t, "ip", "-n", n, "link", "set", "lo", "up")
		for _, k := range []string{"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", "net.ipv4.ip_forward=1"} {
			run(t, "ip", "netns", "exec", n, "sysctl", "-qw", k)
		}
	}
	for _, s := range []*nsSide{a, b} {
		ns, err := netns.GetFromName(s.name)
		if err != nil {
			t.Fatal(err)
		}
		s.ns = ns
		t.Cleanup(func() { ns.Close() })
	}
	run(t, "ip", "link", "add", p+"va", "netns", a.name, "type", "veth", "peer", "name", p+"vb", "netns", b.name)
	for i, s := range []*nsSide{a, b} {
		dev := p + "v" + s.name[len(s.name)-1:]
		run(t, "ip", "-n", s.name, "link", "set", dev, "up")
		run(t, "ip", "-n", s.name, "addr", "add", s.addr.String()+"/24", "dev", dev)
		if !hosts {
			run(t, "ip", "-n", s.name, "addr", "add", s.lan.String()+"/32", "dev", "lo")
			continue
		}
		hdev, rdev := fmt.Sprintf("%sh%d", p, i+1), fmt.Sprintf("%sr%d", p, i+1)
		run(t, "ip", "link", "add", rdev, "netns", s.name, "type", "veth", "peer", "name", hdev, "netns", hostNS[i])
		host := s.lan.Next().Next().Next().Next().Next().Next().Next().Next().Next() // .10
		for _, c := range [][]string{
			{"-n", s.name, "link", "set", rdev, "up"},
			{"-n", s.name, "addr", "add", s.lan.String() + "/24", "dev", rdev},
			{"-n", hostNS[i], "link", "set", hdev, "up"},
			{"-n", hostNS[i], "addr", "add", host.String() + "/24", "dev", hdev},
			{"-n", hostNS[i], "route", "add", "default", "via", s.lan.String()},
		} {
			run(t, append([]string{"ip"}, c...)...)
		}
	}
	for _, s := range []*nsSide{a, b} {
		startDataplane(t, s, udp, tso)
	}
	return a, b, hostNS
}

func startDataplane(t testing.TB, s *nsSide, udp, tso bool) {
	t.Helper()
	var dpp atomic.Pointer[Dataplane]
	var err error
	inNS(t, s.ns, func() {
		var dev *tun.Device
		open := tun.Open
		if tso {
			open = tun.OpenOffload
		}
		if dev, err = open("upTtun", 1400); err != nil {
			return
		}
		s.tun = dev
		cfg := Config{TUN: dev, Router: dev, Logger: quietLogger(), EventQueue: 1024}
		var raw *rawnet.Conn
		if !udp {
			raw, err = rawnet.Open(func(p [][]byte) {
				if d := dpp.Load(); d != nil {
					d.HandleIPBatch(p)
				}
			})
			if err != nil {
				return
			}
			cfg.Link = raw
			t.Cleanup(func() { raw.Close() })
		}
		if s.dp, err = New(cfg); err != nil {
			return
		}
		dpp.Store(s.dp)
		if udp {
			var l *UDPListener
			if l, err = s.dp.ListenESPInUDP(netip.AddrPortFrom(s.addr, 4500)); err != nil {
				return
			}
			t.Cleanup(func() { l.Close() })
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.dp.Close() })
}

// installNS installs fixed-key SAs and policies between the two LAN
// addresses: A->B SPIs 0x11xx, B->A 0x21xx.
func installNS(t testing.TB, a, b *nsSide, layers []layer, skipOutA bool) {
	t.Helper()
	ctx := context.Background()
	for dir, pair := range [][2]*nsSide{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		var tm []ipsec.Template
		for i, l := range layers {
			sa := ipsec.SA{Src: from.addr, Dst: to.addr, Proto: l.proto, SPI: spiFor(byte(dir+1), i), Mode: alg.Tunnel,
				Cipher: l.cipher, CipherKey: testKey(l.ckey, byte(dir*10+i)), Integ: l.integ,
				IntegKey: testKey(l.integ.KeyLen(), byte(dir*10+i+5)), ReqID: 1}
			if l.encap {
				sa.Encap = &ipsec.UDPEncap{SrcPort: 4500, DstPort: 4500}
			}
			in := sa
			in.Dir, in.ReplayWindow = ipsec.DirIn, 1024
			if err := to.dp.AddSA(ctx, in); err != nil {
				t.Fatal(err)
			}
			if !(skipOutA && dir == 0) {
				out := sa
				out.Dir = ipsec.DirOut
				if err := from.dp.AddSA(ctx, out); err != nil {
					t.Fatal(err)
				}
			}
			tm = append(tm, ipsec.Template{Proto: l.proto, Mode: alg.Tunnel, Src: from.addr, Dst: to.addr, ReqID: 1})
		}
		sel := ipsec.Selector{Src: netip.PrefixFrom(from.lan, 24).Masked(), Dst: netip.PrefixFrom(to.lan, 24).Masked()}
		if err := from.dp.AddPolicy(ctx, ipsec.Policy{ID: 1, Dir: ipsec.DirOut, Selector: sel, Action: ipsec.ActionProtect, Templates: tm}); err != nil {
			t.Fatal(err)
		}
		if err := to.dp.AddPolicy(ctx, ipsec.Policy{ID: 1, Dir: ipsec.DirIn, Selector: sel, Action: ipsec.ActionProtect, Templates: tm}); err != nil {
			t.Fatal(err)
		}
	}
}

func ping(a, b *nsSide, count int) ([]byte, error) {
	return exec.Command("ip", "netns", "exec", a.name, "ping", "-n", "-q", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2",
		"-I", a.lan.String(), b.lan.String()).CombinedOutput()
}

func TestNetnsTunnel(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name     string
		udp, tso bool
		layers   []layer
	}{
		{"esp-aes-gcm", false, false, []layer{{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20}}},
		{"ah-sha+esp-des-sha", false, false, []layer{
			{proto: alg.ESP, cipher: alg.DES, ckey: 8, integ: alg.HMACSHA1},
			{proto: alg.AH, integ: alg.HMACSHA1}}},
		{"esp-in-udp-aes-cbc-sha1", true, false, []layer{{proto: alg.ESP, cipher: alg.AES128, ckey: 16, integ: alg.HMACSHA1, encap: true}}},
		{"esp-aes-gcm-tso", false, true, []layer{{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20}}},
		{"esp-in-udp-aes-gcm-tso", true, true, []layer{{proto: alg.ESP, cipher: alg.AESGCM256, ckey: 36, encap: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, _ := buildTopology(t, tc.udp, false, tc.tso)
			if out, err := ping(a, b, 1); err == nil {
				t.Fatalf("ping got through before any policy: %s", out)
			}
			installNS(t, a, b, tc.layers, false)
			if out, err := ping(a, b, 5); err != nil {
				t.Fatalf("ping through the tunnel: %v\n%s\nA %+v\nB %+v", err, out, a.dp.Stats(), b.dp.Stats())
			}
			for i, l := range tc.layers {
				out := counters(t, a.dp, addrB, l.proto, spiFor(1, i))
				in := counters(t, b.dp, addrB, l.proto, spiFor(1, i))
				back := counters(t, a.dp, addrA, l.proto, spiFor(2, i))
				if out.Packets < 5 || in.Packets < 5 || back.Packets < 5 || in.AuthFailures+in.ReplayErrors != 0 {
					t.Fatalf("layer %d: out %+v in %+v back %+v", i, out, in, back)
				}
			}
			udpFlow(t, a, b, 200)
			tcpTransfer(t, a, b, 8<<20)
			if tc.tso && (a.tun.Segmented() == 0 || b.tun.Coalesced() == 0) {
				t.Fatalf("offload on, but A's TUN split %d super-packets and B's merged %d", a.tun.Segmented(), b.tun.Coalesced())
			}
		})
	}
}

// tcpTransfer sends n bytes of a known pattern over TCP through the tunnel
// and checks that exactly those bytes arrive (with TSO, the segments the
// TUN cut must carry correct sequence numbers and checksums).
func tcpTransfer(t *testing.T, a, b *nsSide, n int) {
	t.Helper()
	var ln net.Listener
	var err error
	inNS(t, b.ns, func() { ln, err = net.Listen("tcp4", netip.AddrPortFrom(b.lan, 5002).String()) })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sums := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sums <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		k, _ := io.Copy(h, c)
		sums <- fmt.Sprintf("%d %x", k, h.Sum(nil))
	}()
	var c net.Conn
	inNS(t, a.ns, func() {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.lan, 0)), Timeout: 5 * time.Second}
		c, err = d.Dial("tcp4", netip.AddrPortFrom(b.lan, 5002).String())
	})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("TCP write: %v", err)
	}
	c.Close()
	want := fmt.Sprintf("%d %x", n, sha256.Sum256(data))
	if got := <-sums; got != want {
		t.Fatalf("TCP transfer: got %s, want %s", got, want)
	}
}

// udpFlow sends n datagrams from A's LAN address to B's and counts them.
func udpFlow(t *testing.T, a, b *nsSide, n int) {
	t.Helper()
	var srv, cli *net.UDPConn
	var err error
	inNS(t, b.ns, func() {
		srv, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.lan, 9999)))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	inNS(t, a.ns, func() {
		cli, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.lan, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.lan, 9999)))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	got := make(chan int)
	go func() {
		buf := make([]byte, 2000)
		k := 0
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		for k < n {
			if _, err := srv.Read(buf); err != nil {
				break
			}
			k++
		}
		got <- k
	}()
	msg := make([]byte, 1000)
	for i := range n {
		msg[0] = byte(i)
		cli.Write(msg)
		if i%10 == 9 { // paced: this checks the path, not its capacity
			time.Sleep(3 * time.Millisecond)
		}
	}
	if k := <-got; k < n*8/10 {
		t.Fatalf("%d of %d UDP datagrams arrived", k, n)
	}
}

// TestNetnsAcquireAndInvalidSPI: traffic without an SA raises one acquire
// and is sent once the SA is installed; ESP with an unknown SPI from a
// real raw socket raises an invalid-SPI event.
func TestNetnsAcquireAndInvalidSPI(t *testing.T) {
	requireRoot(t)
	a, b := topology(t, false)
	gcm := []layer{{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20}}
	installNS(t, a, b, gcm, true) // everything but A's outbound SA
	res := make(chan error)
	go func() { _, err := ping(a, b, 3); res <- err }()
	ev := waitEvent(t, a.dp, ipsec.EventAcquire)
	if ev.SA.Dst != addrB || ev.Trigger.Dst.Addr() != b.lan {
		t.Fatalf("acquire %+v", ev)
	}
	l := gcm[0]
	sa := ipsec.SA{Src: addrA, Dst: addrB, Proto: alg.ESP, SPI: spiFor(1, 0), Dir: ipsec.DirOut, Cipher: l.cipher, CipherKey: testKey(l.ckey, 0), ReqID: 1}
	if err := a.dp.AddSA(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Fatalf("ping after acquire: %v", err)
	}
	if st := a.dp.Stats(); st.AcquireQueued == 0 {
		t.Fatalf("nothing was queued: %+v", st)
	}

	// An ESP packet for SPI 0xdeadbeef from A's namespace, through the
	// kernel (which builds the IP header) to B's raw socket.
	var err error
	inNS(t, a.ns, func() {
		var fd int
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 50); err != nil {
			return
		}
		defer unix.Close(fd)
		payload := []byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
		for range 3 {
			if err = unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Addr: addrB.As4()}); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, b.dp, ipsec.EventInvalidSPI)
	want := ipsec.SAKey{Dst: addrB, Proto: alg.ESP, SPI: 0xdeadbeef}
	if ev.SA != want || ev.Src != addrA {
		t.Fatalf("invalid SPI event %+v", ev)
	}
	waitFor(t, "3 invalid SPIs seen", func() bool { return b.dp.Stats().InvalidSPI.Seen == 3 })
	if st := b.dp.Stats().InvalidSPI; st.Reported != 1 || st.Duplicates != 2 {
		t.Fatalf("invalid SPI stats %+v", st)
	}
}

func waitEvent(t *testing.T, dp *Dataplane, kind ipsec.EventKind) ipsec.Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-dp.Events():
			if ev.Kind == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event", kind)
		}
	}
}

// TestNetnsOpen checks the production wiring (Open: TUN, routes, raw
// sockets) between two namespaces.
func TestNetnsOpen(t *testing.T) {
	requireRoot(t)
	a, b := topology(t, false) // for the namespaces and addresses
	a.dp.Close()
	b.dp.Close()
	for _, s := range []*nsSide{a, b} {
		var err error
		inNS(t, s.ns, func() { s.dp, err = Open("upTopen", 0, Config{Logger: quietLogger()}) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.dp.Close() })
	}
	installNS(t, a, b, []layer{{proto: alg.ESP, cipher: alg.AES256, ckey: 32, integ: alg.HMACSHA512}}, false)
	if out, err := ping(a, b, 3); err != nil {
		t.Fatalf("ping through Open's dataplanes: %v\n%s", err, out)
	}
	if c := counters(t, b.dp, addrB, alg.ESP, spiFor(1, 0)); c.Packets < 3 {
		t.Fatalf("B counters %+v", c)
	}
	tcpTransfer(t, a, b, 4<<20)
}

package xfrm

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// Tests that need a kernel with ESP. They run in the qemu guest that
// lab/qemu boots (SPIAGENT_XFRM_GUEST=1) and skip elsewhere.

type tunnelSpec struct {
	cipher  alg.Cipher
	keyLen  int
	integ   alg.Integrity
	mode    alg.Mode
	encap   bool
	ahOuter bool // an AH+ESP bundle: ESP inside, AH (transport) outside
}

// tunnel is a pair of namespaces with SAs and policies both ways.
type tunnel struct {
	a, b       *testNS
	da, db     *Dataplane
	spec       tunnelSpec
	esp, ah    [2]ipsec.SA // [0] A->B, [1] B->A
	srcA, dstB netip.AddrPort
}

// sa builds the SA from x to y with fresh keys. Its selector is the traffic
// it carries (the kernel checks it for transport-mode SAs, including the AH
// of an AH+ESP tunnel bundle, against the decapsulated packet).
func (s tunnelSpec) sa(t *testing.T, proto alg.Protocol, x, y netip.Addr, spi uint32) ipsec.SA {
	sa := ipsec.SA{Src: x, Dst: y, Proto: proto, SPI: spi, Mode: s.mode, ReqID: 1, ReplayWindow: 64}
	sa.Selector = ipsec.Selector{Src: netA, Dst: netB}
	if x == outerB {
		sa.Selector = sa.Selector.Mirror()
	}
	if proto == alg.ESP {
		sa.Cipher, sa.CipherKey = s.cipher, randKey(t, s.keyLen)
		if s.encap {
			sa.Encap = &ipsec.UDPEncap{SrcPort: 4500, DstPort: 4500}
		}
		if !s.cipher.IsAEAD() {
			sa.Integ, sa.IntegKey = s.integ, randKey(t, s.integ.KeyLen())
		}
	} else {
		sa.Integ, sa.IntegKey = alg.HMACSHA1, randKey(t, 20)
		sa.Mode = alg.Transport
	}
	if s.mode == alg.Transport {
		sa.Selector = ipsec.Selector{Src: netip.PrefixFrom(x, 32), Dst: netip.PrefixFrom(y, 32)}
	}
	return sa
}

func (s tunnelSpec) templates(x, y netip.Addr) []ipsec.Template {
	ts := []ipsec.Template{{Proto: alg.ESP, Mode: s.mode, Src: x, Dst: y, ReqID: 1}}
	if s.ahOuter {
		ts = append(ts, ipsec.Template{Proto: alg.AH, Mode: alg.Transport, Src: x, Dst: y, ReqID: 1})
	}
	return ts
}

// install puts the SA on both ends: outbound at its source, inbound at its
// destination.
func install(t *testing.T, out, in *Dataplane, sa ipsec.SA) {
	t.Helper()
	o, i := sa, sa
	o.Dir, i.Dir = ipsec.DirOut, ipsec.DirIn
	o.ReplayWindow = 0
	must(t, out.AddSA(bg, o))
	must(t, in.AddSA(bg, i))
}

func setupTunnel(t *testing.T, spec tunnelSpec, withSAs bool, opts ...Option) *tunnel {
	t.Helper()
	tu := &tunnel{spec: spec}
	tu.a, tu.b = topology(t)
	tu.da, tu.db = tu.a.dataplane(opts...), tu.b.dataplane(opts...)
	selAB, selBA := ipsec.Selector{Src: netA, Dst: netB}, ipsec.Selector{Src: netB, Dst: netA}
	tu.srcA, tu.dstB = netip.AddrPortFrom(innerA, 4000), netip.AddrPortFrom(innerB, 5000)
	if spec.mode == alg.Transport {
		selAB = ipsec.Selector{Src: netip.PrefixFrom(outerA, 32), Dst: netip.PrefixFrom(outerB, 32), Proto: unix.IPPROTO_UDP}
		selBA = selAB.Mirror()
		tu.srcA, tu.dstB = netip.AddrPortFrom(outerA, 4000), netip.AddrPortFrom(outerB, 5000)
	}
	if spec.encap {
		tu.a.encapSocket(t, outerA)
		tu.b.encapSocket(t, outerB)
	}
	// policies: out on the sender, in (and fwd, for tunnels) on the receiver
	for _, p := range []struct {
		d   *Dataplane
		dir ipsec.Direction
		sel ipsec.Selector
		x   netip.Addr
		y   netip.Addr
	}{
		{tu.da, ipsec.DirOut, selAB, outerA, outerB}, {tu.db, ipsec.DirIn, selAB, outerA, outerB},
		{tu.db, ipsec.DirOut, selBA, outerB, outerA}, {tu.da, ipsec.DirIn, selBA, outerB, outerA},
		{tu.db, ipsec.DirFwd, selAB, outerA, outerB}, {tu.da, ipsec.DirFwd, selBA, outerB, outerA},
	} {
		if p.dir == ipsec.DirFwd && spec.mode == alg.Transport {
			continue
		}
		must(t, p.d.AddPolicy(bg, ipsec.Policy{ID: 1, Dir: p.dir, Priority: 1000, Selector: p.sel, Templates: spec.templates(p.x, p.y)}))
	}
	if withSAs {
		tu.addSAs(t)
	}
	return tu
}

// addSAs installs both directions; inbound SPIs come from AllocSPI.
func (tu *tunnel) addSAs(t *testing.T) {
	t.Helper()
	spiAB, err := tu.db.AllocSPI(bg, alg.ESP, outerA, outerB)
	must(t, err)
	spiBA, err := tu.da.AllocSPI(bg, alg.ESP, outerB, outerA)
	must(t, err)
	tu.esp = [2]ipsec.SA{tu.spec.sa(t, alg.ESP, outerA, outerB, spiAB), tu.spec.sa(t, alg.ESP, outerB, outerA, spiBA)}
	install(t, tu.da, tu.db, tu.esp[0])
	install(t, tu.db, tu.da, tu.esp[1])
	if tu.spec.ahOuter {
		tu.ah = [2]ipsec.SA{tu.spec.sa(t, alg.AH, outerA, outerB, 0xa4000001), tu.spec.sa(t, alg.AH, outerB, outerA, 0xa4000002)}
		install(t, tu.da, tu.db, tu.ah[0])
		install(t, tu.db, tu.da, tu.ah[1])
	}
}

// encapSocket opens a UDP socket on addr:4500 with UDP_ENCAP_ESPINUDP, as the
// IKE daemon's NAT-T socket would be. It stays open until the test ends.
func (n *testNS) encapSocket(t *testing.T, addr netip.Addr) {
	c := n.udp(netip.AddrPortFrom(addr, 4500))
	must(t, EnableUDPEncap(c))
}

// checkCounters reads the SA at both ends: the same packet count, n or more,
// bytes at least the UDP datagrams' size, no failures.
func checkCounters(t *testing.T, out, in *Dataplane, key ipsec.SAKey, n int, minBytes uint64) {
	t.Helper()
	co, err := out.Counters(bg, key)
	must(t, err)
	ci, err := in.Counters(bg, key)
	must(t, err)
	t.Logf("SA %s: out %d pkts %d bytes, in %d pkts %d bytes, auth fail %d, replay %d", key, co.Packets, co.Bytes, ci.Packets, ci.Bytes, ci.AuthFailures, ci.ReplayErrors)
	if co.Packets != uint64(n) || ci.Packets != uint64(n) {
		t.Errorf("SA %s: %d packets out, %d in; want %d", key, co.Packets, ci.Packets, n)
	}
	if co.Bytes < minBytes || ci.Bytes < minBytes {
		t.Errorf("SA %s: %d bytes out, %d in; want at least %d", key, co.Bytes, ci.Bytes, minBytes)
	}
	if ci.AuthFailures != 0 || ci.ReplayErrors != 0 {
		t.Errorf("SA %s: %d auth failures, %d replay errors", key, ci.AuthFailures, ci.ReplayErrors)
	}
	if co.AddTime.IsZero() || ci.LastUse.IsZero() {
		t.Errorf("SA %s: add time %v, last use %v", key, co.AddTime, ci.LastUse)
	}
}

// traffic runs n datagrams A->B and 2 B->A and checks the ESP (and AH)
// counters on both ends.
func (tu *tunnel) traffic(t *testing.T, n int) {
	t.Helper()
	if got := flow(t, tu.a, tu.b, tu.srcA, tu.dstB, n, 3*time.Second); got != n {
		t.Fatalf("A->B: %d of %d datagrams arrived", got, n)
	}
	back := flow(t, tu.b, tu.a, netip.AddrPortFrom(tu.dstB.Addr(), 5001), netip.AddrPortFrom(tu.srcA.Addr(), 4001), 2, 3*time.Second)
	if back != 2 {
		t.Fatalf("B->A: %d of 2 datagrams arrived", back)
	}
	// XFRM counts what it protects: the inner IP packet in tunnel mode, the
	// transport payload (UDP header and data) in transport mode.
	per := uint64(8 + 28)
	if tu.spec.mode == alg.Tunnel {
		per += 20
	}
	minBytes := uint64(n) * per
	checkCounters(t, tu.da, tu.db, tu.esp[0].Key(), n, minBytes)
	checkCounters(t, tu.db, tu.da, tu.esp[1].Key(), 2, 2*per)
	if tu.spec.ahOuter {
		checkCounters(t, tu.da, tu.db, tu.ah[0].Key(), n, minBytes)
	}
	// One dump gives the same counters as the per-SA reads.
	for _, d := range []*Dataplane{tu.da, tu.db} {
		all, err := d.AllCounters(bg)
		must(t, err)
		for _, sa := range append(tu.esp[:], tu.ah[:]...) {
			if sa.SPI == 0 {
				continue
			}
			one, err := d.Counters(bg, sa.Key())
			must(t, err)
			if got, ok := all[sa.Key()]; !ok || got.Packets != one.Packets || got.Bytes != one.Bytes {
				t.Errorf("AllCounters[%s] = %+v (%v), Counters = %+v", sa.Key(), got, ok, one)
			}
		}
		if len(all) != len(d.sas) {
			t.Errorf("AllCounters has %d SAs, the dataplane owns %d", len(all), len(d.sas))
		}
	}
	for _, d := range []*Dataplane{tu.da, tu.db} {
		s := d.Stats()
		if s.InvalidSPI.Seen != 0 || (d.nft != nil && s.WatchPackets != 0) {
			t.Errorf("valid traffic reached the invalid-SPI detector: %+v", s)
		}
		if d.nft == nil && s.WatchKnown == 0 {
			t.Errorf("raw sockets saw no known-SPI packets: %+v", s)
		}
	}
}

func TestGuestSupported(t *testing.T) {
	requireGuest(t)
	n := newTestNS(t)
	var ok bool
	var why string
	n.do(func() error { ok, why = Supported(); return nil })
	if !ok {
		t.Fatalf("Supported() = false: %s", why)
	}
	t.Log(why)
}

func TestGuestESPTunnel(t *testing.T) {
	requireGuest(t)
	for _, tc := range []struct {
		name string
		spec tunnelSpec
	}{
		{"aes128-cbc/hmac-sha1-96", tunnelSpec{cipher: alg.AES128, keyLen: 16, integ: alg.HMACSHA1}},
		{"aes256-cbc/hmac-sha2-256-128", tunnelSpec{cipher: alg.AES256, keyLen: 32, integ: alg.HMACSHA256}},
		{"aes192-cbc/hmac-sha2-384-192", tunnelSpec{cipher: alg.AES192, keyLen: 24, integ: alg.HMACSHA384}},
		{"aes128-cbc/hmac-sha2-512-256", tunnelSpec{cipher: alg.AES128, keyLen: 16, integ: alg.HMACSHA512}},
		{"aes128-gcm-16", tunnelSpec{cipher: alg.AESGCM128, keyLen: 20}},
		{"aes256-gcm-16", tunnelSpec{cipher: alg.AESGCM256, keyLen: 36}},
		{"des-cbc/hmac-md5-96", tunnelSpec{cipher: alg.DES, keyLen: 8, integ: alg.HMACMD5}},
		{"3des-cbc/hmac-sha1-96", tunnelSpec{cipher: alg.TripleDES, keyLen: 24, integ: alg.HMACSHA1}},
		{"null/hmac-sha2-256-128", tunnelSpec{cipher: alg.ESPNull, keyLen: 0, integ: alg.HMACSHA256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tu := setupTunnel(t, tc.spec, true)
			tu.traffic(t, 5)
		})
	}
}

func TestGuestTransportMode(t *testing.T) {
	requireGuest(t)
	tu := setupTunnel(t, tunnelSpec{cipher: alg.AESGCM128, keyLen: 20, mode: alg.Transport}, true)
	tu.traffic(t, 4)
}

func TestGuestAHESPBundle(t *testing.T) {
	requireGuest(t)
	tu := setupTunnel(t, tunnelSpec{cipher: alg.AES128, keyLen: 16, integ: alg.HMACSHA256, ahOuter: true}, true)
	tu.traffic(t, 4)
	// Without the AH SA the bundle is incomplete: nothing gets through.
	must(t, tu.db.DeleteSA(bg, tu.ah[0].Key()))
	if got := flow(t, tu.a, tu.b, tu.srcA, tu.dstB, 2, time.Second); got != 0 {
		t.Errorf("%d datagrams arrived without the inbound AH SA", got)
	}
}

// rawSocket opens a raw IPv4 socket for proto in n; every inbound packet of
// that protocol is copied to it.
func (n *testNS) rawSocket(t *testing.T, proto int) int {
	var fd int
	n.do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, proto)
		return err
	})
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.Timeval{Usec: 100000}
	must(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
	return fd
}

// drainRaw returns the packets queued on a raw socket.
func drainRaw(fd int) [][]byte {
	var pkts [][]byte
	for {
		buf := make([]byte, 2048)
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return pkts
		}
		pkts = append(pkts, buf[:n])
	}
}

func TestGuestESPInUDP(t *testing.T) {
	requireGuest(t)
	tu := setupTunnel(t, tunnelSpec{cipher: alg.AES128, keyLen: 16, integ: alg.HMACSHA1, encap: true}, true)
	rawUDP := tu.b.rawSocket(t, unix.IPPROTO_UDP)
	rawESP := tu.b.rawSocket(t, unix.IPPROTO_ESP)
	tu.traffic(t, 3)
	encapsulated := 0
	for _, p := range drainRaw(rawUDP) {
		pk, err := parseSPIPacket(p)
		if err == nil && pk.sport == 4500 && binary.BigEndian.Uint16(p[22:]) == 4500 && pk.spi == tu.esp[0].SPI {
			encapsulated++
		}
	}
	if encapsulated != 3 {
		t.Errorf("B saw %d UDP/4500 datagrams carrying SPI 0x%x, want 3", encapsulated, tu.esp[0].SPI)
	}
	if n := len(drainRaw(rawESP)); n != 0 {
		t.Errorf("B saw %d bare ESP packets", n)
	}
	// An unknown SPI inside UDP is dropped by the kernel and seen by the watch.
	must(t, tu.db.DeleteSA(bg, tu.esp[0].Key()))
	if got := flow(t, tu.a, tu.b, tu.srcA, tu.dstB, 2, time.Second); got != 0 {
		t.Errorf("%d datagrams arrived without the inbound SA", got)
	}
	e, ok := waitEvent(t, tu.db, ipsec.EventInvalidSPI, 3*time.Second, nil)
	if !ok || e.SA != tu.esp[0].Key() || e.Src != outerA || e.SrcPort != 4500 {
		t.Errorf("invalid-SPI event %+v %v, want %s from %s:4500", e, ok, tu.esp[0].Key(), outerA)
	}
}

func TestGuestAcquire(t *testing.T) {
	requireGuest(t)
	tu := setupTunnel(t, tunnelSpec{cipher: alg.AES128, keyLen: 16, integ: alg.HMACSHA256}, false)
	if got := flow(t, tu.a, tu.b, tu.srcA, tu.dstB, 1, 500*time.Millisecond); got != 0 {
		t.Fatalf("a datagram got through without SAs")
	}
	e, ok := waitEvent(t, tu.da, ipsec.EventAcquire, 3*time.Second, nil)
	if !ok {
		t.Fatal("no acquire")
	}
	want := ipsec.Selector{Src: netip.PrefixFrom(innerA, 32), Dst: netip.PrefixFrom(innerB, 32), Proto: unix.IPPROTO_UDP,
		SrcPort: ipsec.PortRange{Lo: 4000, Hi: 4000}, DstPort: ipsec.PortRange{Lo: 5000, Hi: 5000}}
	if e.Policy != (ipsec.PolicyKey{Dir: ipsec.DirOut, ID: 1}) || e.Trigger != want || e.SA.Dst != outerB || e.Src != outerA {
		t.Errorf("acquire %+v", e)
	}
	// What the agent does next: negotiate, install, and traffic flows.
	tu.addSAs(t)
	tu.traffic(t, 3)
}

func TestGuestInvalidSPI(t *testing.T) {
	requireGuest(t)
	tu := setupTunnel(t, tunnelSpec{cipher: alg.AESGCM128, keyLen: 20}, true)
	tu.traffic(t, 3)
	before := tu.b.xfrmStat("XfrmInNoStates")
	must(t, tu.db.DeleteSA(bg, tu.esp[0].Key()))
	if err := tu.db.DeleteSA(bg, tu.esp[0].Key()); !errors.Is(err, ipsec.ErrNotFound) {
		t.Errorf("second DeleteSA: %v, want ErrNotFound", err)
	}
	if got := flow(t, tu.a, tu.b, tu.srcA, tu.dstB, 3, time.Second); got != 0 {
		t.Fatalf("%d datagrams arrived without the inbound SA", got)
	}
	e, ok := waitEvent(t, tu.db, ipsec.EventInvalidSPI, 3*time.Second, nil)
	if !ok {
		t.Fatal("no invalid-SPI event")
	}
	if e.SA != tu.esp[0].Key() || e.Src != outerA || e.SrcPort != 0 {
		t.Errorf("event %+v, want %s from %s", e, tu.esp[0].Key(), outerA)
	}
	after := tu.b.xfrmStat("XfrmInNoStates")
	t.Logf("XfrmInNoStates %d -> %d, stats %+v", before, after, tu.db.Stats())
	if after-before != 3 {
		t.Errorf("XfrmInNoStates grew by %d, want 3 (the kernel dropped them)", after-before)
	}
	s := tu.db.Stats().InvalidSPI
	if s.Reported != 1 || s.SuppressedDup != 2 {
		t.Errorf("3 packets for one SPI: %+v, want 1 reported and 2 deduplicated", s)
	}
}

// The raw-socket method with real XFRM: every ESP packet is copied up,
// known SPIs are filtered, an unknown one is reported.
func TestGuestInvalidSPIRawSocket(t *testing.T) {
	requireGuest(t)
	tu := setupTunnel(t, tunnelSpec{cipher: alg.AES128, keyLen: 16, integ: alg.HMACSHA256}, true,
		WithInvalidSPI(InvalidSPIConfig{Method: MethodRawSocket}))
	tu.traffic(t, 3)
	must(t, tu.db.DeleteSA(bg, tu.esp[0].Key()))
	if got := flow(t, tu.a, tu.b, tu.srcA, tu.dstB, 2, time.Second); got != 0 {
		t.Fatalf("%d datagrams arrived without the inbound SA", got)
	}
	e, ok := waitEvent(t, tu.db, ipsec.EventInvalidSPI, 3*time.Second, nil)
	if !ok || e.SA != tu.esp[0].Key() || e.Src != outerA {
		t.Errorf("event %+v %v, want %s from %s", e, ok, tu.esp[0].Key(), outerA)
	}
	t.Logf("stats %+v", tu.db.Stats())
}

func TestGuestIntegrityFailure(t *testing.T) {
	requireGuest(t)
	tu := setupTunnel(t, tunnelSpec{cipher: alg.AES128, keyLen: 16, integ: alg.HMACSHA256}, false)
	spi, err := tu.db.AllocSPI(bg, alg.ESP, outerA, outerB)
	must(t, err)
	sa := tu.spec.sa(t, alg.ESP, outerA, outerB, spi)
	out := sa
	out.Dir = ipsec.DirOut
	must(t, tu.da.AddSA(bg, out))
	in := sa
	in.Dir, in.IntegKey = ipsec.DirIn, randKey(t, 32) // the wrong key
	must(t, tu.db.AddSA(bg, in))
	if got := flow(t, tu.a, tu.b, tu.srcA, tu.dstB, 3, time.Second); got != 0 {
		t.Fatalf("%d datagrams passed a wrong integrity key", got)
	}
	c, err := tu.db.Counters(bg, sa.Key())
	must(t, err)
	if c.AuthFailures != 3 || c.Packets != 0 {
		t.Errorf("inbound counters %+v, want 3 auth failures and no packets", c)
	}
}

func TestGuestExpire(t *testing.T) {
	requireGuest(t)
	t.Run("time", func(t *testing.T) {
		tu := setupTunnel(t, tunnelSpec{cipher: alg.AES128, keyLen: 16, integ: alg.HMACSHA1}, false)
		sa := tu.spec.sa(t, alg.ESP, outerA, outerB, 0x7e000001)
		sa.Dir, sa.ReplayWindow = ipsec.DirOut, 0
		sa.Lifetime = ipsec.Lifetime{SoftTime: time.Second, HardTime: 2 * time.Second}
		must(t, tu.da.AddSA(bg, sa))
		start := time.Now()
		if _, ok := waitEvent(t, tu.da, ipsec.EventSoftExpire, 5*time.Second, func(e ipsec.Event) bool { return e.SA == sa.Key() }); !ok {
			t.Fatal("no soft expire")
		}
		if _, ok := waitEvent(t, tu.da, ipsec.EventHardExpire, 5*time.Second, func(e ipsec.Event) bool { return e.SA == sa.Key() }); !ok {
			t.Fatal("no hard expire")
		}
		t.Logf("soft and hard expiry after %v", time.Since(start))
		if _, err := tu.da.Counters(bg, sa.Key()); !errors.Is(err, ipsec.ErrNotFound) {
			t.Errorf("Counters after hard expiry: %v, want ErrNotFound", err)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		tu := setupTunnel(t, tunnelSpec{cipher: alg.AESGCM128, keyLen: 20}, true)
		// Replace A's outbound SA by one that dies after about 4 datagrams.
		must(t, tu.da.DeleteSA(bg, tu.esp[0].Key()))
		sa := tu.esp[0]
		sa.Dir, sa.ReplayWindow = ipsec.DirOut, 0
		sa.Lifetime = ipsec.Lifetime{SoftBytes: 150, HardBytes: 300}
		must(t, tu.da.AddSA(bg, sa))
		got := flow(t, tu.a, tu.b, tu.srcA, tu.dstB, 8, time.Second)
		if _, ok := waitEvent(t, tu.da, ipsec.EventSoftExpire, 3*time.Second, func(e ipsec.Event) bool { return e.SA == sa.Key() }); !ok {
			t.Error("no soft expire")
		}
		if _, ok := waitEvent(t, tu.da, ipsec.EventHardExpire, 3*time.Second, func(e ipsec.Event) bool { return e.SA == sa.Key() }); !ok {
			t.Error("no hard expire")
		}
		if got == 0 || got == 8 {
			t.Errorf("%d of 8 datagrams arrived; the byte limit should cut the flow", got)
		}
	})
}

func TestGuestFlushOwnedOnly(t *testing.T) {
	requireGuest(t)
	tu := setupTunnel(t, tunnelSpec{cipher: alg.AES256, keyLen: 32, integ: alg.HMACSHA256}, true)
	// another daemon's SA in A, reqid 1 (not in our range)
	foreign := &netlink.XfrmState{Src: netIP(outerA), Dst: netIP(outerB), Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL,
		Spi: 0x777, Reqid: 1, Auth: &netlink.XfrmStateAlgo{Name: "hmac(sha1)", Key: randKey(t, 20), TruncateLen: 96},
		Crypt: &netlink.XfrmStateAlgo{Name: "cbc(aes)", Key: randKey(t, 16)}}
	must(t, tu.a.h.XfrmStateAdd(foreign))
	d2 := tu.a.dataplane(WithInvalidSPI(InvalidSPIConfig{Disabled: true})) // a restarted agent
	if err := d2.DeleteSA(bg, ipsec.SAKey{Dst: outerB, Proto: alg.ESP, SPI: 0x777}); !errors.Is(err, ipsec.ErrNotFound) {
		t.Errorf("DeleteSA of another daemon's SA: %v, want ErrNotFound", err)
	}
	must(t, d2.DeleteSA(bg, tu.esp[0].Key())) // ours, from the earlier "process"
	must(t, d2.Flush(bg))
	must(t, tu.db.Flush(bg))
	states, err := tu.a.h.XfrmStateList(netlink.FAMILY_ALL)
	must(t, err)
	if len(states) != 1 || states[0].Spi != 0x777 {
		t.Errorf("after Flush %d states, want the foreign one only", len(states))
	}
	pols, err := tu.a.h.XfrmPolicyList(netlink.FAMILY_ALL)
	must(t, err)
	if len(pols) != 0 {
		t.Errorf("after Flush %d policies, want 0", len(pols))
	}
	if got := flow(t, tu.a, tu.b, tu.srcA, tu.dstB, 2, time.Second); got != 2 {
		t.Errorf("after Flush, %d of 2 datagrams in the clear arrived", got)
	}
}

// A captured ESP packet sent again is a replay: the kernel drops it and the
// SA's replay counter (window 64, set through XFRMA_REPLAY_ESN_VAL) says so.
func TestGuestReplay(t *testing.T) {
	requireGuest(t)
	tu := setupTunnel(t, tunnelSpec{cipher: alg.AES128, keyLen: 16, integ: alg.HMACSHA1}, true)
	raw := tu.b.rawSocket(t, unix.IPPROTO_ESP)
	if got := flow(t, tu.a, tu.b, tu.srcA, tu.dstB, 2, 3*time.Second); got != 2 {
		t.Fatalf("%d of 2 datagrams arrived", got)
	}
	pkts := drainRaw(raw)
	if len(pkts) != 2 {
		t.Fatalf("B's raw ESP socket saw %d packets, want 2", len(pkts))
	}
	ihl := int(pkts[0][0]&0x0f) * 4
	sendRaw(t, tu.a, unix.IPPROTO_ESP, outerB, pkts[0][ihl:])
	time.Sleep(300 * time.Millisecond)
	c, err := tu.db.Counters(bg, tu.esp[0].Key())
	must(t, err)
	if c.ReplayErrors != 1 || c.Packets != 2 || c.AuthFailures != 0 {
		t.Errorf("after one replayed packet: %+v, want 1 replay error and 2 packets", c)
	}
	// The SA is fine afterwards.
	if got := flow(t, tu.a, tu.b, tu.srcA, tu.dstB, 1, 3*time.Second); got != 1 {
		t.Errorf("after the replay, %d of 1 datagrams arrived", got)
	}
}

func TestGuestAddSAErrors(t *testing.T) {
	requireGuest(t)
	tu := setupTunnel(t, tunnelSpec{cipher: alg.AES128, keyLen: 16, integ: alg.HMACSHA1}, true)
	out := tu.esp[0]
	out.Dir = ipsec.DirOut
	if err := tu.da.AddSA(bg, out); !errors.Is(err, ipsec.ErrExists) {
		t.Errorf("same SA twice: %v, want ErrExists", err)
	}
	bad := out
	bad.SPI, bad.CipherKey = 0x1234, make(alg.Key, 15)
	if err := tu.da.AddSA(bg, bad); err == nil {
		t.Error("a 15-byte AES key was accepted")
	}
	if _, err := tu.da.Counters(bg, ipsec.SAKey{Dst: outerB, Proto: alg.ESP, SPI: 0x1234}); !errors.Is(err, ipsec.ErrNotFound) {
		t.Errorf("Counters of a missing SA: %v, want ErrNotFound", err)
	}
}

package xfrm

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// These tests need root but not ESP: they run on the build host and again in
// the qemu guest.

// Supported must agree with what the kernel does with a real AddSA.
func TestRootSupportedAgreesWithAddSA(t *testing.T) {
	requireRoot(t)
	n := newTestNS(t)
	var ok bool
	var why string
	n.do(func() error { ok, why = Supported(); return nil })
	t.Logf("Supported() = %v, %q", ok, why)
	if why == "" {
		t.Error("no reason given")
	}
	d := n.dataplane(WithInvalidSPI(InvalidSPIConfig{Disabled: true}))
	sa := testSA()
	sa.CipherKey, sa.IntegKey = randKey(t, 16), randKey(t, 32)
	err := d.AddSA(bg, sa)
	if ok != (err == nil) {
		t.Fatalf("Supported() = %v but AddSA: %v", ok, err)
	}
	if !ok && !strings.Contains(why, "no ESP") && !strings.Contains(why, "crypto") {
		t.Errorf("reason does not say what is missing: %q", why)
	}
	if ok {
		must(t, d.DeleteSA(bg, sa.Key()))
	}
	if os.Getenv(guestEnv) == "1" && !ok {
		t.Errorf("the guest kernel has ESP, Supported() said %q", why)
	}
	// the probe leaves nothing behind
	states, err := n.h.XfrmStateList(netlink.FAMILY_ALL)
	must(t, err)
	if len(states) != 0 {
		t.Errorf("%d states left", len(states))
	}
}

// An out policy without SAs raises an acquire (the kernel needs no ESP for
// that), and an SPI reserved with AllocSPI expires as a larval state.
func TestRootAcquireAndLarvalExpire(t *testing.T) {
	requireRoot(t)
	a, _ := topology(t)
	a.sysctl("net/core/xfrm_acq_expires", "1")
	d := a.dataplane(WithInvalidSPI(InvalidSPIConfig{Disabled: true}))
	pol := ipsec.Policy{ID: 42, Dir: ipsec.DirOut, Priority: 100,
		Selector:  ipsec.Selector{Src: netA, Dst: netB, Proto: unix.IPPROTO_UDP, DstPort: ipsec.PortRange{Lo: 5000, Hi: 5000}},
		Templates: []ipsec.Template{{Proto: alg.ESP, Mode: alg.Tunnel, Src: outerA, Dst: outerB, ReqID: 7}}}
	must(t, d.AddPolicy(bg, pol))
	if err := d.AddPolicy(bg, pol); !errors.Is(err, ipsec.ErrExists) {
		t.Errorf("second AddPolicy: %v, want ErrExists", err)
	}
	tx := a.udp(netip.AddrPortFrom(innerA, 4000))
	tx.WriteToUDPAddrPort([]byte("trigger"), netip.AddrPortFrom(innerB, 5000))
	e, ok := waitEvent(t, d, ipsec.EventAcquire, 5*time.Second, nil)
	if !ok {
		t.Fatal("no acquire")
	}
	wantTrig := ipsec.Selector{Src: netip.PrefixFrom(innerA, 32), Dst: netip.PrefixFrom(innerB, 32), Proto: unix.IPPROTO_UDP,
		SrcPort: ipsec.PortRange{Lo: 4000, Hi: 4000}, DstPort: ipsec.PortRange{Lo: 5000, Hi: 5000}}
	if e.Policy != pol.Key() || e.Trigger != wantTrig || e.SA.Dst != outerB || e.SA.Proto != alg.ESP || e.Src != outerA {
		t.Errorf("acquire %+v", e)
	}
	spi, err := d.AllocSPI(bg, alg.ESP, outerB, outerA)
	must(t, err)
	if spi < 256 {
		t.Errorf("allocated SPI 0x%x is reserved", spi)
	}
	e, ok = waitEvent(t, d, ipsec.EventHardExpire, 6*time.Second, func(e ipsec.Event) bool { return e.SA.SPI == spi })
	if !ok {
		t.Fatal("no hard expire for the larval SPI")
	}
	if e.SA != (ipsec.SAKey{Dst: outerA, Proto: alg.ESP, SPI: spi}) {
		t.Errorf("expire %+v", e)
	}
	must(t, d.DeletePolicy(bg, pol.Key()))
	if err := d.DeletePolicy(bg, pol.Key()); !errors.Is(err, ipsec.ErrNotFound) {
		t.Errorf("second DeletePolicy: %v, want ErrNotFound", err)
	}
}

// sendRaw sends one IP payload of protocol proto from a to dst.
func sendRaw(t *testing.T, n *testNS, proto int, dst netip.Addr, payload []byte) {
	t.Helper()
	n.do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, proto)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Addr: dst.As4()})
	})
}

func espPayload(spi uint32) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b, spi)
	binary.BigEndian.PutUint32(b[4:], 1)
	return b
}

// The watch reports unknown ESP, AH and (nftables only) ESP-in-UDP SPIs and
// stays quiet for known ones and for IKE. Raw packets, so no ESP is needed.
func TestRootInvalidSPIDetection(t *testing.T) {
	requireRoot(t)
	t.Run("nftables", func(t *testing.T) { testInvalidSPIDetection(t, MethodNFTables) })
	t.Run("raw-socket", func(t *testing.T) { testInvalidSPIDetection(t, MethodRawSocket) })
}

func testInvalidSPIDetection(t *testing.T, method Method) {
	nft := method == MethodNFTables
	a, b := topology(t)
	d := b.dataplane(WithInvalidSPI(InvalidSPIConfig{Method: method, KernelRate: 5, KernelBurst: 5}))
	known, err := d.AllocSPI(bg, alg.ESP, outerA, outerB)
	must(t, err)

	sendRaw(t, a, unix.IPPROTO_ESP, outerB, espPayload(known))
	if e, ok := waitEvent(t, d, ipsec.EventInvalidSPI, 300*time.Millisecond, nil); ok {
		t.Fatalf("known SPI reported: %+v", e)
	}
	sendRaw(t, a, unix.IPPROTO_ESP, outerB, espPayload(0xbad0001))
	e, ok := waitEvent(t, d, ipsec.EventInvalidSPI, 3*time.Second, nil)
	if !ok {
		t.Fatal("unknown ESP SPI not reported")
	}
	if e.SA != (ipsec.SAKey{Dst: outerB, Proto: alg.ESP, SPI: 0xbad0001}) || e.Src != outerA || e.SrcPort != 0 {
		t.Errorf("ESP event %+v", e)
	}

	ah := make([]byte, 24)
	ah[0], ah[1] = unix.IPPROTO_ICMP, 4
	binary.BigEndian.PutUint32(ah[4:], 0xbad0002)
	sendRaw(t, a, unix.IPPROTO_AH, outerB, ah)
	if e, ok = waitEvent(t, d, ipsec.EventInvalidSPI, 3*time.Second, nil); !ok || e.SA.Proto != alg.AH || e.SA.SPI != 0xbad0002 {
		t.Errorf("AH: %+v %v", e, ok)
	}

	// ESP-in-UDP: IKE (non-ESP marker) is ignored, an unknown SPI is not
	// (nftables); raw ESP/AH sockets cannot see UDP at all.
	tx := a.udp(netip.AddrPortFrom(outerA, 4500))
	ike := append([]byte{0, 0, 0, 0}, make([]byte, 28)...)
	tx.WriteToUDPAddrPort(ike, netip.AddrPortFrom(outerB, 4500))
	tx.WriteToUDPAddrPort(espPayload(known), netip.AddrPortFrom(outerB, 4500))
	tx.WriteToUDPAddrPort(espPayload(0xbad0003), netip.AddrPortFrom(outerB, 4500))
	wait := 3 * time.Second
	if !nft {
		wait = 500 * time.Millisecond // expecting nothing
	}
	e, ok = waitEvent(t, d, ipsec.EventInvalidSPI, wait, nil)
	switch {
	case nft && (!ok || e.SA.SPI != 0xbad0003 || e.SrcPort != 4500 || e.SA.Proto != alg.ESP):
		t.Errorf("ESP-in-UDP: %+v %v", e, ok)
	case !nft && ok:
		t.Errorf("raw sockets reported ESP-in-UDP: %+v", e)
	}
	s := d.Stats()
	if want := map[bool]uint64{true: 3, false: 2}[nft]; s.InvalidSPI.Reported != want {
		t.Errorf("reported %d, want %d: %+v", s.InvalidSPI.Reported, want, s)
	}
	if nft && (s.WatchPackets != 3 || s.WatchKnown != 0) {
		t.Errorf("nftables passed up %d packets (%d known), want only the 3 unknown: %+v", s.WatchPackets, s.WatchKnown, s)
	}
	if !nft && (s.WatchPackets != 3 || s.WatchKnown != 1) {
		t.Errorf("raw sockets: %d packets, %d known; want 3 and 1: %+v", s.WatchPackets, s.WatchKnown, s)
	}

	checkFlood(t, a, d, nft, s.WatchPackets)
	must(t, d.Close())
	drained := make(chan struct{})
	go func() {
		for range d.Events() {
		}
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
		t.Error("Events not closed by Close")
	}
	// Close removes the table.
	if out := b.nftTables(t); strings.Contains(out, nftTableName) {
		t.Errorf("table left after Close: %s", out)
	}
}

// checkFlood sends 200 random SPIs: nftables passes at most burst + rate*t
// up; raw sockets see every packet. Either way the detector's per-source
// bucket (burst 5) lets only a few events through.
func checkFlood(t *testing.T, a *testNS, d *Dataplane, nft bool, before uint64) {
	start := time.Now()
	for i := uint32(0); i < 200; i++ {
		sendRaw(t, a, unix.IPPROTO_ESP, outerB, espPayload(0x10000+i*7919))
	}
	elapsed := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	s := d.Stats()
	t.Logf("after a flood of 200 in %v: %+v", elapsed, s)
	up := s.WatchPackets - before
	if max := 5 + uint64(5*elapsed.Seconds()) + 1; nft && (up < 3 || up > max) {
		t.Errorf("kernel passed %d of 200 packets up, want 3..%d", up, max)
	}
	if !nft && up+s.WatchOverruns < 200 {
		t.Errorf("raw sockets saw %d of 200 packets (%d overruns)", up, s.WatchOverruns)
	}
	if s.InvalidSPI.SuppressedRate == 0 {
		t.Error("no per-source rate limiting in userspace")
	}
	if s.EventsDropped != 0 {
		t.Errorf("%d events dropped", s.EventsDropped)
	}
}

// nftTables lists the IPv4 nftables tables of the namespace.
func (n *testNS) nftTables(t *testing.T) string {
	c, err := nftables.New(nftables.WithNetNSFd(int(n.ns)))
	must(t, err)
	tabs, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	must(t, err)
	var names []string
	for _, tb := range tabs {
		names = append(names, tb.Name)
	}
	return strings.Join(names, ",")
}

// Flush removes what this package owns (also from an earlier process) and
// leaves other daemons' policies and SAs alone.
func TestRootFlushOwnedOnly(t *testing.T) {
	requireRoot(t)
	n := newTestNS(t)
	d1 := n.dataplane(WithInvalidSPI(InvalidSPIConfig{Disabled: true}))
	owned := ipsec.Policy{ID: 1, Dir: ipsec.DirIn, Selector: ipsec.Selector{Src: netB, Dst: netA},
		Templates: []ipsec.Template{{Proto: alg.ESP, Mode: alg.Tunnel, Src: outerB, Dst: outerA, ReqID: 1}}}
	must(t, d1.AddPolicy(bg, owned))
	must(t, d1.AddPolicy(bg, ipsec.Policy{ID: 2, Dir: ipsec.DirOut, Action: ipsec.ActionBypass, Selector: ipsec.Selector{Src: netA, Dst: netip.MustParsePrefix("192.0.2.0/24")}}))
	must(t, d1.AddPolicy(bg, ipsec.Policy{ID: 3, Dir: ipsec.DirFwd, Action: ipsec.ActionDiscard, Selector: ipsec.Selector{Src: netB, Dst: netA, Proto: 6}}))
	ownedSPI, err := d1.AllocSPI(bg, alg.ESP, outerB, outerA)
	must(t, err)
	if err := d1.AddPolicy(bg, ipsec.Policy{ID: 4, Dir: ipsec.DirOut, Action: ipsec.ActionBypass, Selector: ipsec.Selector{Src: netA, Dst: netB},
		Templates: []ipsec.Template{{Proto: alg.ESP}}}); err == nil {
		t.Error("bypass with templates accepted")
	}

	// Someone else's policy and larval SA in the same namespace.
	_, fsrc, _ := net.ParseCIDR("192.0.2.0/24")
	_, fdst, _ := net.ParseCIDR("198.51.100.0/24")
	foreign := &netlink.XfrmPolicy{Src: fsrc, Dst: fdst, Dir: netlink.XFRM_DIR_OUT,
		Tmpls: []netlink.XfrmPolicyTmpl{{Src: netIP(outerA), Dst: netIP(outerB), Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL, Reqid: 1}}}
	must(t, n.h.XfrmPolicyAdd(foreign))
	var foreignSPI int
	n.do(func() error {
		s, err := netlink.XfrmStateAllocSpi(&netlink.XfrmState{Src: netIP(outerA), Dst: netIP(outerB), Proto: netlink.XFRM_PROTO_ESP, Reqid: 1})
		if err == nil {
			foreignSPI = s.Spi
		}
		return err
	})

	// A restarted agent: a new Dataplane with no memory of the first.
	d1.Close()
	d2 := n.dataplane(WithInvalidSPI(InvalidSPIConfig{Disabled: true}))
	foreignKey := ipsec.SAKey{Dst: outerB, Proto: alg.ESP, SPI: uint32(foreignSPI)}
	if err := d2.DeleteSA(bg, foreignKey); !errors.Is(err, ipsec.ErrNotFound) {
		t.Errorf("DeleteSA of another daemon's SA: %v, want ErrNotFound", err)
	}
	must(t, d2.Flush(bg))
	pols, err := n.h.XfrmPolicyList(netlink.FAMILY_ALL)
	must(t, err)
	if len(pols) != 1 || pols[0].Index&int(ownedIndex) != 0 || pols[0].Tmpls[0].Reqid != 1 {
		t.Errorf("after Flush, policies: %d (want only the foreign one)", len(pols))
	}
	states, err := n.h.XfrmStateList(netlink.FAMILY_ALL)
	must(t, err)
	for _, s := range states {
		if uint32(s.Spi) == ownedSPI {
			t.Errorf("owned larval SPI 0x%x survived Flush", ownedSPI)
		}
	}
	if len(states) != 1 || states[0].Spi != foreignSPI {
		t.Errorf("after Flush, %d states (want only the foreign SPI 0x%x)", len(states), foreignSPI)
	}
	// After the flush the IDs can be used again.
	must(t, d2.AddPolicy(bg, owned))
}

func TestSupportedUnprivileged(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as a user without CAP_NET_ADMIN; as root see TestRootSupportedAgreesWithAddSA")
	}
	ok, why := Supported()
	if ok || !strings.Contains(why, "CAP_NET_ADMIN") {
		t.Errorf("Supported() = %v, %q; want false and a word about CAP_NET_ADMIN", ok, why)
	}
}

// Bypass and discard policies, priorities and port selectors decide what
// leaves A; no SA is needed to see it (the kernel needs no ESP for this).
func TestRootBypassAndDiscard(t *testing.T) {
	requireRoot(t)
	a, b := topology(t)
	d := a.dataplane(WithInvalidSPI(InvalidSPIConfig{Disabled: true}))
	udp := func(lo, hi uint16) ipsec.Selector {
		return ipsec.Selector{Src: netA, Dst: netip.PrefixFrom(innerB, 32), Proto: unix.IPPROTO_UDP, DstPort: ipsec.PortRange{Lo: lo, Hi: hi}}
	}
	must(t, d.AddPolicy(bg, ipsec.Policy{ID: 1, Dir: ipsec.DirOut, Priority: 1000, Selector: ipsec.Selector{Src: netA, Dst: netB},
		Templates: []ipsec.Template{{Proto: alg.ESP, Mode: alg.Tunnel, Src: outerA, Dst: outerB, ReqID: 1}}}))
	must(t, d.AddPolicy(bg, ipsec.Policy{ID: 2, Dir: ipsec.DirOut, Priority: 10, Action: ipsec.ActionBypass, Selector: udp(5000, 5000)}))
	must(t, d.AddPolicy(bg, ipsec.Policy{ID: 3, Dir: ipsec.DirOut, Priority: 10, Action: ipsec.ActionDiscard, Selector: udp(6000, 6015)}))
	if err := d.AddPolicy(bg, ipsec.Policy{ID: 4, Dir: ipsec.DirOut, Action: ipsec.ActionBypass, Selector: udp(1000, 2000)}); !errors.Is(err, ErrPortRange) {
		t.Errorf("unaligned port range: %v, want ErrPortRange", err)
	}
	src := netip.AddrPortFrom(innerA, 4000)
	if got := flow(t, a, b, src, netip.AddrPortFrom(innerB, 5000), 3, time.Second); got != 3 {
		t.Errorf("bypass: %d of 3 datagrams arrived in the clear", got)
	}
	if _, ok := waitEvent(t, d, ipsec.EventAcquire, 200*time.Millisecond, nil); ok {
		t.Error("bypassed traffic raised an acquire")
	}
	if got := flow(t, a, b, src, netip.AddrPortFrom(innerB, 6007), 2, 500*time.Millisecond); got != 0 {
		t.Errorf("discard: %d datagrams arrived", got)
	}
	if _, ok := waitEvent(t, d, ipsec.EventAcquire, 200*time.Millisecond, nil); ok {
		t.Error("discarded traffic raised an acquire")
	}
	// 6016 is outside the discard block: the protect policy applies.
	if got := flow(t, a, b, src, netip.AddrPortFrom(innerB, 6016), 1, 500*time.Millisecond); got != 0 {
		t.Errorf("protected traffic without SA: %d datagrams arrived", got)
	}
	if e, ok := waitEvent(t, d, ipsec.EventAcquire, 2*time.Second, nil); !ok || e.Policy.ID != 1 || e.Trigger.DstPort.Lo != 6016 {
		t.Errorf("acquire for 6016: %+v %v", e, ok)
	}
}

// A second dataplane with detection in the same netns is refused and leaves
// the first one's nftables table alone.
func TestRootSecondDataplaneRefused(t *testing.T) {
	requireRoot(t)
	a, b := topology(t)
	d := b.dataplane()
	if d2, err := New(WithNetns(b.ns), WithLogger(discardLogger())); err == nil {
		d2.Close()
		t.Fatal("a second dataplane with the same NFLOG group was accepted")
	} else {
		t.Logf("second New: %v", err)
	}
	if out := b.nftTables(t); !strings.Contains(out, nftTableName) {
		t.Fatalf("the first dataplane's table is gone: %q", out)
	}
	sendRaw(t, a, unix.IPPROTO_ESP, outerB, espPayload(0xbad0005))
	if _, ok := waitEvent(t, d, ipsec.EventInvalidSPI, 3*time.Second, nil); !ok {
		t.Error("the first dataplane stopped detecting")
	}
}

// The kernel's per-source meter: one source flooding unknown SPIs gets its
// own small budget, and another source is still heard.
func TestRootPerSourceKernelLimit(t *testing.T) {
	requireRoot(t)
	a, b := topology(t)
	d := b.dataplane(WithInvalidSPI(InvalidSPIConfig{KernelRate: 100, KernelBurst: 100, SourceRate: 2, SourceBurst: 3}))
	start := time.Now()
	for i := uint32(0); i < 200; i++ {
		sendRaw(t, a, unix.IPPROTO_ESP, outerB, espPayload(0x20000+i*7919))
	}
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond)
	up := d.Stats().WatchPackets
	if max := 3 + uint64(2*elapsed.Seconds()) + 1; up == 0 || up > max {
		t.Errorf("one source's flood of 200: kernel passed %d up, want 1..%d (its own burst 3 + 2/s)", up, max)
	}
	// another source (spoofed from A with IP_HDRINCL)
	a.do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		pkt := ipv4(unix.IPPROTO_ESP, "192.0.2.9", "192.0.2.2", espPayload(0xbad0009))
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: outerB.As4()})
	})
	e, ok := waitEvent(t, d, ipsec.EventInvalidSPI, 3*time.Second, func(e ipsec.Event) bool { return e.SA.SPI == 0xbad0009 })
	if !ok || e.Src != netip.MustParseAddr("192.0.2.9") {
		t.Errorf("the second source was not heard during the first one's flood: %+v %v", e, ok)
	}
	t.Logf("flood of 200 in %v: %d passed up; stats %+v", elapsed, up, d.Stats())
}

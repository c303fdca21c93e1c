package xfrm

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// Test topology (TEST-NET addresses only):
//
//	netns A: vA 192.0.2.1/24, lo 198.51.100.1/32  (inner net 198.51.100.0/24)
//	netns B: vB 192.0.2.2/24, lo 203.0.113.1/32   (inner net 203.0.113.0/24)
var (
	outerA = netip.MustParseAddr("192.0.2.1")
	outerB = netip.MustParseAddr("192.0.2.2")
	innerA = netip.MustParseAddr("198.51.100.1")
	innerB = netip.MustParseAddr("203.0.113.1")
	netA   = netip.MustParsePrefix("198.51.100.0/24")
	netB   = netip.MustParsePrefix("203.0.113.0/24")
)

const guestEnv = "SPIAGENT_XFRM_GUEST"

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
}

// requireGuest skips tests that need a kernel with ESP unless they run in
// the lab/qemu guest.
func requireGuest(t testing.TB) {
	t.Helper()
	if os.Getenv(guestEnv) != "1" {
		t.Skipf("needs a kernel with ESP: runs in the qemu guest (lab/qemu/run.sh sets %s=1)", guestEnv)
	}
	requireRoot(t)
}

// testNS is a network namespace that lives as long as the test.
type testNS struct {
	t  testing.TB
	ns netns.NsHandle
	h  *netlink.Handle
}

func newTestNS(t testing.TB) *testNS {
	t.Helper()
	type res struct {
		ns  netns.NsHandle
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			c <- res{err: err}
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if serr := netns.Set(orig); serr != nil {
			c <- res{ns: ns, err: errors.Join(err, serr)}
			return // thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		c <- res{ns: ns, err: err}
	}()
	r := <-c
	if r.err != nil {
		t.Fatalf("new netns: %v", r.err)
	}
	h, err := netlink.NewHandleAt(r.ns)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNS{t: t, ns: r.ns, h: h}
	t.Cleanup(func() { h.Close(); r.ns.Close() })
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *testNS) do(f func() error) {
	n.t.Helper()
	if err := inNetns(n.ns, f); err != nil {
		n.t.Fatal(err)
	}
}

func (n *testNS) addr(dev string, p netip.Prefix) {
	n.t.Helper()
	l, err := n.h.LinkByName(dev)
	if err != nil {
		n.t.Fatal(err)
	}
	ipn := &net.IPNet{IP: netIP(p.Addr()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	if err := n.h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
		n.t.Fatalf("addr %s on %s: %v", p, dev, err)
	}
	if err := n.h.LinkSetUp(l); err != nil {
		n.t.Fatal(err)
	}
}

func (n *testNS) route(dst netip.Prefix, gw, src netip.Addr, dev string) {
	n.t.Helper()
	l, err := n.h.LinkByName(dev)
	if err != nil {
		n.t.Fatal(err)
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: netIP(gw), Src: netIP(src),
		Dst: &net.IPNet{IP: netIP(dst.Addr()), Mask: net.CIDRMask(dst.Bits(), 32)}}
	if err := n.h.RouteAdd(r); err != nil {
		n.t.Fatalf("route %s: %v", dst, err)
	}
}

func (n *testNS) sysctl(path, val string) {
	n.t.Helper()
	n.do(func() error { return os.WriteFile("/proc/sys/"+path, []byte(val), 0o644) })
}

// xfrmStat reads one xfrm_stat counter inside the namespace (through
// /proc/thread-self: /proc/net is the netns of the process's main thread).
func (n *testNS) xfrmStat(name string) uint64 {
	n.t.Helper()
	var v uint64
	n.do(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/xfrm_stat") // /proc/net follows the main thread
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) == 2 && f[0] == name {
				v, err = strconv.ParseUint(f[1], 10, 64)
				return err
			}
		}
		return errors.New("no " + name + " in xfrm_stat")
	})
	return v
}

// topology builds A and B joined by a veth pair, with inner addresses on lo
// and routes to each other's inner net via the veth.
func topology(t testing.TB) (a, b *testNS) {
	t.Helper()
	a, b = newTestNS(t), newTestNS(t)
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "vA", Namespace: netlink.NsFd(a.ns)},
		PeerName:  "vB", PeerNamespace: netlink.NsFd(b.ns),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	a.addr("vA", netip.PrefixFrom(outerA, 24))
	b.addr("vB", netip.PrefixFrom(outerB, 24))
	a.addr("lo", netip.PrefixFrom(innerA, 32))
	b.addr("lo", netip.PrefixFrom(innerB, 32))
	a.route(netB, outerB, innerA, "vA")
	b.route(netA, outerA, innerB, "vB")
	return a, b
}

// dataplane opens a Dataplane in n, closed at the end of the test.
func (n *testNS) dataplane(opts ...Option) *Dataplane {
	n.t.Helper()
	opts = append([]Option{WithNetns(n.ns), WithLogger(testLogger(n.t))}, opts...)
	d, err := New(opts...)
	if err != nil {
		n.t.Fatalf("New: %v", err)
	}
	n.t.Cleanup(func() { d.Close() })
	return d
}

// udp opens a UDP socket bound to addr inside the namespace; it is closed
// at the end of the test.
func (n *testNS) udp(addr netip.AddrPort) *net.UDPConn {
	n.t.Helper()
	c := n.udpConn(addr)
	n.t.Cleanup(func() { c.Close() })
	return c
}

func (n *testNS) udpConn(addr netip.AddrPort) *net.UDPConn {
	n.t.Helper()
	var c *net.UDPConn
	n.do(func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	})
	return c
}

// flow sends count datagrams from src (in a) to dst (in b) and returns how
// many arrived within the timeout.
func flow(t testing.TB, a, b *testNS, src, dst netip.AddrPort, count int, timeout time.Duration) int {
	t.Helper()
	rx := b.udpConn(dst)
	defer rx.Close()
	tx := a.udpConn(src)
	defer tx.Close()
	for i := 0; i < count; i++ {
		if _, err := tx.WriteToUDPAddrPort([]byte("spiagent xfrm test payload "+strconv.Itoa(i)), dst); err != nil {
			t.Logf("send %d: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := 0
	buf := make([]byte, 2048)
	rx.SetReadDeadline(time.Now().Add(timeout))
	for got < count {
		if _, _, err := rx.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
		got++
	}
	return got
}

// waitEvent waits for an event of kind that matches, skipping others.
func waitEvent(t testing.TB, d *Dataplane, kind ipsec.EventKind, timeout time.Duration, match func(ipsec.Event) bool) (ipsec.Event, bool) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e, ok := <-d.Events():
			if !ok {
				return ipsec.Event{}, false
			}
			if e.Kind == kind && (match == nil || match(e)) {
				return e, true
			}
			t.Logf("(other event: %s %v)", e.Kind, e.SA)
		case <-deadline:
			return ipsec.Event{}, false
		}
	}
}

func randKey(t testing.TB, n int) alg.Key {
	t.Helper()
	k := make(alg.Key, n)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var bg = context.Background()

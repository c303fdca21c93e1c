package userspace

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
	"github.com/spiagent/spiagent/ipsec/userspace/tuntest"
	"github.com/spiagent/spiagent/ipsec/userspace/wiretest"
)

// Test topology (TEST-NET only):
//
//	198.51.100.0/24 - A 192.0.2.1 ==== 192.0.2.2 B - 203.0.113.0/24
var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
	lanA  = netip.MustParsePrefix("198.51.100.0/24")
	lanB  = netip.MustParsePrefix("203.0.113.0/24")
	hostA = netip.MustParseAddr("198.51.100.10")
	hostB = netip.MustParseAddr("203.0.113.10")
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fakeRouter struct {
	mu     sync.Mutex
	routes map[netip.Prefix]bool
	log    []string
}

func (r *fakeRouter) AddRoute(p netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes[p] = true
	r.log = append(r.log, "add "+p.String())
	return nil
}

func (r *fakeRouter) DelRoute(p netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.routes, p)
	r.log = append(r.log, "del "+p.String())
	return nil
}

type side struct {
	dp     *Dataplane
	tun    *tuntest.Device
	ep     *wiretest.Endpoint
	router *fakeRouter
	addr   netip.Addr
}

type testbed struct {
	a, b *side
	net  *wiretest.Network
	clk  *fakeClock
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestbed(t *testing.T, mod func(*Config)) *testbed {
	t.Helper()
	tb := &testbed{net: wiretest.New(), clk: &fakeClock{t: time.Unix(1_700_000_000, 0)}}
	mk := func(addr netip.Addr, name string) *side {
		s := &side{tun: tuntest.New(name, 256), ep: tb.net.Endpoint(addr), router: &fakeRouter{routes: map[netip.Prefix]bool{}}, addr: addr}
		cfg := Config{TUN: s.tun, Link: s.ep, UDP: s.ep, Router: s.router, Now: tb.clk.Now, SweepInterval: -1, Logger: quietLogger()}
		if mod != nil {
			mod(&cfg)
		}
		dp, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s.dp = dp
		s.ep.SetIPHandler(dp.HandleIP)
		s.ep.SetUDPHandler(dp.HandleESPInUDP)
		t.Cleanup(func() { dp.Close() })
		return s
	}
	tb.a, tb.b = mk(addrA, "tunA"), mk(addrB, "tunB")
	return tb
}

// suite describes one protection: a list of templates (innermost first),
// each with algorithms.
type layer struct {
	proto  alg.Protocol
	cipher alg.Cipher
	ckey   int
	integ  alg.Integrity
	encap  bool
}

type suite struct {
	mode   alg.Mode
	layers []layer
	window uint32
	life   ipsec.Lifetime
}

func testKey(n int, seed byte) alg.Key {
	k := make(alg.Key, n)
	for i := range k {
		k[i] = seed*31 + byte(i)
	}
	return k
}

func spiFor(dir byte, l int) uint32 { return 0x1000*uint32(dir) + uint32(l) + 0x100 }

// install sets up fixed-key SAs and policies on both sides: A->B with
// SPIs 0x11xx, B->A with 0x21xx. In tunnel mode the policies cover the
// LANs; in transport mode the two routers' own addresses.
func (tb *testbed) install(t *testing.T, s suite) {
	t.Helper()
	ctx := context.Background()
	for dir, pair := range [][2]*side{{tb.a, tb.b}, {tb.b, tb.a}} {
		from, to := pair[0], pair[1]
		var tmpls []ipsec.Template
		for i, l := range s.layers {
			sa := ipsec.SA{
				Src: from.addr, Dst: to.addr, Proto: l.proto, SPI: spiFor(byte(dir+1), i), Mode: s.mode,
				Cipher: l.cipher, CipherKey: testKey(l.ckey, byte(dir*10+i)), Integ: l.integ,
				IntegKey: testKey(l.integ.KeyLen(), byte(dir*10+i+5)), ReqID: 1, Lifetime: s.life,
			}
			if l.encap {
				sa.Encap = &ipsec.UDPEncap{SrcPort: 4500, DstPort: 4500}
			}
			out := sa
			out.Dir = ipsec.DirOut
			if err := from.dp.AddSA(ctx, out); err != nil {
				t.Fatal(err)
			}
			in := sa
			in.Dir, in.ReplayWindow = ipsec.DirIn, s.window
			if err := to.dp.AddSA(ctx, in); err != nil {
				t.Fatal(err)
			}
			tmpls = append(tmpls, ipsec.Template{Proto: l.proto, Mode: s.mode, Src: from.addr, Dst: to.addr, ReqID: 1})
		}
		src, dst := lanA, lanB
		if dir == 1 {
			src, dst = lanB, lanA
		}
		if s.mode == alg.Transport {
			src, dst = netip.PrefixFrom(from.addr, 32), netip.PrefixFrom(to.addr, 32)
		}
		sel := ipsec.Selector{Src: src, Dst: dst}
		if err := from.dp.AddPolicy(ctx, ipsec.Policy{ID: 10, Dir: ipsec.DirOut, Priority: 10, Selector: sel, Action: ipsec.ActionProtect, Templates: tmpls}); err != nil {
			t.Fatal(err)
		}
		if err := to.dp.AddPolicy(ctx, ipsec.Policy{ID: 10, Dir: ipsec.DirIn, Priority: 10, Selector: sel, Action: ipsec.ActionProtect, Templates: tmpls}); err != nil {
			t.Fatal(err)
		}
	}
}

// udpPacket builds an IPv4/UDP packet.
func udpPacket(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	writeIPv4(p, src, dst, protoUDP, len(p), 0x4242, 0)
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// recv waits for the next packet a fake TUN got from its dataplane.
func recv(t *testing.T, d *tuntest.Device) []byte {
	t.Helper()
	select {
	case p := <-d.Outbound:
		return p
	case <-time.After(2 * time.Second):
		t.Fatal("no packet came out of the TUN")
		return nil
	}
}

// none checks that nothing comes out of a TUN for a short while.
func none(t *testing.T, d *tuntest.Device) {
	t.Helper()
	select {
	case p := <-d.Outbound:
		t.Fatalf("unexpected packet out of the TUN: %x", p)
	case <-time.After(50 * time.Millisecond):
	}
}

// nextEvent waits for an event.
func nextEvent(t *testing.T, dp *Dataplane) ipsec.Event {
	t.Helper()
	select {
	case ev := <-dp.Events():
		return ev
	case <-time.After(2 * time.Second):
		t.Fatal("no event")
		return ipsec.Event{}
	}
}

func noEvent(t *testing.T, dp *Dataplane) {
	t.Helper()
	select {
	case ev := <-dp.Events():
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

func counters(t *testing.T, dp *Dataplane, dst netip.Addr, proto alg.Protocol, spi uint32) ipsec.Counters {
	t.Helper()
	c, err := dp.Counters(context.Background(), ipsec.SAKey{Dst: dst, Proto: proto, SPI: spi})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond (the TUN reader runs in its own goroutine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

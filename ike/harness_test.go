package ike

import (
	"bytes"
	"math/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
)

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
	lanA  = netip.MustParsePrefix("198.51.100.0/24")
	lanB  = netip.MustParsePrefix("203.0.113.0/24")
	t0    = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	psk   = alg.Key("s3cr3t-psk-for-tests")
)

// node is one engine plus everything it output.
type node struct {
	e       *Engine
	addr    netip.Addr
	prepare []ChildSA
	install []ChildSA
	deletes []ChildDelete
	events  []Event
	sent    []Packet
}

// pair is two engines wired back to back in memory.
type pair struct {
	t     *testing.T
	a, b  *node
	now   time.Time
	drop  func(from *node, p Packet) bool // return true to lose a packet
	nat   bool                            // rewrite A's source address as a NAT would
	natIP netip.Addr
}

func baseConfig() Config {
	return Config{
		Policies: []Policy{{Priority: 10, Cipher: alg.AES128, Hash: alg.SHA1, Group: alg.MODP2048, Lifetime: 24 * time.Hour}},
		Keys:     map[netip.Addr]alg.Key{addrA: psk, addrB: psk},
		NATT:     NATTAuto,
	}
}

func childPolicy(tag string, local, peer netip.Addr, lts, rts netip.Prefix, t ...Transform) ChildPolicy {
	if len(t) == 0 {
		t = []Transform{{ESP: alg.AES128, ESPInteg: alg.HMACSHA1}}
	}
	return ChildPolicy{Tag: tag, ReqID: 7, Local: local, Peer: peer,
		LocalTS: Selector{Prefix: lts}, RemoteTS: Selector{Prefix: rts}, Proposals: t, Lifetime: time.Hour}
}

func newNode(t *testing.T, addr netip.Addr, cfg Config, seed int64, pols ...ChildPolicy) *node {
	t.Helper()
	e, err := New(cfg, rand.New(rand.NewSource(seed)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetChildPolicies(pols); err != nil {
		t.Fatal(err)
	}
	return &node{e: e, addr: addr}
}

// newPair builds A (initiator side) and B with mirrored child policies.
func newPair(t *testing.T, ca, cb Config, tr ...Transform) *pair {
	pa := childPolicy("mapA", addrA, addrB, lanA, lanB, tr...)
	pb := childPolicy("mapB", addrB, addrA, lanB, lanA, tr...)
	return &pair{t: t, now: t0,
		a: newNode(t, addrA, ca, 1, pa), b: newNode(t, addrB, cb, 2, pb)}
}

func (p *pair) other(n *node) *node {
	if n == p.a {
		return p.b
	}
	return p.a
}

// collect drains n's output; packets go to the returned queue.
func (p *pair) collect(n *node) []Packet {
	o := n.e.Ready()
	n.prepare = append(n.prepare, o.Prepare...)
	n.install = append(n.install, o.Install...)
	n.deletes = append(n.deletes, o.Delete...)
	n.events = append(n.events, o.Events...)
	n.sent = append(n.sent, o.Send...)
	return o.Send
}

// pump delivers packets back and forth until both engines are quiet.
func (p *pair) pump() {
	p.t.Helper()
	for i := 0; i < 1000; i++ {
		moved := false
		for _, n := range []*node{p.a, p.b} {
			for _, pkt := range p.collect(n) {
				moved = true
				p.deliver(n, pkt)
			}
		}
		if !moved {
			return
		}
	}
	p.t.Fatal("pump: no quiescence after 1000 rounds")
}

func (p *pair) deliver(from *node, pkt Packet) {
	to := p.other(from)
	okAddr := pkt.Remote.Addr() == to.addr || (p.nat && to == p.a && pkt.Remote.Addr() == p.natIP)
	if !okAddr || (p.drop != nil && p.drop(from, pkt)) {
		return
	}
	if len(pkt.Data) == 1 && pkt.Data[0] == 0xff {
		return // NAT keepalive
	}
	src := pkt.Local
	if p.nat && from == p.a {
		port := src.Port() + 1000
		src = netip.AddrPortFrom(p.natIP, port)
	}
	dst := pkt.Remote
	if p.nat && to == p.a {
		dst = netip.AddrPortFrom(p.a.addr, dst.Port()-1000)
	}
	to.e.HandlePacket(p.now, Packet{Local: dst, Remote: src, Data: pkt.Data})
}

// advance moves the clock in steps, ticking both engines and pumping.
func (p *pair) advance(d time.Duration, step time.Duration) {
	end := p.now.Add(d)
	for p.now.Before(end) {
		p.now = p.now.Add(step)
		if p.now.After(end) {
			p.now = end
		}
		p.a.e.Tick(p.now)
		p.b.e.Tick(p.now)
		p.pump()
	}
}

func (p *pair) initiate(n *node, tag string) {
	p.t.Helper()
	if err := n.e.Initiate(p.now, tag, nil); err != nil {
		p.t.Fatal(err)
	}
	p.pump()
}

// checkChildPair asserts that A's and B's last installed child SAs mirror
// each other: same SPIs and keys crossed.
func checkChildPair(t *testing.T, a, b ChildSA) {
	t.Helper()
	if len(a.In) == 0 || len(a.In) != len(b.Out) || len(a.Out) != len(b.In) {
		t.Fatalf("bundle shapes differ: A in %d out %d, B in %d out %d", len(a.In), len(a.Out), len(b.In), len(b.Out))
	}
	for i := range a.In {
		x, y := a.In[i], b.Out[i]
		if x.SPI != y.SPI || x.Proto != y.Proto || !bytes.Equal(x.EncKey, y.EncKey) || !bytes.Equal(x.IntegKey, y.IntegKey) || x.Cipher != y.Cipher || x.Integ != y.Integ {
			t.Fatalf("A in[%d] %v/%#x != B out %v/%#x (or keys differ)", i, x.Proto, x.SPI, y.Proto, y.SPI)
		}
		x, y = a.Out[i], b.In[i]
		if x.SPI != y.SPI || !bytes.Equal(x.EncKey, y.EncKey) || !bytes.Equal(x.IntegKey, y.IntegKey) {
			t.Fatalf("A out[%d] != B in", i)
		}
		if bytes.Equal(a.In[i].EncKey, a.Out[i].EncKey) && len(a.In[i].EncKey) > 0 {
			t.Fatal("inbound and outbound keys are equal")
		}
		if a.In[i].Cipher != alg.CipherNone && len(a.In[i].EncKey) != a.In[i].Cipher.KeyMatLen() {
			t.Fatalf("enc key length %d", len(a.In[i].EncKey))
		}
		if len(a.In[i].IntegKey) != a.In[i].Integ.KeyLen() {
			t.Fatalf("integ key length %d for %v", len(a.In[i].IntegKey), a.In[i].Integ)
		}
	}
	if a.Mode != b.Mode || a.LocalTS != b.RemoteTS || a.RemoteTS != b.LocalTS {
		t.Fatalf("mode/selectors differ: %v %v/%v vs %v %v/%v", a.Mode, a.LocalTS, a.RemoteTS, b.Mode, b.LocalTS, b.RemoteTS)
	}
	if (a.Encap == nil) != (b.Encap == nil) {
		t.Fatal("one side encapsulates, the other not")
	}
}

func countEvents(evs []Event, k EventKind) int {
	n := 0
	for _, e := range evs {
		if e.Kind == k {
			n++
		}
	}
	return n
}

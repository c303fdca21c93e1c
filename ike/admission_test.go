package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// mesh is any number of engines in memory, delivering one datagram at a
// time (in order) and checking an invariant after every step.
type mesh struct {
	t     *testing.T
	now   time.Time
	nodes map[netip.Addr]*node
	order []*node
	check func() // called after every delivered datagram
	steps int
}

func newMesh(t *testing.T, nodes ...*node) *mesh {
	m := &mesh{t: t, now: t0, nodes: map[netip.Addr]*node{}}
	for _, n := range nodes {
		m.nodes[n.addr] = n
		m.order = append(m.order, n)
	}
	return m
}

// run delivers datagrams until every engine is quiet (bounded).
func (m *mesh) run() {
	m.t.Helper()
	var queue []Packet
	var from []*node
	for i := 0; i < 10_000_000; i++ {
		if len(queue) == 0 {
			for _, n := range m.order {
				o := n.e.Ready()
				n.install = append(n.install, o.Install...)
				n.deletes = append(n.deletes, o.Delete...)
				n.events = append(n.events, o.Events...)
				for _, p := range o.Send {
					queue = append(queue, p)
					from = append(from, n)
				}
			}
			if len(queue) == 0 {
				return
			}
		}
		p, _ := queue[0], from[0]
		queue, from = queue[1:], from[1:]
		if to := m.nodes[p.Remote.Addr()]; to != nil && !(len(p.Data) == 1 && p.Data[0] == 0xff) {
			to.e.HandlePacket(m.now, Packet{Local: p.Remote, Remote: p.Local, Data: p.Data})
			m.steps++
			if m.check != nil {
				m.check()
			}
		}
	}
	m.t.Fatal("mesh: no quiescence")
}

// advance moves the clock in steps, ticking every engine and running.
func (m *mesh) advance(d, step time.Duration) {
	m.t.Helper()
	end := m.now.Add(d)
	for m.now.Before(end) {
		m.now = m.now.Add(step)
		if m.now.After(end) {
			m.now = end
		}
		for _, n := range m.order {
			n.e.Tick(m.now)
		}
		m.run()
	}
}

// inFlight counts, from the engine's own tables rather than its gauges,
// the exchanges it initiated and responded to that are still running.
func inFlight(e *Engine) (initiated, responded int) {
	seen := map[*ikeSA]bool{}
	count := func(sa *ikeSA) {
		if seen[sa] || sa.deleted {
			return
		}
		seen[sa] = true
		if sa.state != stateEstablished {
			if sa.initiator {
				initiated++
			} else {
				responded++
			}
		}
		for _, x := range sa.exchanges {
			if x.done {
				continue
			}
			if x.initiator {
				initiated++
			} else {
				responded++
			}
		}
	}
	for _, p := range e.peers {
		for sa := range p.ikes {
			count(sa)
		}
	}
	return
}

func tagPolicies(prefix string, n int, local, peer netip.Addr) []ChildPolicy {
	ps := make([]ChildPolicy, n)
	for i := range ps {
		ps[i] = childPolicy(fmt.Sprintf("%s%05d", prefix, i), local, peer, lanA, lanB)
	}
	return ps
}

// 10,000 acquires for distinct tags to one peer at the same instant: never
// more than the limit in negotiation on either side, every tag gets exactly
// one child SA, nothing is retransmitted or dropped, and repeated requests
// for a queued tag join it.
func TestAdmissionBurstOnePeer(t *testing.T) {
	const n, limit = 10_000, 64
	cfg := baseConfig()
	cfg.MaxInNegotiation = limit
	a := newNode(t, addrA, cfg, 1, tagPolicies("t", n, addrA, addrB)...)
	b := newNode(t, addrB, cfg, 2, childPolicy("mapB", addrB, addrA, lanB, lanA))
	m := newMesh(t, a, b)
	maxA, maxB := 0, 0
	// The gauges after every datagram; every 97th, the gauges against a
	// count from the engines' tables (which keep finished exchanges a while
	// to answer retransmissions, so a full count is slow).
	m.check = func() {
		ai, br := a.e.Counters().InNegotiationInitiated, b.e.Counters().InNegotiationResponded
		if m.steps%97 == 0 {
			ti, _ := inFlight(a.e)
			_, tr := inFlight(b.e)
			if ti != ai || tr != br {
				t.Fatalf("gauges A %d B %d, tables A %d B %d", ai, br, ti, tr)
			}
		}
		maxA, maxB = max(maxA, ai), max(maxB, br)
		if ai > limit || br > limit {
			t.Fatalf("in negotiation: A initiated %d, B responded %d (limit %d)", ai, br, limit)
		}
	}
	for round := range 2 {
		for i := range n {
			if err := a.e.Initiate(m.now, fmt.Sprintf("t%05d", i), nil); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	// All wait for the one Main Mode (the head of the queue too).
	if c := a.e.Counters(); c.Queued != n || c.InNegotiationInitiated != 1 || c.Coalesced != n {
		t.Fatalf("after the burst: %+v", c)
	}
	m.run()
	per := map[string]int{}
	for _, c := range a.install {
		per[c.Tag]++
	}
	if len(a.install) != n || len(per) != n || len(b.install) != n {
		t.Fatalf("installs: A %d for %d tags, B %d; want %d each", len(a.install), len(per), len(b.install), n)
	}
	ca, cb := a.e.Counters(), b.e.Counters()
	if ca.Admitted != n || ca.Queued != 0 || ca.InNegotiationInitiated != 0 || ca.Retransmits+cb.Retransmits != 0 || cb.OverLimitDropped != 0 {
		t.Fatalf("counters A %+v\nB %+v", ca, cb)
	}
	if maxA != limit || maxB != limit {
		t.Fatalf("peak in negotiation A %d B %d, want the limit %d (the limit was not used)", maxA, maxB, limit)
	}
	// Up and not expiring: another acquire for every tag is a no-op.
	for i := range n {
		if err := a.e.Initiate(m.now, fmt.Sprintf("t%05d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	m.run()
	if len(a.install) != n || a.e.Counters().Admitted != n {
		t.Fatalf("acquires with the child SAs up negotiated: %d installs", len(a.install))
	}
}

// Rekeys at the soft lifetime go through admission too: 1,000 child SAs
// negotiated together reach it together.
func TestAdmissionRekeyWave(t *testing.T) {
	const n, limit = 1000, 16
	cfg := baseConfig()
	cfg.MaxInNegotiation = limit
	pols := tagPolicies("t", n, addrA, addrB)
	for i := range pols {
		pols[i].Lifetime = 100 * time.Second
	}
	a := newNode(t, addrA, cfg, 1, pols...)
	b := newNode(t, addrB, cfg, 2, childPolicy("mapB", addrB, addrA, lanB, lanA))
	m := newMesh(t, a, b)
	for i := range n {
		if err := a.e.Initiate(m.now, fmt.Sprintf("t%05d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	m.run()
	m.check = func() {
		if ai, _ := inFlight(a.e); ai > limit {
			t.Fatalf("A has %d in negotiation during the rekey wave", ai)
		}
	}
	m.advance(91*time.Second, time.Second)
	per := map[string]int{}
	for _, c := range a.install {
		per[c.Tag]++
	}
	for tag, k := range per {
		if k != 2 {
			t.Fatalf("tag %s has %d child SAs after one rekey", tag, k)
		}
	}
	if len(per) != n {
		t.Fatalf("%d tags", len(per))
	}
}

// Round-robin across peers, FIFO per peer: a peer with few tags is not
// stuck behind one with many.
func TestAdmissionFairAcrossPeers(t *testing.T) {
	const many, few, limit = 1000, 10, 4
	addrC := netip.MustParseAddr("192.0.2.3")
	cfg := baseConfig()
	cfg.MaxInNegotiation = limit
	cfg.Keys[addrC] = psk
	pols := append(tagPolicies("b", many, addrA, addrB), tagPolicies("c", few, addrA, addrC)...)
	a := newNode(t, addrA, cfg, 1, pols...)
	b := newNode(t, addrB, cfg, 2, childPolicy("mapB", addrB, addrA, lanB, lanA))
	c := newNode(t, addrC, cfg, 3, childPolicy("mapC", addrC, addrA, lanB, lanA))
	m := newMesh(t, a, b, c)
	for i := range many {
		if err := a.e.Initiate(m.now, fmt.Sprintf("b%05d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range few {
		if err := a.e.Initiate(m.now, fmt.Sprintf("c%05d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	m.run()
	if len(a.install) != many+few {
		t.Fatalf("%d installs", len(a.install))
	}
	lastC := -1
	next := map[byte]int{}
	for i, ch := range a.install {
		p := ch.Tag[0]
		if want := fmt.Sprintf("%c%05d", p, next[p]); ch.Tag != want {
			t.Fatalf("install %d is %s, want %s (FIFO per peer)", i, ch.Tag, want)
		}
		next[p]++
		if p == 'c' {
			lastC = i
		}
	}
	// Alternating turns: C's ten are done within the first 2*10 admissions
	// plus what was in flight.
	if lastC > 2*few+limit {
		t.Fatalf("C's last child SA was install %d of %d: not round-robin", lastC, len(a.install))
	}
}

// A full queue refuses (and counts) the overflow; refused requests back off
// and are retried when demand continues, with no duplicate.
func TestAdmissionQueueFull(t *testing.T) {
	const n = 10
	cfg := baseConfig()
	cfg.MaxInNegotiation, cfg.MaxQueued = 1, 5
	a := newNode(t, addrA, cfg, 1, tagPolicies("t", n, addrA, addrB)...)
	b := newNode(t, addrB, baseConfig(), 2, childPolicy("mapB", addrB, addrA, lanB, lanA))
	m := newMesh(t, a, b)
	refused := 0
	for i := range n {
		err := a.e.Initiate(m.now, fmt.Sprintf("t%05d", i), nil)
		if errors.Is(err, ErrQueueFull) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if c := a.e.Counters(); refused != n-5 || c.Refused != uint64(refused) || c.Queued != 5 || c.Backoff != refused {
		t.Fatalf("refused %d, counters %+v", refused, c)
	}
	m.run()
	if len(a.install) != 5 {
		t.Fatalf("%d installs, want the 5 queued", len(a.install))
	}
	// Demand continues (re-raised acquires) during the backoff.
	for i := range n {
		if err := a.e.Initiate(m.now, fmt.Sprintf("t%05d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	m.advance(time.Second, 100*time.Millisecond)
	per := map[string]int{}
	for _, c := range a.install {
		per[c.Tag]++
	}
	if len(per) != n || len(a.install) != n || a.e.Counters().Backoff != 0 {
		t.Fatalf("installs %d for %d tags, counters %+v", len(a.install), len(per), a.e.Counters())
	}
}

// Peers' exchanges over the limit are dropped and counted; the peer's
// retransmissions get them through.
func TestAdmissionResponderOverLimit(t *testing.T) {
	const n = 6
	ca, cb := baseConfig(), baseConfig()
	ca.MaxInNegotiation, cb.MaxInNegotiation = n, 2
	a := newNode(t, addrA, ca, 1, tagPolicies("t", n, addrA, addrB)...)
	b := newNode(t, addrB, cb, 2, childPolicy("mapB", addrB, addrA, lanB, lanA))
	m := newMesh(t, a, b)
	m.check = func() {
		if _, br := inFlight(b.e); br > 2 {
			t.Fatalf("B responds to %d exchanges", br)
		}
	}
	for i := range n {
		if err := a.e.Initiate(m.now, fmt.Sprintf("t%05d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	m.run()
	if got := b.e.Counters().OverLimitDropped; got != n-2 {
		t.Fatalf("B dropped %d over its limit, want %d", got, n-2)
	}
	// Retransmissions at +2 s and +6 s bring the others through, two by two.
	m.advance(10*time.Second, time.Second)
	if len(a.install) != n || len(b.install) != n {
		t.Fatalf("installs A %d B %d", len(a.install), len(b.install))
	}
}

// A refused negotiation backs off 1 s, 2 s, 4 s, ... up to RetryMax, and is
// retried only if demand arrived during the backoff.
func TestAdmissionBackoff(t *testing.T) {
	cfg := baseConfig()
	cfg.RetryMax = 4 * time.Second
	a := newNode(t, addrA, cfg, 1, childPolicy("mapA", addrA, addrB, lanA, lanB))
	// B has no policy for these selectors: INVALID-ID-INFORMATION, at once.
	other := netip.MustParsePrefix("192.0.2.128/25")
	b := newNode(t, addrB, baseConfig(), 2, childPolicy("mapB", addrB, addrA, other, other))
	m := newMesh(t, a, b)
	demand := func() {
		t.Helper()
		if err := a.e.Initiate(m.now, "mapA", nil); err != nil {
			t.Fatal(err)
		}
		m.run()
	}
	admitted := func(want uint64) {
		t.Helper()
		if c := a.e.Counters(); c.Admitted != want || c.ChildFailed != want {
			t.Fatalf("at +%v: admitted %d, failed %d; want %d", m.now.Sub(t0), c.Admitted, c.ChildFailed, want)
		}
	}
	tick := func(to time.Duration) {
		t.Helper()
		m.now = t0.Add(to)
		a.e.Tick(m.now)
		b.e.Tick(m.now)
		m.run()
	}
	demand() // +0: fails; backoff 1 s
	admitted(1)
	tick(500 * time.Millisecond)
	demand() // wanted
	admitted(1)
	tick(999 * time.Millisecond)
	admitted(1)
	tick(time.Second) // retried; fails again; backoff 2 s
	admitted(2)
	tick(3 * time.Second) // no demand during the backoff: forgotten
	admitted(2)
	if c := a.e.Counters(); c.Backoff != 0 || c.Queued != 0 {
		t.Fatalf("counters %+v", c)
	}
	demand() // +3 s: a new request starts at once; third failure: 4 s
	admitted(3)
	demand()
	tick(6999 * time.Millisecond)
	admitted(3)
	tick(7 * time.Second) // fourth failure: 8 s capped at RetryMax (4 s)
	admitted(4)
	demand()
	tick(10999 * time.Millisecond)
	admitted(4)
	tick(11 * time.Second)
	admitted(5)
	// B learns the policy: the next retry succeeds and the backoff resets.
	if err := b.e.SetChildPolicies([]ChildPolicy{childPolicy("mapB", addrB, addrA, lanB, lanA)}); err != nil {
		t.Fatal(err)
	}
	demand()
	tick(15 * time.Second)
	if len(a.install) != 1 || a.e.Counters().Backoff != 0 || len(a.e.adm.negs) != 0 {
		t.Fatalf("after success: installs %d, counters %+v, %d negotiations remembered", len(a.install), a.e.Counters(), len(a.e.adm.negs))
	}
}

package ike

import (
	"container/list"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Admission control, like IOS "crypto call admission limit ike
// in-negotiation-sa": at most Config.MaxInNegotiation exchanges (Main Mode
// and Quick Mode) in negotiation per role.
//
// Initiated: every locally initiated child negotiation (Initiate, a child
// SA's soft lifetime, RekeyChild, a retry) is one entry per child policy
// tag in a queue, FIFO per peer and round-robin across peers. A queue entry
// is admitted while fewer than the limit of exchanges we started are in
// progress: it starts its Quick Mode over an established ISAKMP SA with the
// peer, or first a Main Mode (one exchange, however many tags wait for it;
// the peer's tags stay queued until it is up). A request for a tag that is
// queued, negotiating or backing off joins it; one whose child SA is up and
// not yet at its soft lifetime is a no-op. So there is never a second bundle
// for a tag, also when an acquire races an install. At most MaxQueued
// entries wait; more are refused and counted.
//
// Responded: a Main Mode or Quick Mode a peer starts while the limit of
// exchanges we respond to is reached is dropped and counted; the peer
// retransmits. The two roles are limited separately: with one shared
// limit, two routers bursting at each other could fill their slots with
// their own negotiations and drop each other's, a livelock.
//
// A negotiation that fails (timeout, refusal, its Main Mode failing) or is
// refused (queue full) backs off: RetryBase, doubled per consecutive
// failure up to RetryMax. It is retried when the backoff ends if there was
// demand meanwhile (a re-raised acquire, a soft lifetime); without demand it
// is forgotten, so a flow that stopped costs nothing.

// negState is where a tag's locally initiated negotiation is.
type negState uint8

const (
	negIdle    negState = iota
	negQueued           // waiting for admission
	negActive           // its Quick Mode is running
	negBackoff          // failed or refused; retried when the backoff ends if wanted
)

// neg is the locally initiated negotiation of one child policy tag.
type neg struct {
	tag      string
	peer     netip.Addr
	state    negState
	trigger  *[2]Selector // narrows the selectors; nil: the policy's
	failures int          // consecutive
	lastFail time.Time
	wanted   bool // demand arrived during the backoff
	retry    *timer
}

// peerQueue holds one peer's queued negotiations, FIFO.
type peerQueue struct {
	peer netip.Addr
	fifo []*neg
	head int
	elem *list.Element // in admission.ring
}

func (q *peerQueue) len() int { return len(q.fifo) - q.head }

func (q *peerQueue) pop() *neg {
	n := q.fifo[q.head]
	q.fifo[q.head] = nil
	q.head++
	if q.head > 32 && q.head*2 > len(q.fifo) {
		q.fifo = append(q.fifo[:0], q.fifo[q.head:]...)
		q.head = 0
	}
	return n
}

func (q *peerQueue) pushFront(n *neg) {
	if q.head > 0 {
		q.head--
		q.fifo[q.head] = n
		return
	}
	q.fifo = append([]*neg{n}, q.fifo...)
}

// admission is the engine's admission state.
type admission struct {
	negs   map[string]*neg
	queues map[netip.Addr]*peerQueue
	ring   list.List     // *peerQueue with queued negotiations, round-robin
	next   *list.Element // the peer whose turn is next
	queued int
	// Exchanges in negotiation: half-open Main Modes and running Quick
	// Modes, by role.
	initiated, responded int
	backoff              int
	running              bool
}

func (a *admission) init() {
	a.negs = map[string]*neg{}
	a.queues = map[netip.Addr]*peerQueue{}
	a.ring.Init()
}

// ErrQueueFull is returned by Initiate when MaxQueued negotiations wait;
// the request backs off and is retried if demand continues.
var ErrQueueFull = errors.New("ike: negotiation queue full")

// demand asks for a child SA for pol (from Initiate, a soft lifetime or
// RekeyChild) and returns ErrQueueFull if it was refused.
func (e *Engine) demand(now time.Time, pol *ChildPolicy, trigger *[2]Selector) error {
	a := &e.adm
	n := a.negs[pol.Tag]
	if n == nil {
		n = &neg{tag: pol.Tag}
		a.negs[pol.Tag] = n
	}
	switch n.state {
	case negQueued, negActive:
		e.ctr.Coalesced++
		return nil
	case negBackoff:
		n.wanted = true
		e.ctr.Coalesced++
		return nil
	}
	if e.childUp(pol.Tag, now) {
		e.ctr.Coalesced++
		e.gcNeg(n)
		return nil
	}
	if n.failures > 0 && now.Sub(n.lastFail) > 2*e.cfg.RetryMax {
		n.failures = 0 // a new episode, not a retry
	}
	n.peer, n.trigger = pol.Peer.Unmap(), trigger
	return e.enqueue(now, n)
}

// enqueue puts an idle negotiation in its peer's queue, or refuses it.
func (e *Engine) enqueue(now time.Time, n *neg) error {
	a := &e.adm
	if a.queued >= e.cfg.MaxQueued {
		e.ctr.Refused++
		e.negFailed(now, n, "queue full")
		return fmt.Errorf("%w (%d waiting): %q", ErrQueueFull, a.queued, n.tag)
	}
	n.state = negQueued
	q := a.queues[n.peer]
	if q == nil {
		q = &peerQueue{peer: n.peer}
		a.queues[n.peer] = q
	}
	if q.elem == nil {
		q.elem = a.ring.PushBack(q)
	}
	q.fifo = append(q.fifo, n)
	a.queued++
	return nil
}

// admit starts queued negotiations while fewer than MaxInNegotiation
// exchanges we initiated are in progress. Every step of the engine ends
// with it.
func (e *Engine) admit(now time.Time) {
	a := &e.adm
	if a.running {
		return
	}
	a.running = true
	defer func() { a.running = false }()
	for a.queued > 0 && a.initiated < e.cfg.MaxInNegotiation {
		q := e.nextQueue()
		if q == nil {
			return // every peer with queued tags waits for its Main Mode
		}
		n := q.pop()
		a.queued--
		e.dropIfEmpty(q)
		e.start(now, n)
	}
}

// nextQueue returns the next peer's queue in round-robin order, skipping
// peers whose Main Mode is in progress, and moves the turn past it.
func (e *Engine) nextQueue() *peerQueue {
	a := &e.adm
	for i := a.ring.Len(); i > 0; i-- {
		el := a.next
		if el == nil {
			el = a.ring.Front()
		}
		a.next = el.Next()
		q := el.Value.(*peerQueue)
		if e.established(q.peer) != nil || e.pendingMain(q.peer) == nil {
			return q
		}
	}
	return nil
}

func (e *Engine) dropIfEmpty(q *peerQueue) {
	a := &e.adm
	if q.len() > 0 || q.elem == nil {
		return
	}
	if a.next == q.elem {
		a.next = q.elem.Next()
	}
	a.ring.Remove(q.elem)
	q.elem = nil
	delete(a.queues, q.peer)
}

// start runs one admitted negotiation: a Quick Mode over an established
// ISAKMP SA, or a Main Mode first (n then waits at the head of its queue).
func (e *Engine) start(now time.Time, n *neg) {
	a := &e.adm
	pol := e.policies[n.tag]
	if pol == nil {
		n.state = negIdle // the policy went away while queued
		e.gcNeg(n)
		return
	}
	if peer := pol.Peer.Unmap(); peer != n.peer {
		n.peer = peer // the policy now names another peer: queue there
		n.state = negIdle
		_ = e.enqueue(now, n)
		return
	}
	if sa := e.established(n.peer); sa != nil {
		n.state = negActive
		e.ctr.Admitted++
		e.startQuick(now, sa, pol, e.negSelectors(n, pol), n)
		return
	}
	q := a.queues[n.peer]
	if q == nil {
		q = &peerQueue{peer: n.peer}
		a.queues[n.peer] = q
	}
	if q.elem == nil {
		q.elem = a.ring.PushBack(q)
	}
	q.pushFront(n)
	a.queued++
	if _, err := e.startMain(now, pol.Local.Unmap(), n.peer); err != nil {
		e.failQueue(now, n.peer, err.Error())
	}
}

// negSelectors: the trigger if it still lies within the policy, else the
// policy's own selectors.
func (e *Engine) negSelectors(n *neg, pol *ChildPolicy) [2]Selector {
	if t := n.trigger; t != nil && pol.LocalTS.Contains(t[0]) && pol.RemoteTS.Contains(t[1]) {
		return *t
	}
	return [2]Selector{pol.LocalTS, pol.RemoteTS}
}

// failQueue fails every negotiation queued for peer (its Main Mode failed
// or could not start).
func (e *Engine) failQueue(now time.Time, peer netip.Addr, why string) {
	a := &e.adm
	q := a.queues[peer]
	if q == nil {
		return
	}
	for q.len() > 0 {
		n := q.pop()
		a.queued--
		e.negFailed(now, n, why)
	}
	e.dropIfEmpty(q)
}

// mainGone is called when an initiator Main Mode ends without an ISAKMP
// SA: the peer's queue fails unless another way to the peer remains.
func (e *Engine) mainGone(now time.Time, peer netip.Addr, why string) {
	if e.established(peer) == nil && e.pendingMain(peer) == nil {
		e.failQueue(now, peer, "main mode: "+why)
	}
}

// negDone ends an exchange's part in its tag's negotiation.
func (e *Engine) negDone(now time.Time, x *exchange, ok bool, why string) {
	n := x.neg
	if n == nil {
		return
	}
	x.neg = nil
	if n.state != negActive {
		return
	}
	if ok {
		n.state, n.failures = negIdle, 0
		e.gcNeg(n)
		return
	}
	e.negFailed(now, n, why)
}

// negFailed puts a negotiation into backoff.
func (e *Engine) negFailed(now time.Time, n *neg, why string) {
	a := &e.adm
	if e.clearing {
		// An operator cleared the peer: that is no failure to back off from.
		n.state, n.failures = negIdle, 0
		e.gcNeg(n)
		return
	}
	n.failures++
	n.lastFail = now
	d := e.cfg.RetryBase << min(n.failures-1, 30)
	if d > e.cfg.RetryMax || d <= 0 {
		d = e.cfg.RetryMax
	}
	n.state, n.wanted = negBackoff, false
	a.backoff++
	e.cfg.Log.Debug("ike: negotiation backs off", "crypto_map", n.tag, "peer", n.peer, "retry_in", d, "failures", n.failures, "reason", why)
	n.retry = e.after(now.Add(d), func(now time.Time) {
		n.retry = nil
		a.backoff--
		n.state = negIdle
		if n.wanted && e.policies[n.tag] != nil {
			n.wanted = false
			_ = e.enqueue(now, n)
			return
		}
		e.gcNeg(n)
	})
}

// gcNeg forgets an idle negotiation that has nothing to remember.
func (e *Engine) gcNeg(n *neg) {
	if n.state == negIdle && (n.failures == 0 || e.policies[n.tag] == nil) && e.adm.negs[n.tag] == n {
		delete(e.adm.negs, n.tag)
	}
}

// forgetNegs drops the backoff and idle state of tags that no longer have
// a policy (queued and running ones finish or are dropped on their own).
func (e *Engine) forgetNegs() {
	a := &e.adm
	for tag, n := range a.negs {
		if e.policies[tag] != nil {
			continue
		}
		if n.state == negBackoff {
			n.retry.stop()
			n.retry = nil
			a.backoff--
			n.state = negIdle
		}
		e.gcNeg(n)
	}
}

// childUp reports whether tag has a child SA that is not yet at its soft
// lifetime (nor being rekeyed).
func (e *Engine) childUp(tag string, now time.Time) bool {
	for _, c := range e.byTag[tag] {
		if !c.expiring && now.Before(c.softAt) {
			return true
		}
	}
	return false
}

// pendingMain returns our Main Mode in progress with peer, if any.
func (e *Engine) pendingMain(a netip.Addr) *ikeSA {
	if p := e.peers[a]; p != nil {
		for sa := range p.ikes {
			if sa.initiator && sa.state != stateEstablished && !sa.deleted {
				return sa
			}
		}
	}
	return nil
}

// countExchange and uncountExchange keep the in-negotiation gauges.
func (e *Engine) countExchange(initiator bool, d int) {
	if initiator {
		e.adm.initiated += d
	} else {
		e.adm.responded += d
	}
}

// overLimit reports (and counts) a responder exchange dropped at the limit.
func (e *Engine) overLimit() bool {
	if e.adm.responded < e.cfg.MaxInNegotiation {
		return false
	}
	e.ctr.OverLimitDropped++
	return true
}

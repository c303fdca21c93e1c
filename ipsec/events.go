package ipsec

import (
	"net/netip"
	"sync"
)

// EventQueue carries a dataplane's events to its reader (Dataplane.Events)
// without ever blocking the producer (the packet path, a netlink reader)
// and without losing what the agent must act on. The two dataplanes share
// it.
//
// Events are coalesced by key while they wait: an acquire per (policy,
// peer), a soft and a hard expiry per SA, an invalid SPI per (source,
// destination, protocol, SPI). A second event for a key already waiting
// joins it (Stats.Coalesced), so 10,000 SAs that expire together are 10,000
// events however slow the reader, and a flow that keeps raising its acquire
// is one event until the reader takes it. Acquires and expiries are never
// dropped: the queue holds at most one of each per key, so its size follows
// the number of policies and SAs, not a fixed capacity. Invalid-SPI events,
// which an outsider can cause, are already deduplicated and rate-limited by
// the dataplane's detector; at most MaxInvalidSPI of them wait, more are
// dropped and counted (Stats.Dropped).
//
// A goroutine hands the events over in the order their keys first
// arrived, through a channel of ChanBuffer events (so that a reader that
// takes a burst at a time finds one): when the reader is slow, it waits
// (the queue applies backpressure to itself, never to the producer). An
// event handed over has left the queue: one with its key queues anew. An
// invalid-SPI event counts against MaxInvalidSPI until the reader has
// taken it from the channel.
type EventQueue struct {
	mu         sync.Mutex
	pending    map[eventKey]Event
	fifo       []eventKey
	head       int
	invalid    int // invalid-SPI events waiting, in the channel, or being handed over
	maxInvalid int
	// sent holds, oldest first, whether each event put in the channel and
	// not yet known to be read was an invalid SPI; len(out) says how many
	// are still unread (see reconcile).
	sent      []bool
	sentHead  int
	coalesced uint64
	dropped   uint64
	closed    bool

	wake chan struct{}
	out  chan Event
	stop chan struct{}
	wg   sync.WaitGroup
}

type eventKey struct {
	kind   EventKind
	policy PolicyKey
	sa     SAKey
	src    netip.Addr
}

// EventQueueStats are an EventQueue's counters.
type EventQueueStats struct {
	Pending   int    // events waiting for the reader
	Coalesced uint64 // events that joined one already waiting
	Dropped   uint64 // invalid-SPI events over MaxInvalidSPI
}

// ChanBuffer is the capacity of an EventQueue's channel: a reader busy
// for a while (the agent's loop publishing telemetry) then takes a burst
// of up to this many at once (at 256, 10,000 acquires reached the IKE
// engine 258 per loop turn over 40 s; at 1024, in 1.5 s).
const ChanBuffer = 1024

// NewEventQueue starts a queue that keeps at most maxInvalidSPI
// invalid-SPI events waiting (at least 1).
func NewEventQueue(maxInvalidSPI int) *EventQueue {
	q := newEventQueue(maxInvalidSPI)
	q.wg.Add(1)
	go q.pump()
	return q
}

func newEventQueue(maxInvalidSPI int) *EventQueue {
	return &EventQueue{
		pending:    map[eventKey]Event{},
		maxInvalid: max(maxInvalidSPI, 1),
		wake:       make(chan struct{}, 1),
		out:        make(chan Event, ChanBuffer),
		stop:       make(chan struct{}),
	}
}

func keyOf(ev *Event) eventKey {
	switch ev.Kind {
	case EventAcquire:
		return eventKey{kind: ev.Kind, policy: ev.Policy, sa: SAKey{Dst: ev.SA.Dst}}
	case EventInvalidSPI:
		return eventKey{kind: ev.Kind, sa: ev.SA, src: ev.Src}
	}
	return eventKey{kind: ev.Kind, sa: ev.SA}
}

// Put queues ev, or joins it to the event with its key that is waiting. It
// never blocks. It reports false when ev was dropped (an invalid SPI over
// the limit, or the queue is closed).
func (q *EventQueue) Put(ev Event) bool {
	k := keyOf(&ev)
	q.mu.Lock()
	switch _, waiting := q.pending[k]; {
	case q.closed:
		q.mu.Unlock()
		return false
	case waiting:
		q.coalesced++
		q.mu.Unlock()
		return true
	case ev.Kind == EventInvalidSPI && q.reconcile() >= q.maxInvalid:
		q.dropped++
		q.mu.Unlock()
		return false
	}
	if ev.Kind == EventInvalidSPI {
		q.invalid++
	}
	q.pending[k] = ev
	q.fifo = append(q.fifo, k)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// Events is the reader's channel; Close closes it.
func (q *EventQueue) Events() <-chan Event { return q.out }

// Stats returns the queue's counters.
func (q *EventQueue) Stats() EventQueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return EventQueueStats{Pending: len(q.pending), Coalesced: q.coalesced, Dropped: q.dropped}
}

// Close stops the queue: waiting events are discarded, later Puts dropped,
// and the Events channel is closed.
func (q *EventQueue) Close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.mu.Unlock()
	close(q.stop)
	q.wg.Wait()
}

// next takes the oldest waiting event. Once taken it no longer waits: an
// event with its key that arrives while it is being handed over queues
// anew, since the reader may already have it (coalescing into it could
// lose the second).
func (q *EventQueue) next() (Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head < len(q.fifo) {
		k := q.fifo[q.head]
		q.fifo[q.head] = eventKey{}
		q.head++
		if q.head == len(q.fifo) {
			q.fifo, q.head = q.fifo[:0], 0
		} else if q.head > 64 && q.head*2 > len(q.fifo) {
			n := copy(q.fifo, q.fifo[q.head:])
			clear(q.fifo[n:])
			q.fifo, q.head = q.fifo[:n], 0
		}
		if ev, ok := q.pending[k]; ok {
			delete(q.pending, k)
			return ev, true
		}
	}
	return Event{}, false
}

// delivered notes an event put in the channel.
func (q *EventQueue) delivered(ev *Event) {
	q.mu.Lock()
	q.sent = append(q.sent, ev.Kind == EventInvalidSPI)
	q.mu.Unlock()
}

// reconcile releases the invalid-SPI slots of the events the reader has
// taken from the channel and returns the invalid-SPI events still counted.
// The reader took all but len(out) of those sent, the oldest first; the
// entry for an event being put in the channel right now may lag, which
// only delays a release. Called with mu held.
func (q *EventQueue) reconcile() int {
	for unread := len(q.out); len(q.sent)-q.sentHead > unread; q.sentHead++ {
		if q.sent[q.sentHead] {
			q.invalid--
		}
	}
	if q.sentHead == len(q.sent) {
		q.sent, q.sentHead = q.sent[:0], 0
	} else if q.sentHead > 1024 && q.sentHead*2 > len(q.sent) {
		q.sent, q.sentHead = append(q.sent[:0], q.sent[q.sentHead:]...), 0
	}
	return q.invalid
}

func (q *EventQueue) pump() {
	defer q.wg.Done()
	defer close(q.out)
	for {
		ev, ok := q.next()
		if !ok {
			select {
			case <-q.wake:
				continue
			case <-q.stop:
				return
			}
		}
		select {
		case q.out <- ev:
			q.delivered(&ev)
		case <-q.stop:
			return
		}
	}
}

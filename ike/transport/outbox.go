package transport

import (
	"slices"
	"sync"

	"github.com/spiagent/spiagent/ike"
)

// maxPendingEvents bounds the events waiting for a slow consumer; more are
// dropped and counted (Stats.EventsDropped). Installs and deletes are never
// dropped.
const maxPendingEvents = 4096

// outbox is the batch of engine output (child SAs to install or delete,
// events) waiting for Config.OnOutput, as raft's Ready is: the engine
// goroutine adds to it and never waits; the pump goroutine hands all of it
// over in one call whenever the consumer is ready for more. While the
// consumer is busy, output accumulates and is handed over merged.
//
// Its size is bounded by the engine's own state, not by how slow the
// consumer is: an Install waiting here is a child SA the engine holds (a
// Delete of a child whose Install is still waiting cancels both, since the
// consumer never saw it), and a Delete waiting here is a child SA the
// consumer was handed and the engine has since removed, at most one per
// child SA handed over. Events are capped at maxPendingEvents.
type outbox struct {
	mu      sync.Mutex
	out     ike.Output
	idx     map[uint64]int // child ID -> its Install in out, until handed over
	gone    int            // cancelled Installs in out (ID zero)
	dropped uint64         // events over maxPendingEvents
	cancel  uint64         // Install/Delete pairs cancelled before hand-over
	wake    chan struct{}  // one token: there is output
}

func newOutbox() *outbox {
	return &outbox{idx: map[uint64]int{}, wake: make(chan struct{}, 1)}
}

// put adds o (without its datagrams) and wakes the pump. It never blocks
// for longer than the pump's take.
func (b *outbox) put(o ike.Output) {
	if len(o.Install)+len(o.Delete)+len(o.Events) == 0 {
		return
	}
	b.mu.Lock()
	for _, c := range o.Install {
		b.idx[c.ID] = len(b.out.Install)
		b.out.Install = append(b.out.Install, c)
	}
	for _, d := range o.Delete {
		if i, ok := b.idx[d.ID]; ok {
			// Engine child IDs start at 1: zero marks a cancelled Install.
			b.out.Install[i] = ike.ChildSA{}
			delete(b.idx, d.ID)
			b.gone++
			b.cancel++
			continue
		}
		b.out.Delete = append(b.out.Delete, d)
	}
	room := maxPendingEvents - len(b.out.Events)
	if n := len(o.Events); n > room {
		b.dropped += uint64(n - room)
		o.Events = o.Events[:room]
	}
	b.out.Events = append(b.out.Events, o.Events...)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// take returns everything pending and empties the box.
func (b *outbox) take() ike.Output {
	b.mu.Lock()
	o := b.out
	gone := b.gone
	b.out, b.gone = ike.Output{}, 0
	clear(b.idx)
	b.mu.Unlock()
	if gone > 0 {
		o.Install = slices.DeleteFunc(o.Install, func(c ike.ChildSA) bool { return c.ID == 0 })
	}
	return o
}

func (b *outbox) stats() (dropped, cancelled uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped, b.cancel
}

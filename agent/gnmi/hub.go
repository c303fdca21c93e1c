package gnmi

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/store"
	"github.com/spiagent/spiagent/ytree"
)

// feedBuffer is the hub's own buffer on the store's and the state tree's
// change feeds. The hub only copies pointers into per-subscriber queues,
// so it keeps up unless the machine is starved.
const feedBuffer = 4096

// change is one changed leaf (val set) or deleted node (val nil).
type change struct {
	path   []*gpb.PathElem
	val    *gpb.TypedValue
	schema *yang.Entry
}

// batch is one commit's or one state update's changes. Batches are shared
// by all subscribers and never modified.
type batch struct {
	ts      int64
	changes []change
}

// stallTimeout is how long a subscriber whose queue is full may go without
// taking a batch before it is ended. While it keeps taking batches the hub
// waits for it, so a client that reads as fast as it can is not ended
// because a burst of writes outran it on a busy machine; the writers do not
// wait (the hub reads their events through feedBuffer).
const stallTimeout = 200 * time.Millisecond

// hubSub is one streaming subscriber's queue.
type hubSub struct {
	q    chan *batch
	took atomic.Int64 // when the subscriber last took a batch (unix ns)
	fail func(error)  // ends the subscriber's stream with an error
	once sync.Once
}

// next is the subscriber's end of its queue: it records that the
// subscriber is taking batches.
func (sub *hubSub) taken() { sub.took.Store(time.Now().UnixNano()) }

// hub fans the store's and the state tree's change feeds out to the
// streaming subscribers. It never waits for a subscriber that stopped
// reading; it waits (at most stallTimeout at a time) for one whose queue is
// full while it is still taking batches.
type hub struct {
	s    *Server
	mu   sync.Mutex
	subs map[*hubSub]struct{}
}

func newHub(s *Server) *hub { return &hub{s: s, subs: map[*hubSub]struct{}{}} }

// errSlow ends a subscriber that fell too far behind.
func errSlow(n int) error {
	return status.Errorf(codes.ResourceExhausted, "subscriber fell behind: %d change batches queued unread; resubscribe", n)
}

func (h *hub) add(fail func(error), queue int) *hubSub {
	sub := &hubSub{q: make(chan *batch, queue), fail: fail}
	sub.taken()
	h.mu.Lock()
	h.subs[sub] = struct{}{}
	h.mu.Unlock()
	return sub
}

func (h *hub) remove(sub *hubSub) {
	h.mu.Lock()
	delete(h.subs, sub)
	h.mu.Unlock()
}

// publish queues b for every subscriber. One whose queue is full is ended
// unless it is still taking batches (see stallTimeout).
func (h *hub) publish(b *batch) {
	h.mu.Lock()
	subs := make([]*hubSub, 0, len(h.subs))
	for sub := range h.subs {
		subs = append(subs, sub)
	}
	h.mu.Unlock()
	for _, sub := range subs {
		select {
		case sub.q <- b:
			continue
		default:
		}
		if h.wait(sub, b) {
			continue
		}
		h.mu.Lock()
		_, ok := h.subs[sub]
		delete(h.subs, sub)
		h.mu.Unlock()
		if ok {
			sub.once.Do(func() { sub.fail(errSlow(cap(sub.q))) })
			h.s.log.Warn("gNMI subscriber fell behind and was ended", "queue", cap(sub.q))
		}
	}
}

// wait queues b for a subscriber whose queue is full, as long as it keeps
// taking batches: it is given stallTimeout from now or from the last batch
// it took, whichever is later.
func (h *hub) wait(sub *hubSub, b *batch) bool {
	start := time.Now()
	for {
		since := start
		if took := time.Unix(0, sub.took.Load()); took.After(since) {
			since = took
		}
		left := stallTimeout - time.Since(since)
		if left <= 0 {
			return false
		}
		t := time.NewTimer(left)
		select {
		case sub.q <- b:
			t.Stop()
			return true
		case <-t.C:
		}
	}
}

// failAll ends every subscriber, e.g. when the hub itself lost events.
func (h *hub) failAll(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		delete(h.subs, sub)
		sub.once.Do(func() { sub.fail(err) })
	}
}

// run reads both change feeds until ctx is done.
func (h *hub) run(ctx context.Context) {
	storeC, cancelStore := h.s.cfg.Store.Subscribe(feedBuffer)
	defer func() { cancelStore() }()
	tel := h.s.cfg.State.Subscribe(feedBuffer)
	defer func() { tel.Close() }()
	lost := status.Error(codes.Aborted, "the server's change feed overflowed; resubscribe")
	for {
		select {
		case <-ctx.Done():
			h.failAll(status.Error(codes.Unavailable, "server shutting down"))
			return
		case ev, ok := <-storeC:
			if !ok {
				h.s.log.Error("gNMI hub fell behind the store's change feed")
				h.failAll(lost)
				storeC, cancelStore = h.s.cfg.Store.Subscribe(feedBuffer)
				continue
			}
			h.publish(configBatch(ev))
		case ev, ok := <-tel.C:
			if !ok {
				h.s.log.Error("gNMI hub fell behind the state change feed", "err", tel.Err())
				h.failAll(lost)
				tel = h.s.cfg.State.Subscribe(feedBuffer)
				continue
			}
			h.publish(stateBatch(ev))
		}
	}
}

// configBatch converts a commit's diff. A list entry that went away is
// reported as one delete of the entry, not a delete per leaf.
func configBatch(ev store.Event) *batch {
	b := &batch{ts: ev.Info.Time.UnixNano(), changes: make([]change, 0, len(ev.Diff))}
	deleted := map[string]bool{}
	for _, c := range ev.Diff {
		elems := c.Path.GetElem()
		if c.Kind != store.Removed {
			b.changes = append(b.changes, change{path: elems, val: c.New, schema: ytree.SchemaAt(elems)})
			continue
		}
		p := goneAncestor(ev.Snapshot.Root, elems)
		k := ytree.PathString(p)
		if deleted[k] {
			continue
		}
		deleted[k] = true
		b.changes = append(b.changes, change{path: p})
	}
	return b
}

// goneAncestor returns the shortest prefix of a removed leaf's path that
// ends at a list entry missing from root, or the leaf's path.
func goneAncestor(root *gen.Device, elems []*gpb.PathElem) []*gpb.PathElem {
	for i, e := range elems[:len(elems)-1] {
		if len(e.GetKey()) == 0 {
			continue
		}
		if _, ok := ytree.Lookup(root, elems[:i+1]); !ok {
			return elems[:i+1]
		}
	}
	return elems
}

func stateBatch(ev telemetry.Event) *batch {
	b := &batch{ts: ev.Snapshot.Time.UnixNano(), changes: make([]change, len(ev.Changes))}
	for i, c := range ev.Changes {
		elems := c.Path.GetElem()
		b.changes[i] = change{path: elems, val: c.Val}
		if c.Val != nil {
			b.changes[i].schema = ytree.SchemaAt(elems)
		}
	}
	return b
}

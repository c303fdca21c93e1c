// Package telemetry holds the agent's operational state: a gen.Device that
// carries only config-false data (IKE SAs, IPsec SAs, invalid-SPI counters
// and the last event, and the applied-config "state" containers), as a
// sequence of immutable snapshots that share unchanged subtrees, plus a
// change feed of leaf updates and node deletes for subscribers.
//
// The agent's reconciler writes it (Update); the gNMI server reads it
// (Snapshot, Subscribe). Writes and the change feed use ytree's Writer and
// Differ, the store's algorithms: an update copies only the paths it
// writes and its diff visits only what it touched, so its cost follows the
// writes, not the size of the tree. It knows nothing of engines, the store
// or gRPC.
// A slow subscriber never blocks a writer: its bounded channel overflows,
// it is dropped, and Err says so.
package telemetry

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"reflect"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// Snapshot is one version of the state tree. Root and everything reachable
// from it are immutable.
type Snapshot struct {
	Seq  uint64
	Time time.Time
	Root *gen.Device
}

// Change is one entry of the change feed: an updated leaf (Val set), or a
// deleted leaf or node (Val nil) such as a list entry that went away.
type Change struct {
	Path *gpb.Path
	Val  *gpb.TypedValue
}

// Delete reports whether the change is a delete.
func (c Change) Delete() bool { return c.Val == nil }

// Event is one committed Update: the snapshot it produced and what changed.
type Event struct {
	Snapshot *Snapshot
	Changes  []Change
}

// ErrOverflow ends a subscription whose reader fell behind.
var ErrOverflow = errors.New("telemetry: subscriber fell behind; events dropped")

// Subscription is one reader of the change feed.
type Subscription struct {
	// C delivers events in order. It is closed when the subscription ends.
	C      <-chan Event
	c      chan Event
	tree   *Tree
	err    atomic.Pointer[error]
	closed bool // guarded by tree.mu
}

// Err says why C was closed: ErrOverflow, or nil after Close.
func (s *Subscription) Err() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.tree.mu.Lock()
	defer s.tree.mu.Unlock()
	s.tree.drop(s, nil)
}

// Tree is the state tree. Readers never wait; writers are serialised.
type Tree struct {
	cur  atomic.Pointer[Snapshot]
	mu   sync.Mutex // writers and the subscriber set
	subs map[*Subscription]struct{}
	now  func() time.Time
}

// New returns an empty state tree.
func New() *Tree {
	t := &Tree{subs: map[*Subscription]struct{}{}, now: time.Now}
	t.cur.Store(&Snapshot{Time: t.now(), Root: &gen.Device{}})
	return t
}

// Snapshot returns the current state.
func (t *Tree) Snapshot() *Snapshot { return t.cur.Load() }

// Subscribe returns a subscription whose channel holds up to buf events.
func (t *Tree) Subscribe(buf int) *Subscription {
	c := make(chan Event, buf)
	s := &Subscription{C: c, c: c, tree: t}
	t.mu.Lock()
	t.subs[s] = struct{}{}
	t.mu.Unlock()
	return s
}

// drop ends s with err; t.mu is held.
func (t *Tree) drop(s *Subscription, err error) {
	if s.closed {
		return
	}
	s.closed = true
	if err != nil {
		s.err.Store(&err)
	}
	delete(t.subs, s)
	close(s.c)
}

// Tx is one batch of writes, applied atomically by Update. Writes go
// through a ytree.Writer: only the structs and list maps on their paths are
// copied, so an update costs what it writes, not the size of the tree.
type Tx struct {
	w *ytree.Writer
}

// Replace puts v, the generated struct of a config-false container or list
// entry, at path (a concrete path: every list key given). Missing ancestors
// are created; a list entry's key leaves are set from the path. v is not
// modified and must not be modified afterwards.
func (tx *Tx) Replace(path *gpb.Path, v ygot.GoStruct) error {
	if err := checkState(path); err != nil {
		return err
	}
	t, err := tx.w.Descend(path.GetElem(), true)
	if err != nil {
		return fmt.Errorf("telemetry: %s: %w", ytree.PathString(path.GetElem()), err)
	}
	rv := reflect.ValueOf(v)
	want := t.Type()
	if want == nil || rv.Type() != reflect.PointerTo(want.Go) {
		w := "a leaf or a whole list"
		if want != nil {
			w = reflect.PointerTo(want.Go).String()
		}
		return fmt.Errorf("telemetry: replace %s: value is %s, want %s", ytree.PathString(path.GetElem()), rv.Type(), w)
	}
	n := tx.w.Own(v)
	if t.IsEntry() {
		t.Field.SetKeys(n, t.Key)
	}
	tx.w.Set(t, n)
	return nil
}

// Delete removes the node at path; deleting what is absent is a no-op.
func (tx *Tx) Delete(path *gpb.Path) error {
	t, err := tx.w.Descend(path.GetElem(), false)
	if errors.Is(err, ytree.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("telemetry: %s: %w", ytree.PathString(path.GetElem()), err)
	}
	tx.w.Delete(t)
	return nil
}

// checkState refuses paths that are not config false: this tree holds state.
func checkState(path *gpb.Path) error {
	r, err := ytree.Resolve(path.GetElem())
	if err != nil {
		return fmt.Errorf("telemetry: %s: %w", ytree.PathString(path.GetElem()), err)
	}
	if !r.State {
		return fmt.Errorf("telemetry: %s is configuration, not state", ytree.PathString(path.GetElem()))
	}
	return nil
}

// Update runs fn on a new version of the tree and, if fn succeeds, makes it
// current and publishes the changes. If fn fails nothing changes.
func (t *Tree) Update(fn func(tx *Tx) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.cur.Load()
	tx := &Tx{w: ytree.NewWriter(old.Root)}
	if err := fn(tx); err != nil {
		return err
	}
	next := &Snapshot{Seq: old.Seq + 1, Time: t.now(), Root: tx.w.Root()}
	changes, err := diff(old.Root, next.Root, tx.w)
	if err != nil {
		return fmt.Errorf("telemetry: diff: %w", err)
	}
	t.cur.Store(next)
	if len(changes) == 0 {
		return nil
	}
	ev := Event{Snapshot: next, Changes: changes}
	for s := range t.subs {
		select {
		case s.c <- ev:
		default:
			t.drop(s, ErrOverflow)
		}
	}
	return nil
}

// diff lists the changes between two versions (ytree.Differ: the subtrees
// they share and the list entries the writer did not touch are not
// visited). A container or list entry that went away is one delete.
func diff(old, new *gen.Device, w *ytree.Writer) ([]Change, error) {
	var out []Change
	var err error
	d := ytree.Differ{
		Writer: w,
		Leaf: func(p []*gpb.PathElem, _ *ytree.Field, _, nv reflect.Value) {
			c := Change{Path: &gpb.Path{Elem: p}}
			if nv.IsValid() {
				if c.Val, err = ytree.TypedValue(nv); err != nil {
					return
				}
			}
			out = append(out, c)
		},
		Removed: func(p []*gpb.PathElem, _ *ytree.Type) {
			out = append(out, Change{Path: &gpb.Path{Elem: p}})
		},
	}
	d.Diff(old, new)
	return out, err
}

package gnmi

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestHubStall: a subscriber whose queue is full is ended only once it has
// taken nothing for stallTimeout; one that keeps taking batches, however
// far behind a burst it is, gets every batch in order.
func TestHubStall(t *testing.T) {
	h := newHub(&Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	stalledErr := make(chan error, 1)
	stalled := h.add(func(err error) { stalledErr <- err }, 2)
	slowEnded := make(chan error, 1)
	slow := h.add(func(err error) { slowEnded <- err }, 2)

	const n = 50
	got := make(chan int64, n)
	go func() { // a reader slower than the publisher
		for i := 0; i < n; i++ {
			b := <-slow.q
			slow.taken()
			time.Sleep(time.Millisecond)
			got <- b.ts
		}
	}()
	for i := 0; i < n; i++ {
		h.publish(&batch{ts: int64(i)})
	}
	select {
	case err := <-stalledErr:
		if err == nil {
			t.Error("stalled subscriber ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled subscriber was not ended")
	}
	for i := 0; i < n; i++ {
		select {
		case ts := <-got:
			if ts != int64(i) {
				t.Fatalf("batch %d arrived as %d", i, ts)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the slow reader got %d of %d batches", i, n)
		}
	}
	select {
	case err := <-slowEnded:
		t.Fatalf("a subscriber that kept reading was ended: %v", err)
	default:
	}
	h.mu.Lock()
	_, stillStalled := h.subs[stalled]
	h.mu.Unlock()
	if stillStalled {
		t.Error("the stalled subscriber is still in the hub")
	}
}

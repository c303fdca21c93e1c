package ike

import (
	"container/heap"
	"time"
)

// timer is a one-shot deadline in the engine's heap. Every per-SA and
// per-exchange deadline is one of these, so a tick costs O(log n) per
// expired timer and nothing for the others. Stopping removes it from the
// heap at once, so a deleted SA is not kept alive by its 24-hour timer.
type timer struct {
	at   time.Time
	fire func(now time.Time)
	dead bool
	idx  int // position in h, -1 when not in it
	h    *timerHeap
}

func (t *timer) stop() {
	if t == nil || t.dead {
		return
	}
	t.dead = true
	t.fire = nil
	if t.idx >= 0 && t.idx < len(*t.h) && (*t.h)[t.idx] == t {
		heap.Remove(t.h, t.idx)
	}
}

type timerHeap []*timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *timerHeap) Push(x any) { t := x.(*timer); t.idx = len(*h); *h = append(*h, t) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.idx = -1
	return t
}

func (e *Engine) after(at time.Time, f func(now time.Time)) *timer {
	t := &timer{at: at, fire: f, h: &e.timers}
	heap.Push(&e.timers, t)
	return t
}

// runTimers fires every live timer due at or before now.
func (e *Engine) runTimers(now time.Time) {
	for n := 0; len(e.timers) > 0 && n < 1<<20; n++ {
		t := e.timers[0]
		if t.dead {
			heap.Pop(&e.timers)
			continue
		}
		if t.at.After(now) {
			return
		}
		heap.Pop(&e.timers)
		t.dead = true
		f := t.fire
		t.fire = nil
		f(now)
	}
}

// NextDeadline is when Tick should next be called (zero if never).
func (e *Engine) NextDeadline() time.Time {
	for len(e.timers) > 0 && e.timers[0].dead {
		heap.Pop(&e.timers)
	}
	if len(e.timers) == 0 {
		return time.Time{}
	}
	return e.timers[0].at
}

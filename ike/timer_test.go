package ike

import (
	"testing"
	"time"
)

func TestTimersStopRemoves(t *testing.T) {
	e, _ := New(Config{}, nil)
	var fired []int
	ts := make([]*timer, 100)
	for i := range ts {
		i := i
		ts[i] = e.after(t0.Add(time.Duration(100-i)*time.Second), func(time.Time) { fired = append(fired, i) })
	}
	for i := 0; i < 100; i += 2 {
		ts[i].stop()
	}
	if len(e.timers) != 50 {
		t.Fatalf("%d timers in heap after stopping half", len(e.timers))
	}
	e.Tick(t0.Add(200 * time.Second))
	if len(fired) != 50 || len(e.timers) != 0 {
		t.Fatalf("fired %d", len(fired))
	}
	for k := 1; k < len(fired); k++ {
		if fired[k] > fired[k-1] { // later index = earlier deadline
			t.Fatal("timers fired out of order")
		}
	}
	for _, i := range fired {
		if i%2 == 0 {
			t.Fatal("a stopped timer fired")
		}
	}
}

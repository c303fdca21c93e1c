package store

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentReaders: readers walk and render the running config while
// commits go on; run with -race. Every snapshot a reader sees is complete
// and never changes under it.
func TestConcurrentReaders(t *testing.T) {
	s, _ := seedStore(t)
	ctx := context.Background()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				snap := s.Running()
				lt := snap.Root.Crypto.Isakmp.Policies.Policy[1].Config.GetLifetime()
				if _, err := EmitJSON(snap.Root, true); err != nil {
					t.Error(err)
					return
				}
				if p := Validate(snap.Root, crypto()); len(p) > 0 {
					t.Errorf("reader saw an invalid config: %v", p)
					return
				}
				if got := snap.Root.Crypto.Isakmp.Policies.Policy[1].Config.GetLifetime(); got != lt {
					t.Errorf("snapshot %d changed under a reader: %d -> %d", snap.ID, lt, got)
					return
				}
				reads.Add(1)
			}
		}()
	}
	for i := 0; i < 200; i++ {
		if _, err := s.Commit(ctx, Tx{Ops: []Op{
			upd(t, polA+"/config/lifetime", uintV(uint64(100+i))),
			upd(t, cmEntA+"/config/sa-lifetime-seconds", uintV(uint64(3600+i))),
		}}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if reads.Load() == 0 {
		t.Error("no reads happened")
	}
}

func TestConcurrentCommits(t *testing.T) {
	s, _ := seedStore(t)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				p := []string{"/crypto/isakmp/policies/policy[priority=1]/config/lifetime", cmEntA + "/config/sa-lifetime-seconds"}[w%2]
				if _, err := s.Commit(context.Background(), Tx{Ops: []Op{upd(t, p, uintV(uint64(1000+w*100+i)))}}); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	if got := s.Running().ID; got != 81 {
		t.Errorf("running id %d, want 81", got)
	}
}

func TestSubscribers(t *testing.T) {
	s, _ := seedStore(t)
	slow, _ := s.Subscribe(1)
	fast, cancelFast := s.Subscribe(1)
	var got []uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range fast {
			got = append(got, ev.Info.ID)
			if len(ev.Diff) != 1 || ev.Snapshot.ID != ev.Info.ID {
				t.Errorf("event %+v", ev)
			}
		}
	}()
	for i := 0; i < 5; i++ {
		commitLifetime(t, s, uint64(300+i))
		// let the fast reader drain (the commit never waits for it)
		for j := 0; j < 1000 && len(fast) > 0; j++ {
			runtimeGosched()
		}
	}
	// the slow subscriber got one event, then was dropped: its channel closes
	ev, ok := <-slow
	if !ok || ev.Info.ID != 2 {
		t.Errorf("slow subscriber's first event: %+v %v", ev.Info, ok)
	}
	if _, ok := <-slow; ok {
		t.Error("slow subscriber was not dropped")
	}
	cancelFast()
	<-done
	if len(got) == 0 || got[0] != 2 || len(got) != 5 {
		t.Errorf("fast subscriber got %v", got)
	}
	cancelFast() // idempotent
}

func runtimeGosched() { runtime.Gosched(); time.Sleep(10 * time.Microsecond) }

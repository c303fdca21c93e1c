package ipsec

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
)

var (
	peerA = netip.MustParseAddr("192.0.2.1")
	peerB = netip.MustParseAddr("192.0.2.2")
)

func acquire(id uint32, peer netip.Addr) Event {
	return Event{Kind: EventAcquire, Policy: PolicyKey{Dir: DirOut, ID: id}, SA: SAKey{Dst: peer, Proto: alg.ESP}}
}

func expire(kind EventKind, spi uint32) Event {
	return Event{Kind: kind, SA: SAKey{Dst: peerB, Proto: alg.ESP, SPI: spi}}
}

func invalid(src netip.Addr, spi uint32) Event {
	return Event{Kind: EventInvalidSPI, SA: SAKey{Dst: peerA, Proto: alg.ESP, SPI: spi}, Src: src}
}

// Waiting events coalesce by key and leave in the order their keys first
// arrived; soft and hard expiries of one SA are two keys.
func TestEventQueueCoalesces(t *testing.T) {
	q := newEventQueue(8)
	in := []Event{
		acquire(1, peerB), acquire(1, peerB), expire(EventSoftExpire, 0x100),
		acquire(2, peerB), acquire(1, peerA), acquire(1, peerB),
		expire(EventSoftExpire, 0x100), expire(EventHardExpire, 0x100), expire(EventSoftExpire, 0x101),
		invalid(peerA, 0x999), invalid(peerA, 0x999), invalid(peerB, 0x999),
	}
	for _, ev := range in {
		if !q.Put(ev) {
			t.Fatalf("Put(%+v) dropped", ev)
		}
	}
	want := []Event{
		acquire(1, peerB), expire(EventSoftExpire, 0x100), acquire(2, peerB), acquire(1, peerA),
		expire(EventHardExpire, 0x100), expire(EventSoftExpire, 0x101), invalid(peerA, 0x999), invalid(peerB, 0x999),
	}
	if s := q.Stats(); s.Pending != len(want) || s.Coalesced != uint64(len(in)-len(want)) || s.Dropped != 0 {
		t.Fatalf("stats %+v", s)
	}
	for i, w := range want {
		got, ok := q.next()
		if !ok || got != w {
			t.Fatalf("event %d: %+v, want %+v", i, got, w)
		}
		q.delivered(&got)
	}
	if ev, ok := q.next(); ok {
		t.Fatalf("extra event %+v", ev)
	}
	// Taken: the same key queues again (the reader may have it already).
	q.Put(acquire(1, peerB))
	if got, ok := q.next(); !ok || got != acquire(1, peerB) {
		t.Fatalf("re-raised acquire: %+v", got)
	}
}

// Invalid-SPI events beyond the limit are dropped and counted; acquires
// and expiries never are.
func TestEventQueueBoundsInvalidSPIOnly(t *testing.T) {
	q := newEventQueue(3)
	for i := range 5 {
		want := i < 3
		if got := q.Put(invalid(peerB, uint32(0x1000+i))); got != want {
			t.Fatalf("invalid SPI %d: Put %v, want %v", i, got, want)
		}
	}
	for i := range 10_000 {
		if !q.Put(expire(EventHardExpire, uint32(0x2000+i))) || !q.Put(acquire(uint32(i), peerB)) {
			t.Fatalf("event %d dropped", i)
		}
	}
	if s := q.Stats(); s.Pending != 3+20_000 || s.Dropped != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// With a reader that does not read, the producer never blocks; when it
// reads, it gets one event per key (those already in the channel when the
// producer came again may come twice: they had left the queue), and the
// invalid SPIs in the channel count against the limit until they are read.
func TestEventQueueSlowReader(t *testing.T) {
	q := NewEventQueue(2)
	defer q.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10 {
			for i := range 10_000 {
				q.Put(expire(EventSoftExpire, uint32(0x100+i)))
			}
		}
		for i := range 5 {
			q.Put(invalid(peerB, uint32(0x1000+i)))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Put blocked with nobody reading")
	}
	seen := map[SAKey]bool{}
	invalids, twice := 0, 0
	for len(seen)+invalids < 10_000+2 || twice < ChanBuffer+1 && len(q.Events()) > 0 {
		select {
		case ev := <-q.Events():
			if ev.Kind == EventInvalidSPI {
				invalids++
				continue
			}
			if seen[ev.SA] {
				if twice++; twice > ChanBuffer+1 {
					t.Fatalf("%v delivered twice, and %d others", ev.SA, twice-1)
				}
			}
			seen[ev.SA] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d expiries and %d invalid SPIs", len(seen), invalids)
		}
	}
	if s := q.Stats(); s.Dropped != 3 {
		t.Fatalf("stats %+v", s)
	}
	// Read: the slots are free again.
	if !q.Put(invalid(peerA, 0x7777)) {
		t.Fatal("invalid SPI refused after the others were read")
	}
}

func TestEventQueueClose(t *testing.T) {
	q := NewEventQueue(1)
	q.Put(acquire(1, peerB))
	q.Close()
	for range q.Events() {
	}
	if q.Put(acquire(2, peerB)) {
		t.Fatal("Put after Close accepted")
	}
	q.Close()
}

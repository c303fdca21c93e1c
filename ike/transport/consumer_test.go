package transport

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiagent/spiagent/ike"
)

// within runs f and waits at most d for it.
func within(d time.Duration, f func() error) error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		return fmt.Errorf("no answer within %v", d)
	}
}

// TestConsumerBlocksInOnOutput is issue 11's deadlock: the consumer of the
// engine's output waits, inside OnOutput, on synchronous Transport calls
// (Snapshot, Initiate) and then on a gate the test holds, as the agent's
// loop did while its channel was full. The engine must keep negotiating
// and answering meanwhile, and hand over every install, once, when the
// consumer is back.
func TestConsumerBlocksInOnOutput(t *testing.T) {
	const n = 300
	port := uint16(portBase.Add(2))
	ecfg := engineConfig(port, ike.NATTOff)
	var pa []ike.ChildPolicy
	for i := range n {
		pa = append(pa, pol(fmt.Sprint("a", i), loA, loB, "198.51.100.0/24", "203.0.113.0/24"))
	}
	var self atomic.Pointer[Transport]
	gate := make(chan struct{})
	installs := make(chan ike.ChildSA, 2*n)
	inside := make(chan error, 1)
	var calls atomic.Int32
	onOutput := func(o ike.Output) {
		if calls.Add(1) == 1 {
			tr := self.Load()
			err := within(5*time.Second, func() error { _, err := tr.Snapshot(); return err })
			if err == nil {
				err = within(5*time.Second, func() error { return tr.Initiate("a0", nil) })
			}
			inside <- err
			select { // a consumer that stays away
			case <-gate:
			case <-time.After(time.Minute):
			}
		}
		for _, c := range o.Install {
			installs <- c
		}
	}
	tr, err := New(ecfg, Config{Addrs: []netip.Addr{loA}, OnOutput: onOutput}, rand.Reader)
	if err != nil {
		t.Skipf("cannot bind %v: %v", loA, err)
	}
	self.Store(tr)
	t.Cleanup(func() { tr.Close() })
	t.Cleanup(func() { close(gate) }) // runs first: let the consumer go
	if err := tr.SetChildPolicies(pa); err != nil {
		t.Fatal(err)
	}
	b := startEnd(t, loB, ecfg, []ike.ChildPolicy{pol("b", loB, loA, "203.0.113.0/24", "198.51.100.0/24")})
	for i := range n {
		if err := within(5*time.Second, func() error { return tr.Initiate(fmt.Sprint("a", i), nil) }); err != nil {
			t.Fatalf("Initiate a%d: %v", i, err)
		}
	}
	if err := waitFor(t, inside, "the consumer's calls from inside OnOutput"); err != nil {
		t.Fatalf("Transport call from inside OnOutput: %v", err)
	}
	// The consumer is stuck; the engine still negotiates every child SA
	// (B sees them all) and answers.
	deadline := time.Now().Add(30 * time.Second)
	for got := 0; got < n; {
		select {
		case <-b.install:
			got++
		case <-time.After(time.Until(deadline)):
			t.Fatalf("B has %d of %d child SAs while A's consumer is blocked", got, n)
		}
	}
	var snap ike.Snapshot
	if err := within(5*time.Second, func() (err error) { snap, err = tr.Snapshot(); return err }); err != nil || len(snap.Children) != n {
		t.Fatalf("Snapshot while the consumer is blocked: %d children, %v", len(snap.Children), err)
	}
	if c, err := tr.Counters(); err != nil || c.ChildInstalled != n || c.Admitted != n {
		t.Fatalf("counters %+v, %v", c, err)
	}
	close(gate)
	gate = make(chan struct{}) // for the cleanup
	seen := map[string]bool{}
	for len(seen) < n {
		c := waitFor(t, installs, "installs after the consumer came back")
		if seen[c.Tag] {
			t.Fatalf("install for %s handed over twice", c.Tag)
		}
		seen[c.Tag] = true
	}
	select {
	case c := <-installs:
		t.Fatalf("an extra install %s", c.Tag)
	case <-time.After(100 * time.Millisecond):
	}
	if s := tr.Stats(); s.EventsDropped != 0 || s.Cancelled != 0 {
		t.Fatalf("stats %+v", s)
	}
}

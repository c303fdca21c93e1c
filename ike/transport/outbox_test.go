package transport

import (
	"testing"

	"github.com/spiagent/spiagent/ike"
)

func TestOutboxMergesAndCancels(t *testing.T) {
	b := newOutbox()
	b.put(ike.Output{Install: []ike.ChildSA{{ID: 1}, {ID: 2}}, Events: []ike.Event{{Kind: ike.EventIKEUp}}})
	b.put(ike.Output{Install: []ike.ChildSA{{ID: 3}}, Delete: []ike.ChildDelete{{ChildSA: ike.ChildSA{ID: 2}}}})
	// 2 was never handed over: its Install and Delete cancel.
	o := b.take()
	if len(o.Install) != 2 || o.Install[0].ID != 1 || o.Install[1].ID != 3 || len(o.Delete) != 0 || len(o.Events) != 1 {
		t.Fatalf("first batch %+v", o)
	}
	// 1 was handed over: its Delete goes through.
	b.put(ike.Output{Delete: []ike.ChildDelete{{ChildSA: ike.ChildSA{ID: 1}}}})
	if o := b.take(); len(o.Delete) != 1 || o.Delete[0].ID != 1 || len(o.Install) != 0 {
		t.Fatalf("second batch %+v", o)
	}
	if o := b.take(); !o.Empty() {
		t.Fatalf("empty box gave %+v", o)
	}
	// Events beyond the cap are dropped and counted; installs never.
	many := make([]ike.Event, maxPendingEvents+10)
	var ins []ike.ChildSA
	for i := range 2 * maxPendingEvents {
		ins = append(ins, ike.ChildSA{ID: uint64(100 + i)})
	}
	b.put(ike.Output{Events: many, Install: ins})
	b.put(ike.Output{Events: many[:5]})
	o = b.take()
	if dropped, cancelled := b.stats(); len(o.Events) != maxPendingEvents || dropped != 15 || cancelled != 1 || len(o.Install) != len(ins) {
		t.Fatalf("%d events, %d installs, dropped %d cancelled %d", len(o.Events), len(o.Install), dropped, cancelled)
	}
}

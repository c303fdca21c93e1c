package interop

import (
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiagent/spiagent/ike"
)

// DPD both ways with charon (1 s intervals), then charon dies and our DPD
// declares it dead and deletes the child SA.
func TestDPDWithCharon(t *testing.T) {
	s := suites[0]
	l := newLab(t)
	l.writeConf(charonConf{ikeProp: s.ikeProp, espProp: s.espProp, dpd: "1s"})
	l.startCharon()
	o := l.startOursTraced(s.pol, childPolicy(s.tr, s.pfs), traceToCorpus(), func(c *ike.Config) {
		c.DPDInterval, c.DPDRetries = time.Second, 2
	})
	if err := o.tr.Initiate("net", nil); err != nil {
		t.Fatal(err)
	}
	c := recv(t, l, o.install, "child SA")
	checkSameSPIs(t, l, c)
	// Charon's own R-U-THEREs (every second) count as traffic from the
	// peer, which can keep our periodic DPD quiet: ask for one on demand
	// too, so both directions are exercised whatever the timing.
	if err := o.tr.DPD(netip.MustParseAddr(addrCharon)); err != nil {
		t.Fatal(err)
	}
	ok := waitFor(6*time.Second, func() bool {
		snap, _ := o.tr.Snapshot()
		return snap.Counters.DPDAcks >= 1 && strings.Contains(l.log(), "N(DPD_ACK)")
	})
	snap, _ := o.tr.Snapshot()
	if !ok {
		t.Fatalf("DPD exchange incomplete: ours %+v\n%s", snap.Counters, l.log())
	}
	t.Logf("our R-U-THEREs %d, acks %d; charon parsed our acks", snap.Counters.DPDSent, snap.Counters.DPDAcks)

	l.cmd.Process.Signal(syscall.SIGKILL) // charon dies without a word
	l.cmd.Wait()
	l.cmd = nil
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-o.events:
			if ev.Kind != ike.EventDPDDead {
				continue
			}
			d := recv(t, l, o.deletes, "delete after DPD")
			if d.ID != c.ID || d.Reason != ike.ReasonDPD {
				t.Fatalf("delete %+v", d)
			}
			return
		case <-deadline:
			t.Fatal("charon's death was not detected by DPD")
		}
	}
}

package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/spiagent/spiagent/ike"
	"github.com/spiagent/spiagent/ipsec"
)

// The dataplane half of IKE's output runs on the IKE engine's goroutine,
// before the datagrams of the same step leave (ike/transport's OnOutput):
// a responder's inbound SAs are in place before Quick Mode's second message
// tells the initiator it may use them, and an initiator's before the third
// tells the responder. Installing later, from the agent's loop, lost the
// packets a peer sent on fresh SAs in between (strongSwan switches to a
// rekeyed SA as soon as it may; seen in the qemu lab). This half touches
// only the dataplane and the prepared table, never a.mu or the transport:
// the agent's loop holds a.mu while it calls into the transport, which
// waits for the engine goroutine.

// ikeBatch is one engine output with its dataplane work done.
type ikeBatch struct {
	o ike.Output
	// keys are the SAs installed per Install entry (by child ID); failed
	// holds the entries the dataplane refused (none of their SAs remain).
	keys   map[uint64][]ipsec.SAKey
	failed map[uint64]error
}

// onIKEOutput runs on the IKE engine's goroutine: install and remove SAs,
// then hand the rest to the agent loop (which may call back into the
// transport).
func (a *Agent) onIKEOutput(o ike.Output) {
	b := a.applyDataplane(o)
	select {
	case a.ikeOut <- b:
	case <-a.done:
	}
}

func (a *Agent) applyDataplane(o ike.Output) ikeBatch {
	b := ikeBatch{o: o, keys: map[uint64][]ipsec.SAKey{}, failed: map[uint64]error{}}
	if len(o.Prepare)+len(o.Install)+len(o.Delete) == 0 {
		return b
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	a.prepMu.Lock()
	defer a.prepMu.Unlock()
	for i := range o.Prepare {
		c := &o.Prepare[i]
		keys, err := a.addSAs(ctx, dataplaneSAs(c, replayWindow), nil)
		if err != nil {
			// The Install that follows tries again, and fails the bundle.
			a.log.Warn("dataplane refused a prepared inbound SA", "peer", c.Remote, "err", err)
			continue
		}
		a.prepared[c.ID] = keys
	}
	for i := range o.Delete {
		id := o.Delete[i].ID
		if keys, ok := a.prepared[id]; ok { // prepared, never installed
			a.deleteSAs(ctx, keys)
			delete(a.prepared, id)
		}
	}
	for i := range o.Install {
		c := &o.Install[i]
		have := a.prepared[c.ID]
		delete(a.prepared, c.ID)
		keys, err := a.addSAs(ctx, dataplaneSAs(c, replayWindow), have)
		if err != nil {
			a.deleteSAs(ctx, keys)
			b.failed[c.ID] = err
			continue
		}
		b.keys[c.ID] = keys
	}
	return b
}

// addSAs installs sas in order, skipping those in have (already
// installed); it returns every key in place (have included) and the first
// error.
func (a *Agent) addSAs(ctx context.Context, sas []ipsec.SA, have []ipsec.SAKey) ([]ipsec.SAKey, error) {
	keys := append([]ipsec.SAKey(nil), have...)
	for _, sa := range sas {
		if containsKey(have, sa.Key()) {
			continue
		}
		if err := a.dp.AddSA(ctx, sa); err != nil {
			return keys, fmt.Errorf("SA %s (%s): %w", sa.Key(), sa.Dir, err)
		}
		keys = append(keys, sa.Key())
	}
	return keys, nil
}

func (a *Agent) deleteSAs(ctx context.Context, keys []ipsec.SAKey) {
	for _, k := range keys {
		if err := a.dp.DeleteSA(ctx, k); err != nil && !errors.Is(err, ipsec.ErrNotFound) {
			a.log.Warn("dataplane delete SA", "sa", k, "err", err)
		}
	}
}

func containsKey(keys []ipsec.SAKey, k ipsec.SAKey) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

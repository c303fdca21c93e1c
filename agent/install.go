package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/spiagent/spiagent/ike"
	"github.com/spiagent/spiagent/ipsec"
)

// The dataplane half of IKE's output runs on the IKE engine's goroutine,
// before the datagrams of the same step leave (ike/transport's
// BeforeSend): a responder's inbound SAs are in place before Quick Mode's
// second message tells the initiator it may use them, and an initiator's
// before the third tells the responder. Installing later, from the agent's
// loop, lost the packets a peer sent on fresh SAs in between (strongSwan
// switches to a rekeyed SA as soon as it may; seen in the qemu lab). This
// half touches only the dataplane and its two tables, never a.mu, the
// agent's loop or the transport: the engine goroutine must never wait for
// them (issue 11's deadlock). The rest of the output (bookkeeping,
// telemetry, events) reaches the loop later, batched by the transport
// (OnOutput), and the loop takes each Install's result from installed.

// installResult is what the dataplane half did with one Install: the SAs
// in place, or why the dataplane refused the bundle (none of its SAs remain).
type installResult struct {
	keys []ipsec.SAKey
	err  error
}

// onIKEOutput runs on the transport's output goroutine: hand the batch to
// the agent loop (which may call back into the transport).
func (a *Agent) onIKEOutput(o ike.Output) {
	select {
	case a.ikeOut <- o:
	case <-a.done:
	}
}

// applyDataplane is the transport's BeforeSend: prepare, install and
// remove SAs.
func (a *Agent) applyDataplane(o ike.Output) {
	if len(o.Prepare)+len(o.Install)+len(o.Delete) == 0 {
		return
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
		if r, ok := a.installed[id]; ok { // installed, the loop has not taken it yet
			a.deleteSAs(ctx, r.keys)
			delete(a.installed, id)
		}
	}
	for i := range o.Install {
		c := &o.Install[i]
		have := a.prepared[c.ID]
		delete(a.prepared, c.ID)
		keys, err := a.addSAs(ctx, dataplaneSAs(c, replayWindow), have)
		if err != nil {
			a.deleteSAs(ctx, keys)
			a.installed[c.ID] = installResult{err: err}
			continue
		}
		a.installed[c.ID] = installResult{keys: keys}
	}
}

// takeInstalled returns, and forgets, what the dataplane half did with
// child id's Install; ok is false when the bundle was deleted before the
// loop got to it (its SAs are gone with it).
func (a *Agent) takeInstalled(id uint64) (r installResult, ok bool) {
	a.prepMu.Lock()
	defer a.prepMu.Unlock()
	r, ok = a.installed[id]
	delete(a.installed, id)
	return r, ok
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

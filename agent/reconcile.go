package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"

	"github.com/spiagent/spiagent/agent/intent"
	"github.com/spiagent/spiagent/agent/recovery"
	"github.com/spiagent/spiagent/ike"
	"github.com/spiagent/spiagent/ipsec"
	"github.com/spiagent/spiagent/store"
)

// applied is what the reconciler has put into the engines, so that the next
// commit changes only what differs.
type applied struct {
	policies map[ipsec.PolicyKey]ipsec.Policy
	owner    map[ipsec.PolicyKey]string // policy -> rule tag (protect policies)
	reqIDs   map[string]uint32          // rule tag -> request ID
	byReqID  map[uint32]string
	rules    map[string]ruleState // rule tag -> what it was built from
	addrs    map[string]netip.Prefix
}

type ruleState struct {
	tun  intent.Tunnel
	rule intent.Rule
}

func newApplied() applied {
	return applied{
		policies: map[ipsec.PolicyKey]ipsec.Policy{},
		owner:    map[ipsec.PolicyKey]string{},
		reqIDs:   map[string]uint32{},
		byReqID:  map[uint32]string{},
		rules:    map[string]ruleState{},
		addrs:    map[string]netip.Prefix{},
	}
}

// Apply is the store's Applier: it makes the engines match the new
// configuration, touching only what changed. If any engine refuses, it puts
// back what it had changed and returns the error, and the store keeps the
// old configuration.
func (a *Agent) Apply(ctx context.Context, old, new *store.Snapshot, _ store.Diff) error {
	in, err := intent.FromConfig(new.Root)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.cur
	prevApplied := a.applied.clone()
	if err := a.applyIntent(ctx, in); err != nil {
		// Roll back: re-apply the previous intent over whatever was done.
		if rerr := a.applyIntent(ctx, prev); rerr != nil {
			a.log.Error("rollback after a refused commit failed; engines may differ from the running config", "err", rerr)
		}
		a.applied = prevApplied
		return err
	}
	a.cur = in
	a.rec.SetConfig(recoveryConfig(in), hasKey(in))
	a.publishConfigState(in, new.Root)
	return nil
}

func recoveryConfig(in *intent.Intent) recovery.Config {
	l := in.Global.Limits
	return recovery.Config{
		Enabled:          in.Global.InvalidSPIRecovery,
		PerPeerPerMinute: l.PerPeerPerMinute,
		PerPeerBurst:     l.PerPeerBurst,
		GlobalPerMinute:  l.GlobalPerMinute,
		DedupWindow:      l.DedupWindow,
	}
}

func hasKey(in *intent.Intent) func(netip.Addr) bool {
	keys := make(map[netip.Addr]bool, len(in.Keys))
	for k := range in.Keys {
		keys[k] = true
	}
	return func(a netip.Addr) bool { return keys[a] }
}

func (ap applied) clone() applied {
	return applied{
		policies: maps.Clone(ap.policies),
		owner:    maps.Clone(ap.owner),
		reqIDs:   maps.Clone(ap.reqIDs),
		byReqID:  maps.Clone(ap.byReqID),
		rules:    maps.Clone(ap.rules),
		addrs:    maps.Clone(ap.addrs),
	}
}

// applyIntent pushes an intent into the engines. Called with a.mu held.
func (a *Agent) applyIntent(ctx context.Context, in *intent.Intent) error {
	if err := a.applyAddresses(in); err != nil {
		return err
	}
	rules := map[string]ruleState{}
	for i := range in.Tunnels {
		t := in.Tunnels[i]
		for _, r := range t.Rules {
			if r.Permit {
				rules[ruleTag(&t, r)] = ruleState{tun: t, rule: r}
			}
		}
	}
	// Rules that went away or changed lose their SAs (with DELETE
	// notifications) before IKE forgets them.
	for tag, old := range a.applied.rules {
		if nw, ok := rules[tag]; ok && reflect.DeepEqual(nw, old) {
			continue
		}
		a.deleteChildrenOf(tag, true)
		if _, ok := rules[tag]; !ok {
			delete(a.applied.byReqID, a.applied.reqIDs[tag])
			delete(a.applied.reqIDs, tag)
		}
	}
	for tag := range rules {
		if _, ok := a.applied.reqIDs[tag]; !ok {
			id := reqIDFor(tag, a.applied.byReqID)
			a.applied.reqIDs[tag], a.applied.byReqID[id] = id, tag
		}
	}
	icfg := ikeConfig(in, ike.Config{Port: a.cfg.IKEPort, NATTPort: a.cfg.NATTPort, Log: a.log.With("component", "ike")})
	if err := a.ike.SetConfig(icfg); err != nil {
		return fmt.Errorf("agent: IKE refused the ISAKMP configuration: %w", err)
	}
	cps := childPolicies(in, a.applied.reqIDs)
	if err := a.ike.SetChildPolicies(cps); err != nil {
		return fmt.Errorf("agent: IKE refused the crypto maps: %w", err)
	}
	if err := a.applyPolicies(ctx, in); err != nil {
		return err
	}
	a.applied.rules = rules
	return nil
}

// desiredPolicies computes the SPD for an intent: per tunnel, in ACL order,
// a protect policy (out and in) per permit entry and a bypass policy per
// deny entry.
func (a *Agent) desiredPolicies(in *intent.Intent) (map[ipsec.PolicyKey]ipsec.Policy, map[ipsec.PolicyKey]string) {
	want := map[ipsec.PolicyKey]ipsec.Policy{}
	owner := map[ipsec.PolicyKey]string{}
	for ti := range in.Tunnels {
		t := &in.Tunnels[ti]
		if len(t.Peers) == 0 || len(t.Transforms) == 0 {
			continue
		}
		for ri, r := range t.Rules {
			tag := ruleTag(t, r)
			id := a.applied.reqIDs[tag]
			if !r.Permit {
				id = reqIDFor(tag+"/deny", a.applied.byReqID)
			}
			prio := uint32(ti)<<16 | uint32(ri)
			out := ipsec.Policy{ID: id, Dir: ipsec.DirOut, Priority: prio, Selector: r.Selector, Action: ipsec.ActionBypass}
			inb := ipsec.Policy{ID: id, Dir: ipsec.DirIn, Priority: prio, Selector: r.Selector.Mirror(), Action: ipsec.ActionBypass}
			if r.Permit {
				tmpl := templates(t.Transforms[0], t.Local, t.Peers[0], id)
				out.Action, out.Templates = ipsec.ActionProtect, tmpl
				inb.Action, inb.Templates = ipsec.ActionProtect, templates(t.Transforms[0], t.Peers[0], t.Local, id)
				owner[out.Key()], owner[inb.Key()] = tag, tag
			}
			want[out.Key()], want[inb.Key()] = out, inb
			if a.needsFwd {
				// The kernel checks decapsulated traffic that it forwards
				// (host to host through this router) against fwd
				// policies, and drops tunnel-mode traffic that has none.
				fwd := inb
				fwd.Dir = ipsec.DirFwd
				want[fwd.Key()] = fwd
				if r.Permit {
					owner[fwd.Key()] = tag
				}
			}
		}
	}
	return want, owner
}

func (a *Agent) applyPolicies(ctx context.Context, in *intent.Intent) error {
	want, owner := a.desiredPolicies(in)
	for k, p := range a.applied.policies {
		if w, ok := want[k]; ok && reflect.DeepEqual(w, p) {
			continue
		}
		if err := a.dp.DeletePolicy(ctx, k); err != nil && !errors.Is(err, ipsec.ErrNotFound) {
			return fmt.Errorf("agent: dataplane refused to delete policy %v: %w", k, err)
		}
		delete(a.applied.policies, k)
		delete(a.applied.owner, k)
	}
	for k, p := range want {
		if _, ok := a.applied.policies[k]; ok {
			continue
		}
		if err := a.dp.AddPolicy(ctx, p); err != nil {
			return fmt.Errorf("agent: dataplane refused policy %v (%s): %w", k, p.Selector, err)
		}
		a.applied.policies[k] = p
		if tag, ok := owner[k]; ok {
			a.applied.owner[k] = tag
		}
	}
	return nil
}

// deleteChildrenOf deletes the SAs negotiated for a rule tag: through IKE
// (which notifies the peer when notify is set, and reports the delete back
// to the loop, which removes them from the dataplane).
func (a *Agent) deleteChildrenOf(tag string, notify bool) int {
	n := 0
	for id, c := range a.children {
		if c.sa.Tag != tag {
			continue
		}
		n++
		if err := a.ike.DeleteChild(id); err != nil {
			a.log.Warn("delete child SA", "tag", tag, "err", err)
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			a.removeChildLocked(ctx, id, ike.ReasonLocal)
			cancel()
		}
	}
	return n
}

package userspace

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// maxTemplates bounds a policy's bundle (AH+ESP is two).
const maxTemplates = 3

// spdTable is an immutable snapshot of the SPD, policies sorted by
// priority then ID (ACL order).
type spdTable struct {
	byKey map[ipsec.PolicyKey]*ipsec.Policy
	out   []*ipsec.Policy
	in    []*ipsec.Policy // in and fwd: both check decapsulated traffic
}

func (t *spdTable) lookup(list []*ipsec.Policy, f *flow) *ipsec.Policy {
	for _, p := range list {
		if p.Selector.Matches(f.src, f.dst, f.proto, f.sport, f.dport) {
			return p
		}
	}
	return nil
}

func validatePolicy(p *ipsec.Policy) error {
	if !p.Selector.Src.IsValid() || !p.Selector.Dst.IsValid() {
		return fmt.Errorf("userspace: policy %d: selector needs source and destination prefixes", p.ID)
	}
	if !p.Selector.Src.Addr().Is4() || !p.Selector.Dst.Addr().Is4() {
		return fmt.Errorf("userspace: policy %d: IPv4 only", p.ID)
	}
	if p.Action != ipsec.ActionProtect {
		return nil
	}
	if len(p.Templates) == 0 || len(p.Templates) > maxTemplates {
		return fmt.Errorf("userspace: policy %d: protect needs 1 to %d templates, has %d", p.ID, maxTemplates, len(p.Templates))
	}
	for _, t := range p.Templates {
		if t.Proto != alg.ESP && t.Proto != alg.AH {
			return fmt.Errorf("userspace: policy %d: template protocol %s", p.ID, t.Proto)
		}
		if !t.Mode.Valid() {
			return fmt.Errorf("userspace: policy %d: template %s", p.ID, t.Mode)
		}
		if !t.Dst.Is4() {
			return fmt.Errorf("userspace: policy %d: template needs an IPv4 peer", p.ID)
		}
	}
	return nil
}

// AddPolicy installs an SPD entry. An outbound protect policy also routes
// its destination prefix into the TUN.
func (d *Dataplane) AddPolicy(ctx context.Context, p ipsec.Policy) error {
	if err := validatePolicy(&p); err != nil {
		return err
	}
	p.Templates = slices.Clone(p.Templates)
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.spd.Load()
	if _, ok := t.byKey[p.Key()]; ok {
		return fmt.Errorf("userspace: policy %s/%d: %w", p.Dir, p.ID, ipsec.ErrExists)
	}
	if routed(&p) {
		if err := d.routeRef(p.Selector.Dst.Masked(), +1); err != nil {
			return err
		}
	}
	byKey := maps.Clone(t.byKey)
	byKey[p.Key()] = &p
	d.spd.Store(buildSPD(byKey))
	return nil
}

// DeletePolicy removes an SPD entry (and its route when no other policy
// needs it).
func (d *Dataplane) DeletePolicy(ctx context.Context, key ipsec.PolicyKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.spd.Load()
	p := t.byKey[key]
	if p == nil {
		return fmt.Errorf("userspace: policy %s/%d: %w", key.Dir, key.ID, ipsec.ErrNotFound)
	}
	byKey := maps.Clone(t.byKey)
	delete(byKey, key)
	d.spd.Store(buildSPD(byKey))
	if routed(p) {
		return d.routeRef(p.Selector.Dst.Masked(), -1)
	}
	return nil
}

func routed(p *ipsec.Policy) bool { return p.Dir == ipsec.DirOut && p.Action == ipsec.ActionProtect }

func buildSPD(byKey map[ipsec.PolicyKey]*ipsec.Policy) *spdTable {
	t := &spdTable{byKey: byKey}
	for _, p := range byKey {
		if p.Dir == ipsec.DirOut {
			t.out = append(t.out, p)
		} else {
			t.in = append(t.in, p)
		}
	}
	order := func(a, b *ipsec.Policy) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.ID, b.ID))
	}
	slices.SortFunc(t.out, order)
	slices.SortFunc(t.in, order)
	return t
}

// routeRef counts the policies that need a route and adds or removes it
// on the first and last. Called with d.mu held.
func (d *Dataplane) routeRef(p netip.Prefix, delta int) error {
	n := d.routes[p]
	switch {
	case delta > 0 && n == 0 && d.cfg.Router != nil:
		if err := d.cfg.Router.AddRoute(p); err != nil {
			return fmt.Errorf("userspace: route %s into %s: %w", p, d.tunName(), err)
		}
	case delta < 0 && n == 1 && d.cfg.Router != nil:
		if err := d.cfg.Router.DelRoute(p); err != nil {
			delete(d.routes, p)
			return fmt.Errorf("userspace: delete route %s: %w", p, err)
		}
	}
	if n+delta <= 0 {
		delete(d.routes, p)
	} else {
		d.routes[p] = n + delta
	}
	return nil
}

func (d *Dataplane) tunName() string {
	if d.cfg.TUN == nil {
		return "(no TUN)"
	}
	return d.cfg.TUN.Name()
}

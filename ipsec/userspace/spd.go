package userspace

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// maxTemplates bounds a policy's bundle (AH+ESP is two).
const maxTemplates = 3

// The SPD is a tuple space (the packet classifier of Srinivasan et al.,
// SIGCOMM 1999; Open vSwitch's): policies are grouped by the prefix
// lengths of their selectors (source bits, destination bits), and each
// group is a hash of (source, destination) masked to those lengths. A
// lookup masks the packet's addresses once per group present (typically
// one or two: host pairs /32-/32, subnets /24-/24, any), takes the bucket of
// policies with exactly those prefixes (they differ only in protocol and
// ports) and keeps the first match in ACL order, priority then ID, across
// groups. Overlapping selectors in different groups are therefore still
// decided by order, and a lookup costs the number of groups, not the
// number of policies. Adding or removing a policy copies one bucket and
// one shard of its group's map.

// spdClass is one direction's policies: out, or in and fwd (both check
// decapsulated traffic).
type spdClass struct {
	tuples atomic.Pointer[[]*spdTuple] // copied on the rare change of the set of groups
	n      atomic.Int64
}

// spdTuple is the group of policies with one pair of prefix lengths.
type spdTuple struct {
	sbits, dbits int
	m            cowMap[pairKey, []*ipsec.Policy] // buckets in ACL order
}

type pairKey struct{ src, dst uint32 }

// spd is the whole SPD: byKey for the control plane (under the dataplane's
// mutex), the classes for the packet path.
type spd struct {
	byKey   map[ipsec.PolicyKey]*ipsec.Policy
	out, in spdClass
}

func newSPD() *spd { return &spd{byKey: map[ipsec.PolicyKey]*ipsec.Policy{}} }

func (t *spd) class(p *ipsec.Policy) *spdClass {
	if p.Dir == ipsec.DirOut {
		return &t.out
	}
	return &t.in
}

// reset empties the SPD (Flush).
func (t *spd) reset() {
	clear(t.byKey)
	for _, c := range []*spdClass{&t.out, &t.in} {
		c.tuples.Store(nil)
		c.n.Store(0)
	}
}

// aclBefore is ACL order: lower priority first, then lower ID.
func aclBefore(a, b *ipsec.Policy) bool {
	return a.Priority < b.Priority || (a.Priority == b.Priority && a.ID < b.ID)
}

func aclOrder(a, b *ipsec.Policy) int {
	return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.ID, b.ID))
}

func v4(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func mask(a uint32, bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return a &^ (1<<(32-bits) - 1)
}

func selectorKey(p *ipsec.Policy) (sbits, dbits int, k pairKey) {
	sbits, dbits = p.Selector.Src.Bits(), p.Selector.Dst.Bits()
	return sbits, dbits, pairKey{mask(v4(p.Selector.Src.Addr()), sbits), mask(v4(p.Selector.Dst.Addr()), dbits)}
}

// lookup returns the first policy, in ACL order, that matches f. It takes
// no lock and allocates nothing.
func (c *spdClass) lookup(f *flow) *ipsec.Policy {
	tp := c.tuples.Load()
	if tp == nil {
		return nil
	}
	src, dst := v4(f.src), v4(f.dst)
	var best *ipsec.Policy
	for _, t := range *tp {
		bucket, _ := t.m.get(pairKey{mask(src, t.sbits), mask(dst, t.dbits)})
		for _, p := range bucket {
			if best != nil && !aclBefore(p, best) {
				break
			}
			if p.Selector.Matches(f.src, f.dst, f.proto, f.sport, f.dport) {
				best = p
				break
			}
		}
	}
	return best
}

// add inserts p. Called with the dataplane's mutex held.
func (c *spdClass) add(p *ipsec.Policy) {
	sbits, dbits, k := selectorKey(p)
	t := c.tuple(sbits, dbits, true)
	old, _ := t.m.get(k)
	i, _ := slices.BinarySearchFunc(old, p, aclOrder)
	t.m.set(k, slices.Insert(slices.Clip(old), i, p))
	c.n.Add(1)
}

// remove deletes p. Called with the dataplane's mutex held.
func (c *spdClass) remove(p *ipsec.Policy) {
	sbits, dbits, k := selectorKey(p)
	t := c.tuple(sbits, dbits, false)
	if t == nil {
		return
	}
	old, _ := t.m.get(k)
	i := slices.Index(old, p)
	if i < 0 {
		return
	}
	c.n.Add(-1)
	if len(old) > 1 {
		t.m.set(k, slices.Delete(slices.Clone(old), i, i+1))
		return
	}
	t.m.del(k)
	if t.m.n == 0 {
		ts := slices.DeleteFunc(slices.Clone(*c.tuples.Load()), func(x *spdTuple) bool { return x == t })
		c.tuples.Store(&ts)
	}
}

// tuple finds (or, with create, adds) the group for a pair of lengths.
func (c *spdClass) tuple(sbits, dbits int, create bool) *spdTuple {
	var ts []*spdTuple
	if tp := c.tuples.Load(); tp != nil {
		ts = *tp
	}
	for _, t := range ts {
		if t.sbits == sbits && t.dbits == dbits {
			return t
		}
	}
	if !create {
		return nil
	}
	t := &spdTuple{sbits: sbits, dbits: dbits}
	t.m.hash = func(k pairKey) uint32 { return k.src*0x85ebca6b ^ k.dst }
	// More specific groups first: their buckets are short and they usually
	// decide the lookup.
	next := append(slices.Clone(ts), t)
	slices.SortStableFunc(next, func(a, b *spdTuple) int { return cmp.Compare(b.sbits+b.dbits, a.sbits+a.dbits) })
	c.tuples.Store(&next)
	return t
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
// its destination prefix into the TUN. It costs the same with 10 policies
// as with 10,000.
func (d *Dataplane) AddPolicy(ctx context.Context, p ipsec.Policy) error {
	if err := validatePolicy(&p); err != nil {
		return err
	}
	p.Templates = slices.Clone(p.Templates)
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.spd.byKey[p.Key()]; ok {
		return fmt.Errorf("userspace: policy %s/%d: %w", p.Dir, p.ID, ipsec.ErrExists)
	}
	if routed(&p) {
		if err := d.routeRef(p.Selector.Dst.Masked(), +1); err != nil {
			return err
		}
	}
	d.spd.byKey[p.Key()] = &p
	d.spd.class(&p).add(&p)
	return nil
}

// DeletePolicy removes an SPD entry (and its route when no other policy
// needs it).
func (d *Dataplane) DeletePolicy(ctx context.Context, key ipsec.PolicyKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.spd.byKey[key]
	if p == nil {
		return fmt.Errorf("userspace: policy %s/%d: %w", key.Dir, key.ID, ipsec.ErrNotFound)
	}
	delete(d.spd.byKey, key)
	d.spd.class(p).remove(p)
	if routed(p) {
		return d.routeRef(p.Selector.Dst.Masked(), -1)
	}
	return nil
}

func routed(p *ipsec.Policy) bool { return p.Dir == ipsec.DirOut && p.Action == ipsec.ActionProtect }

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

package validators

import (
	"fmt"
	"maps"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// refKind is a kind of name that crypto-map entries and interfaces refer to.
type refKind int

const (
	refPeer refKind = iota // a peer address: needs a pre-shared key
	refTS                  // a transform set name
	refACL                 // an access list name
	refCMap                // a crypto map name (from an interface)
	numRefKinds
)

// refIndex counts the references to each name in the running config, so
// that removing a key, transform set, access list (or its last entry) or
// crypto map is checked in O(1) instead of by re-checking every crypto-map
// entry. It belongs to the running snapshot and is changed only under the
// store's commit lock; a commit records its changes and undoes them if it
// fails.
type refIndex struct {
	n [numRefKinds]map[string]int32
}

type refDelta struct {
	kind  refKind
	name  string
	delta int32
}

func newRefIndex() *refIndex {
	r := &refIndex{}
	for i := range r.n {
		r.n[i] = map[string]int32{}
	}
	return r
}

// buildRefs counts every reference in root.
func buildRefs(root *gen.Device) *refIndex {
	r := newRefIndex()
	cr := root.GetCrypto()
	if cms := cr.GetCryptoMaps(); cms != nil {
		for _, cm := range cms.CryptoMap {
			for _, e := range cmapEntries(cm) {
				cmapRefs(e, func(k refKind, name string) { r.n[k][name]++ })
			}
		}
	}
	if ifs := cr.GetInterfaces(); ifs != nil {
		for _, i := range ifs.Interface {
			ifaceRefs(i, func(k refKind, name string) { r.n[k][name]++ })
		}
	}
	return r
}

func cmapRefs(e *gen.CryptoMapEntry, f func(refKind, string)) {
	c := e.GetConfig()
	if c == nil {
		return
	}
	for _, p := range c.Peer {
		f(refPeer, p)
	}
	for _, t := range c.TransformSet {
		f(refTS, t)
	}
	if c.MatchAddress != nil {
		f(refACL, *c.MatchAddress)
	}
}

func ifaceRefs(i *gen.Interface, f func(refKind, string)) {
	if c := i.GetConfig(); c != nil && c.CryptoMap != nil {
		f(refCMap, *c.CryptoMap)
	}
}

// apply adds delta to name's count and logs it for undo.
func (r *refIndex) apply(k refKind, name string, delta int32, log *[]refDelta) {
	n := r.n[k][name] + delta
	if n == 0 {
		delete(r.n[k], name)
	} else {
		r.n[k][name] = n
	}
	*log = append(*log, refDelta{k, name, delta})
}

// undo reverts logged changes.
func (r *refIndex) undo(log []refDelta) {
	for i := len(log) - 1; i >= 0; i-- {
		d := log[i]
		n := r.n[d.kind][d.name] - d.delta
		if n == 0 {
			delete(r.n[d.kind], d.name)
		} else {
			r.n[d.kind][d.name] = n
		}
	}
}

// update applies the reference changes of the changed entries.
func (r *refIndex) update(changes []ytree.EntryChange) []refDelta {
	var log []refDelta
	each := func(v any, delta int32) {
		f := func(k refKind, name string) { r.apply(k, name, delta, &log) }
		switch e := v.(type) {
		case *gen.CryptoMapEntry:
			cmapRefs(e, f)
		case *gen.Interface:
			ifaceRefs(e, f)
		}
	}
	for _, ec := range changes {
		if ec.Old != nil {
			each(ec.Old, -1)
		}
		if ec.New != nil {
			each(ec.New, +1)
		}
	}
	return log
}

// referenced reports whether name is referenced.
func (r *refIndex) referenced(k refKind, name string) bool { return r.n[k][name] > 0 }

// Drift compares the reference counts with a recount of root (the running
// config they should describe) and describes the difference, or returns "".
// Tests call it after commits to prove the counts stay exact.
func (c *Crypto) Drift(root *gen.Device) string {
	want := buildRefs(root)
	for k := range want.n {
		if !maps.Equal(want.n[k], c.refs.n[k]) {
			return fmt.Sprintf("reference counts drifted:\n got %v\nwant %v", c.refs.n, want.n)
		}
	}
	return ""
}

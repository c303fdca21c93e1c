// Package validators holds the semantic rules of the crypto model that YANG
// does not say (or that the store should not have to know): a transform
// set needs AH or ESP, ports only with TCP or UDP, every crypto-map peer
// needs a pre-shared key, the transform sets, access list and crypto map
// that entries and interfaces name must exist (and an access list used for
// matching must have entries). Crypto is a store.Validator: the agent
// registers it (store.WithValidator) wherever it opens a store, and
// `spiagent validate` runs it offline, so both check the same rules.
//
// Why a package of its own and not agent/intent: intent translates a valid
// configuration into engine terms; these rules decide whether a
// configuration is valid, run under the store's commit lock and offline,
// and need none of intent's engine types. The store knows YANG (types,
// ranges, patterns, keys, mandatory leaves), not crypto.
//
// Cost, as the store's own checks: a commit's changed list entries are
// checked one by one; removing something that can be referenced (a key or
// its key leaf, a transform set, an access list or its last entry, a crypto
// map) is checked against reference counts kept for the running config, in
// O(1); only a dangling reference makes it walk every reference, to name
// the paths that dangle.
//
// It imports gen and ytree only: never the store (it satisfies
// store.Validator by its method set), the engines, gNMI or NETCONF.
package validators

import (
	"fmt"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// Crypto is the store.Validator of the crypto rules (it implements the
// interface without importing the store, so that the store's own tests can
// run with it). Each store needs its
// own (it keeps the reference counts of that store's running config).
type Crypto struct {
	refs *refIndex
}

// NewCrypto returns a Crypto validator with no configuration indexed yet.
func NewCrypto() *Crypto { return &Crypto{refs: newRefIndex()} }

// report collects problems at the paths of one checked node.
type report struct {
	path     func() string // the node's path, rendered only for a problem
	problems *[]ytree.Problem
}

func (r report) add(suffix, format string, args ...any) {
	*r.problems = append(*r.problems, ytree.Problem{Path: r.path() + suffix, Reason: fmt.Sprintf(format, args...)})
}

// pathOf renders elements (a changed entry's path) for a problem.
func pathOf(elems []*gpb.PathElem) func() string {
	return func() string { return ytree.PathString(elems) }
}

// entryPath renders /crypto/<list>/<entry>[key=name] (and, with sub, the
// /entries/entry[sequence=seq] below it) for a problem: the elements are
// built only then.
func entryPath(list, entry, key, name string, seq uint32, sub bool) func() string {
	return func() string {
		p := []*gpb.PathElem{{Name: "crypto"}, {Name: list}, {Name: entry, Key: map[string]string{key: name}}}
		if sub {
			p = append(p, &gpb.PathElem{Name: "entries"}, &gpb.PathElem{Name: "entry", Key: map[string]string{"sequence": fmt.Sprint(seq)}})
		}
		return ytree.PathString(p)
	}
}

// Validate checks every rule on a whole configuration.
func (c *Crypto) Validate(root *gen.Device) []ytree.Problem {
	var ps []ytree.Problem
	cr := root.GetCrypto()
	if ts := cr.GetTransformSets(); ts != nil {
		for name, t := range ts.TransformSet {
			transformSet(t, report{entryPath("transform-sets", "transform-set", "name", name, 0, false), &ps})
		}
	}
	if acls := cr.GetAccessLists(); acls != nil {
		for name, acl := range acls.AccessList {
			for seq, e := range aclEntries(acl) {
				aclEntry(e, report{entryPath("access-lists", "access-list", "name", name, seq, true), &ps})
			}
		}
	}
	references(root, &ps)
	return ps
}

// references checks every reference made by crypto-map entries and
// interfaces.
func references(root *gen.Device, ps *[]ytree.Problem) {
	cr := root.GetCrypto()
	if cms := cr.GetCryptoMaps(); cms != nil {
		for name, cm := range cms.CryptoMap {
			for seq, e := range cmapEntries(cm) {
				cmapEntry(root, e, report{entryPath("crypto-maps", "crypto-map", "name", name, seq, true), ps})
			}
		}
	}
	if ifs := cr.GetInterfaces(); ifs != nil {
		for name, i := range ifs.Interface {
			iface(root, i, report{entryPath("interfaces", "interface", "name", name, 0, false), ps})
		}
	}
}

// Reset indexes the references of the running configuration.
func (c *Crypto) Reset(root *gen.Device) { c.refs = buildRefs(root) }

// Check validates the entries a commit changed, and checks each removal of
// something that can be referenced against the reference counts (updated
// here; undo reverts that).
func (c *Crypto) Check(root *gen.Device, changes []ytree.EntryChange) ([]ytree.Problem, func()) {
	var ps []ytree.Problem
	log := c.refs.update(changes)
	dangling := false
	cr := root.GetCrypto()
	for _, ec := range changes {
		removed := ec.New == nil
		key := func(name string) string { return ec.Path[len(ec.Path)-1].GetKey()[name] }
		switch ent := either(ec).(type) {
		case *gen.IsakmpKey:
			if removed || ec.New.(*gen.IsakmpKey).GetConfig().Key == nil {
				dangling = dangling || c.refs.referenced(refPeer, key("address"))
			}
		case *gen.TransformSet:
			dangling = dangling || (removed && c.refs.referenced(refTS, key("name")))
			if !removed {
				transformSet(ent, report{pathOf(ec.Path), &ps})
			}
		case *gen.CryptoMap:
			dangling = dangling || (removed && c.refs.referenced(refCMap, key("name")))
		case *gen.AccessList:
			dangling = dangling || (removed && c.refs.referenced(refACL, key("name")))
		case *gen.AccessListEntry:
			if removed {
				name := ec.Path[len(ec.Path)-3].GetKey()["name"]
				if len(aclEntries(cr.GetAccessLists().GetAccessList(name))) == 0 && c.refs.referenced(refACL, name) {
					dangling = true
				}
				continue
			}
			aclEntry(ent, report{pathOf(ec.Path), &ps})
		case *gen.CryptoMapEntry:
			if !removed {
				cmapEntry(root, ent, report{pathOf(ec.Path), &ps})
			}
		case *gen.Interface:
			if !removed {
				iface(root, ent, report{pathOf(ec.Path), &ps})
			}
		}
	}
	if dangling {
		references(root, &ps)
	}
	return ps, func() { c.refs.undo(log) }
}

// either returns the new entry of a change, or the old one if it was
// removed.
func either(ec ytree.EntryChange) any {
	if ec.New != nil {
		return ec.New
	}
	return ec.Old
}

func transformSet(ts *gen.TransformSet, r report) {
	c := ts.GetConfig()
	if c == nil {
		return
	}
	ps := "/config"
	enc := c.EspEncryption
	if c.Ah == 0 && enc == 0 && c.EspIntegrity == 0 {
		r.add(ps, "a transform set needs ah or esp (esp-encryption or esp-integrity)")
	}
	if c.EspKeyBits != nil && (*c.EspKeyBits == 128 || *c.EspKeyBits == 192 || *c.EspKeyBits == 256) {
		bits := *c.EspKeyBits // other values are schema problems
		switch enc {
		case gen.SpiagentTypes_EspEncryption_esp_aes:
		case gen.SpiagentTypes_EspEncryption_esp_gcm:
			if bits != 128 && bits != 256 {
				r.add(ps+"/esp-key-bits", "esp-gcm takes 128 or 256 bits")
			}
		default:
			r.add(ps+"/esp-key-bits", "esp-key-bits is only for esp-aes and esp-gcm")
		}
	}
	if enc == gen.SpiagentTypes_EspEncryption_esp_gcm && c.EspIntegrity != 0 {
		r.add(ps+"/esp-integrity", "esp-gcm has its own integrity: no esp-integrity with it")
	}
}

func aclEntry(e *gen.AccessListEntry, r report) {
	c := e.GetConfig()
	if c == nil {
		return
	}
	ps := "/config"
	portProto := false
	switch p := c.Protocol.(type) {
	case gen.E_SpiagentTypes_AclProtocol_Enum:
		portProto = p == gen.SpiagentTypes_AclProtocol_Enum_tcp || p == gen.SpiagentTypes_AclProtocol_Enum_udp
	case gen.UnionUint8:
		portProto = p == 6 || p == 17
	}
	ports := func(side string, lo, hi *uint16) {
		if lo == nil && hi == nil {
			return
		}
		if !portProto {
			r.add(ps+"/"+side+"-port-min", "ports are only for protocol tcp or udp")
		}
		if lo != nil && hi != nil && *lo > *hi {
			r.add(ps+"/"+side+"-port-min", "%s-port-min %d is greater than %s-port-max %d", side, *lo, side, *hi)
		}
	}
	ports("source", c.SourcePortMin, c.SourcePortMax)
	ports("destination", c.DestinationPortMin, c.DestinationPortMax)
}

// cmapEntry checks a crypto map entry's references: transform sets, the
// access list (which must have an entry) and a pre-shared key for every
// peer.
func cmapEntry(root *gen.Device, e *gen.CryptoMapEntry, r report) {
	c := e.GetConfig()
	if c == nil {
		return
	}
	ps := "/config"
	cr := root.GetCrypto()
	if len(c.TransformSet) > 6 {
		r.add(ps+"/transform-set", "at most 6 transform sets (has %d)", len(c.TransformSet))
	}
	for _, name := range c.TransformSet {
		if cr.GetTransformSets().GetTransformSet(name) == nil {
			r.add(ps+"/transform-set", "transform set %q does not exist", name)
		}
	}
	if c.MatchAddress != nil {
		acl := cr.GetAccessLists().GetAccessList(*c.MatchAddress)
		switch {
		case acl == nil:
			r.add(ps+"/match-address", "access list %q does not exist", *c.MatchAddress)
		case len(aclEntries(acl)) == 0:
			r.add(ps+"/match-address", "access list %q has no entries", *c.MatchAddress)
		}
	}
	for _, peer := range c.Peer {
		if k := cr.GetIsakmp().GetKeys().GetKey(peer); k == nil || k.GetConfig().Key == nil {
			r.add(ps+"/peer", "no pre-shared key for peer %s (crypto isakmp key ... address %s)", peer, peer)
		}
	}
}

func iface(root *gen.Device, i *gen.Interface, r report) {
	c := i.GetConfig()
	if c == nil || c.CryptoMap == nil {
		return
	}
	if root.GetCrypto().GetCryptoMaps().GetCryptoMap(*c.CryptoMap) == nil {
		r.add("/config/crypto-map", "crypto map %q does not exist", *c.CryptoMap)
	}
}

func aclEntries(acl *gen.AccessList) map[uint32]*gen.AccessListEntry {
	if es := acl.GetEntries(); es != nil {
		return es.Entry
	}
	return nil
}

func cmapEntries(cm *gen.CryptoMap) map[uint32]*gen.CryptoMapEntry {
	if es := cm.GetEntries(); es != nil {
		return es.Entry
	}
	return nil
}

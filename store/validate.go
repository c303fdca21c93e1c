package store

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"

	"github.com/spiagent/spiagent/gen"
)

// entityKind names the list entries that semantic checks know about.
type entityKind int

const (
	entNone entityKind = iota
	entPolicy
	entKey
	entTransformSet
	entACL
	entACLEntry
	entCryptoMap
	entCMapEntry
	entInterface
)

func entityOf(e *yang.Entry) entityKind {
	if !e.IsList() {
		return entNone
	}
	switch e.Name {
	case "policy":
		return entPolicy
	case "key":
		return entKey
	case "transform-set":
		return entTransformSet
	case "access-list":
		return entACL
	case "crypto-map":
		return entCryptoMap
	case "interface":
		return entInterface
	case "entry":
		if e.Parent != nil && e.Parent.Parent != nil {
			switch e.Parent.Parent.Name {
			case "access-list":
				return entACLEntry
			case "crypto-map":
				return entCMapEntry
			}
		}
	}
	return entNone
}

type (
	tsT      = gen.SpiagentCrypto_Crypto_TransformSets_TransformSet
	aclT     = gen.SpiagentCrypto_Crypto_AccessLists_AccessList
	aclEntT  = gen.SpiagentCrypto_Crypto_AccessLists_AccessList_Entries_Entry
	keyT     = gen.SpiagentCrypto_Crypto_Isakmp_Keys_Key
	cmapEntT = gen.SpiagentCrypto_Crypto_CryptoMaps_CryptoMap_Entries_Entry
	ifaceT   = gen.SpiagentCrypto_Crypto_Interfaces_Interface
)

// Validate checks the whole tree: every leaf against its schema type (ranges,
// patterns, lengths, enums), mandatory leaves, list keys equal to their config
// key leaves, no state data, and the semantic rules (see the package doc).
// Problems are sorted by path; secret values never appear in them.
func Validate(root *gen.Device) []Problem {
	if root == nil {
		return nil
	}
	v := &validator{root: root}
	v.tree(rootInfo, reflect.ValueOf(root))
	return sortProblems(v.problems)
}

// validator collects problems. The path of the node being checked is kept as
// a stack of frames (after a fixed prefix) and rendered only for a problem.
type validator struct {
	root     *gen.Device
	problems []Problem
	prefix   string
	stack    []frame
}

type frame struct {
	f   *fieldInfo // set for a list entry (with key)
	key reflect.Value
	elm string // name otherwise
}

func (v *validator) push(fr frame) { v.stack = append(v.stack, fr) }
func (v *validator) pop()          { v.stack = v.stack[:len(v.stack)-1] }

// here renders the current path followed by suffix ("/config/x" or "").
func (v *validator) here(suffix string) string {
	var elems []*gpb.PathElem
	for _, fr := range v.stack {
		if fr.f != nil {
			elems = append(elems, keyElem(fr.f, fr.key))
		} else {
			elems = append(elems, &gpb.PathElem{Name: fr.elm})
		}
	}
	p := v.prefix
	if len(elems) > 0 {
		p += elemsString(elems)
	}
	return p + suffix
}

// add records a problem at the current path plus suffix.
func (v *validator) add(suffix string, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: v.here(suffix), Reason: fmt.Sprintf(format, args...)})
}

func sortProblems(ps []Problem) []Problem {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Path < ps[j].Path })
	return ps
}

func (v *validator) tree(ti *typeInfo, n reflect.Value) {
	if n.IsNil() {
		return
	}
	for _, f := range ti.fields {
		fv := n.Elem().Field(f.idx)
		if !leafSet(fv) {
			continue
		}
		if f.readOnly {
			v.add("/"+f.name, "state (config false) data is not configuration")
			continue
		}
		switch f.kind {
		case kLeaf, kLeafList:
			if errs := f.check.check(f, fv); len(errs) > 0 {
				v.problems = append(v.problems, leafProblems(f, errs, v.here("/"+f.name))...)
			}
		case kContainer:
			v.push(frame{elm: f.name})
			v.tree(f.elem, fv)
			v.pop()
		case kList:
			it := fv.MapRange()
			for it.Next() {
				v.push(frame{f: f, key: it.Key()})
				v.entity(f.elem, it.Key(), it.Value())
				v.tree(f.elem, it.Value())
				v.pop()
			}
		}
	}
}

// validateLeaf checks one set leaf against its schema type.
func validateLeaf(f *fieldInfo, val reflect.Value, p *gpb.Path) []Problem {
	errs := f.check.check(f, val)
	if len(errs) == 0 {
		return nil
	}
	return leafProblems(f, errs, PathString(p))
}

func leafProblems(f *fieldInfo, errs []error, path string) []Problem {
	if f.secret {
		return []Problem{{Path: path, Reason: fmt.Sprintf("value %s is not valid%s", redacted, restriction(f.entry))}}
	}
	var out []Problem
	for _, err := range errs {
		msg := err.Error()
		if i := strings.LastIndex(msg, "\": "); i >= 0 && strings.Contains(msg[:i], "schema \"") {
			msg = msg[i+3:]
		}
		out = append(out, Problem{Path: path, Reason: msg + restriction(f.entry)})
	}
	return out
}

// restriction describes a leaf type's range or length, e.g. " (allowed 60..86400)".
func restriction(e *yang.Entry) string {
	t := e.Type
	if t == nil {
		return ""
	}
	switch {
	case len(t.Range) > 0:
		return " (allowed " + t.Range.String() + ")"
	case len(t.Length) > 0:
		return " (length " + t.Length.String() + ")"
	}
	return ""
}

// entity checks one list entry: keys, mandatory leaves, and the semantic rules
// of its kind that look from it to others (references it makes).
func (v *validator) entity(ti *typeInfo, key, n reflect.Value) {
	v.keys(ti, key, n)
	switch ti.kind {
	case entTransformSet:
		v.transformSet(n.Interface().(*tsT))
	case entACLEntry:
		v.aclEntry(n.Interface().(*aclEntT))
	case entCMapEntry:
		v.cmapEntry(n.Interface().(*cmapEntT))
	case entInterface:
		v.iface(n.Interface().(*ifaceT))
	}
}

// keyEq compares a key leaf's value with a map key.
func keyEq(leaf, key reflect.Value) bool {
	switch key.Kind() {
	case reflect.String:
		return leaf.Kind() == reflect.String && leaf.String() == key.String()
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return leaf.CanUint() && leaf.Uint() == key.Uint()
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return leaf.CanInt() && leaf.Int() == key.Int()
	}
	return keyString(leaf) == keyString(key)
}

// keys checks that the entry's key leaf and config key leaf equal the map key,
// and that the config's mandatory leaves are set.
func (v *validator) keys(ti *typeInfo, key, n reflect.Value) {
	if ti.keyName == "" {
		return
	}
	kv := n.Elem().Field(ti.keyIdx)
	if kv.IsNil() || !keyEq(kv.Elem(), key) {
		v.add("/"+ti.keyName, "list key leaf must equal the entry's key %s", keyString(key))
	}
	cf := ti.configField()
	if cf == nil {
		return
	}
	cv := n.Elem().Field(cf.idx)
	if cv.IsNil() {
		v.add("/config", "missing config container (config/%s must equal the key)", ti.keyName)
		return
	}
	if ck := cf.elem.byName[ti.keyName]; ck != nil {
		kv := cv.Elem().Field(ck.idx)
		if kv.IsNil() || !keyEq(kv.Elem(), key) {
			v.add("/config/"+ti.keyName, "must equal the list key %s", keyString(key))
		}
	}
	for _, f := range cf.elem.fields {
		if f.entry.Mandatory == yang.TSTrue && !leafSet(cv.Elem().Field(f.idx)) {
			v.add("/config/"+f.name, "mandatory leaf is missing")
		}
	}
}

func (v *validator) transformSet(ts *tsT) {
	c := ts.GetConfig()
	if c == nil {
		return
	}
	ps := "/config"
	enc := c.EspEncryption
	if c.Ah == 0 && enc == 0 && c.EspIntegrity == 0 {
		v.add(ps, "a transform set needs ah or esp (esp-encryption or esp-integrity)")
	}
	if c.EspKeyBits != nil && (*c.EspKeyBits == 128 || *c.EspKeyBits == 192 || *c.EspKeyBits == 256) {
		bits := *c.EspKeyBits // other values are schema problems
		switch enc {
		case gen.SpiagentTypes_EspEncryption_esp_aes:
		case gen.SpiagentTypes_EspEncryption_esp_gcm:
			if bits != 128 && bits != 256 {
				v.add(ps+"/esp-key-bits", "esp-gcm takes 128 or 256 bits")
			}
		default:
			v.add(ps+"/esp-key-bits", "esp-key-bits is only for esp-aes and esp-gcm")
		}
	}
	if enc == gen.SpiagentTypes_EspEncryption_esp_gcm && c.EspIntegrity != 0 {
		v.add(ps+"/esp-integrity", "esp-gcm has its own integrity: no esp-integrity with it")
	}
}

func (v *validator) aclEntry(e *aclEntT) {
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
			v.add(ps+"/"+side+"-port-min", "ports are only for protocol tcp or udp")
		}
		if lo != nil && hi != nil && *lo > *hi {
			v.add(ps+"/"+side+"-port-min", "%s-port-min %d is greater than %s-port-max %d", side, *lo, side, *hi)
		}
	}
	ports("source", c.SourcePortMin, c.SourcePortMax)
	ports("destination", c.DestinationPortMin, c.DestinationPortMax)
}

// cmapEntry checks a crypto map entry's references: transform sets, the access
// list (which must have an entry) and a pre-shared key for every peer.
func (v *validator) cmapEntry(e *cmapEntT) {
	c := e.GetConfig()
	if c == nil {
		return
	}
	ps := "/config"
	cr := v.root.GetCrypto()
	if len(c.TransformSet) > 6 {
		v.add(ps+"/transform-set", "at most 6 transform sets (has %d)", len(c.TransformSet))
	}
	for _, name := range c.TransformSet {
		if cr.GetTransformSets().GetTransformSet(name) == nil {
			v.add(ps+"/transform-set", "transform set %q does not exist", name)
		}
	}
	if c.MatchAddress != nil {
		acl := cr.GetAccessLists().GetAccessList(*c.MatchAddress)
		switch {
		case acl == nil:
			v.add(ps+"/match-address", "access list %q does not exist", *c.MatchAddress)
		case acl.GetEntries() == nil || len(acl.GetEntries().Entry) == 0:
			v.add(ps+"/match-address", "access list %q has no entries", *c.MatchAddress)
		}
	}
	for _, peer := range c.Peer {
		if k := cr.GetIsakmp().GetKeys().GetKey(peer); k == nil || k.GetConfig().Key == nil {
			v.add(ps+"/peer", "no pre-shared key for peer %s (crypto isakmp key ... address %s)", peer, peer)
		}
	}
}

func (v *validator) iface(i *ifaceT) {
	c := i.GetConfig()
	if c == nil || c.CryptoMap == nil {
		return
	}
	if v.root.GetCrypto().GetCryptoMaps().GetCryptoMap(*c.CryptoMap) == nil {
		v.add("/config/crypto-map", "crypto map %q does not exist", *c.CryptoMap)
	}
}

// references re-checks every reference made by crypto map entries and
// interfaces: needed when something they may point at was removed.
func (v *validator) references() {
	cr := v.root.GetCrypto()
	v.prefix, v.stack = "", v.stack[:0]
	cmsF := rootInfo.byName["crypto"].elem.byName["crypto-maps"]
	cmF := cmsF.elem.byName["crypto-map"]
	entsF := cmF.elem.byName["entries"]
	entF := entsF.elem.byName["entry"]
	if cms := cr.GetCryptoMaps(); cms != nil {
		v.stack = append(v.stack[:0], frame{elm: "crypto"}, frame{elm: "crypto-maps"})
		for name, cm := range cms.CryptoMap {
			if cm.GetEntries() == nil {
				continue
			}
			v.stack = append(v.stack[:2], frame{f: cmF, key: reflect.ValueOf(name)}, frame{elm: "entries"})
			for seq, e := range cm.GetEntries().Entry {
				v.push(frame{f: entF, key: reflect.ValueOf(seq)})
				v.cmapEntry(e)
				v.pop()
			}
		}
	}
	if ifs := cr.GetInterfaces(); ifs != nil {
		ifF := rootInfo.byName["crypto"].elem.byName["interfaces"].elem.byName["interface"]
		v.stack = append(v.stack[:0], frame{elm: "crypto"}, frame{elm: "interfaces"})
		for name, i := range ifs.Interface {
			v.push(frame{f: ifF, key: reflect.ValueOf(name)})
			v.iface(i)
			v.pop()
		}
	}
}

// validateChanges validates new incrementally: the schema of the leaves the
// diff added or modified (done by the differ), the changed list entries
// (including the references they make), and, for each removed thing that can
// be referenced (a key or its key leaf, a transform set, an access list or its
// last entry, a crypto map), whether anything still refers to it: an O(1)
// look-up in refs, which is updated here (the returned log undoes that). Only
// when that finds a dangling reference are all references re-checked, to name
// the paths that dangle.
func validateChanges(root *gen.Device, d *differ, refs *refIndex) ([]Problem, []refDelta) {
	v := &validator{root: root, problems: d.problems}
	log := refs.update(d.ents)
	dangling := false
	cr := root.GetCrypto()
	for _, ec := range d.ents {
		removed := isNil(ec.new)
		switch ec.ti.kind {
		case entKey:
			addr := ec.key.String()
			if (removed || ec.new.Interface().(*keyT).GetConfig().Key == nil) && refs.referenced(refPeer, addr) {
				dangling = true
			}
		case entTransformSet:
			dangling = dangling || (removed && refs.referenced(refTS, ec.key.String()))
		case entCryptoMap:
			dangling = dangling || (removed && refs.referenced(refCMap, ec.key.String()))
		case entACL:
			dangling = dangling || (removed && refs.referenced(refACL, ec.key.String()))
		case entACLEntry:
			if removed {
				name := ec.path[len(ec.path)-3].GetKey()["name"]
				acl := cr.GetAccessLists().GetAccessList(name)
				if (acl == nil || acl.GetEntries() == nil || len(acl.GetEntries().Entry) == 0) && refs.referenced(refACL, name) {
					dangling = true
				}
			}
		}
		if removed {
			continue
		}
		v.prefix, v.stack = elemsString(ec.path), v.stack[:0]
		v.entity(ec.ti, ec.key, ec.new)
	}
	if dangling {
		v.references()
	}
	return dedupProblems(sortProblems(v.problems)), log
}

func dedupProblems(ps []Problem) []Problem {
	out := ps[:0]
	for i, p := range ps {
		if i > 0 && p == ps[i-1] {
			continue
		}
		out = append(out, p)
	}
	return out
}

package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strconv"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ytypes"

	"github.com/spiagent/spiagent/gen"
)

// txState is the working state of one transaction: the new root, which nodes
// it owns (allocated by this transaction, so they may be mutated in place),
// and which keys of each owned list map it touched (so the diff visits only
// those).
type txState struct {
	root    reflect.Value // *gen.Device, owned
	owned   map[uintptr]struct{}
	dirty   map[uintptr][]reflect.Value // owned map -> keys touched
	cloneOf map[uintptr]uintptr         // owned map -> the map it was cloned from
}

func newTx(old *gen.Device) *txState {
	t := &txState{owned: map[uintptr]struct{}{}, dirty: map[uintptr][]reflect.Value{}, cloneOf: map[uintptr]uintptr{}}
	if old == nil {
		old = &gen.Device{}
	}
	t.root = t.cloneStruct(reflect.ValueOf(old))
	return t
}

func (t *txState) isOwned(v reflect.Value) bool {
	_, ok := t.owned[v.Pointer()]
	return ok
}

// cloneStruct returns an owned shallow copy of the struct pointer v.
func (t *txState) cloneStruct(v reflect.Value) reflect.Value {
	n := reflect.New(v.Type().Elem())
	n.Elem().Set(v.Elem())
	t.owned[n.Pointer()] = struct{}{}
	return n
}

func (t *txState) newStruct(typ reflect.Type) reflect.Value {
	n := reflect.New(typ)
	t.owned[n.Pointer()] = struct{}{}
	return n
}

// ownStruct makes field fv (a struct pointer) owned, cloning or creating it.
func (t *txState) ownStruct(fv reflect.Value, create bool) (reflect.Value, bool) {
	if fv.IsNil() {
		if !create {
			return fv, false
		}
		fv.Set(t.newStruct(fv.Type().Elem()))
		return fv, true
	}
	if !t.isOwned(fv) {
		fv.Set(t.cloneStruct(fv))
	}
	return fv, true
}

// ownMap makes field fv (a list map) owned, cloning or creating it.
func (t *txState) ownMap(fv reflect.Value) reflect.Value {
	if fv.IsNil() {
		fv.Set(reflect.MakeMap(fv.Type()))
		t.owned[fv.Pointer()] = struct{}{}
		return fv
	}
	if !t.isOwned(fv) {
		src := fv.Pointer()
		fv.Set(cloneMap(fv))
		t.owned[fv.Pointer()] = struct{}{}
		t.cloneOf[fv.Pointer()] = src
	}
	return fv
}

func (t *txState) touch(m, k reflect.Value) {
	p := m.Pointer()
	t.dirty[p] = append(t.dirty[p], k)
}

// cloneMap copies a list map; the generated list types go through maps.Clone.
func cloneMap(v reflect.Value) reflect.Value {
	switch m := v.Interface().(type) {
	case map[uint16]*gen.SpiagentCrypto_Crypto_Isakmp_Policies_Policy:
		return reflect.ValueOf(maps.Clone(m))
	case map[string]*gen.SpiagentCrypto_Crypto_Isakmp_Keys_Key:
		return reflect.ValueOf(maps.Clone(m))
	case map[string]*gen.SpiagentCrypto_Crypto_TransformSets_TransformSet:
		return reflect.ValueOf(maps.Clone(m))
	case map[string]*gen.SpiagentCrypto_Crypto_AccessLists_AccessList:
		return reflect.ValueOf(maps.Clone(m))
	case map[uint32]*gen.SpiagentCrypto_Crypto_AccessLists_AccessList_Entries_Entry:
		return reflect.ValueOf(maps.Clone(m))
	case map[string]*gen.SpiagentCrypto_Crypto_CryptoMaps_CryptoMap:
		return reflect.ValueOf(maps.Clone(m))
	case map[uint32]*gen.SpiagentCrypto_Crypto_CryptoMaps_CryptoMap_Entries_Entry:
		return reflect.ValueOf(maps.Clone(m))
	case map[string]*gen.SpiagentCrypto_Crypto_Interfaces_Interface:
		return reflect.ValueOf(maps.Clone(m))
	}
	n := reflect.MakeMapWithSize(v.Type(), v.Len())
	it := v.MapRange()
	for it.Next() {
		n.SetMapIndex(it.Key(), it.Value())
	}
	return n
}

var errStatePath = errors.New("state (config false) data cannot be written")

// apply applies op to the transaction's tree.
func (t *txState) apply(op Op, lenient bool) error {
	elems := op.Path.GetElem()
	if len(elems) == 0 {
		return t.applyRoot(op)
	}
	cur, ti := t.root, rootInfo
	for i, e := range elems {
		name := stripPrefix(e.GetName())
		f := ti.byName[name]
		if f == nil {
			return fmt.Errorf("unknown element %q in schema %s", name, ti.entry.Name)
		}
		if f.readOnly {
			return errStatePath
		}
		last := i == len(elems)-1
		fv := cur.Elem().Field(f.idx)
		switch f.kind {
		case kLeaf, kLeafList:
			if !last {
				return fmt.Errorf("%q is a leaf and has no children", name)
			}
			if len(e.GetKey()) > 0 {
				return fmt.Errorf("leaf %q takes no keys", name)
			}
			return t.applyLeaf(op, cur, ti, f, lenient)
		case kContainer:
			if len(e.GetKey()) > 0 {
				return fmt.Errorf("container %q takes no keys", name)
			}
			if last {
				return t.applyContainer(op, fv, f, lenient)
			}
			if _, ok := t.ownStruct(fv, op.Kind != OpDelete); !ok {
				return notFound(lenient)
			}
			cur, ti = fv, f.elem
		case kList:
			if len(e.GetKey()) == 0 {
				if !last {
					return fmt.Errorf("list %q needs its key %q", name, f.elem.entry.Key)
				}
				return t.applyList(op, cur, f, lenient)
			}
			k, err := listKey(f, e)
			if err != nil {
				return err
			}
			if last {
				return t.applyEntry(op, fv, f, k, lenient)
			}
			ev := reflect.Value{}
			if !fv.IsNil() {
				ev = fv.MapIndex(k)
			}
			if !ev.IsValid() && op.Kind == OpDelete {
				return notFound(lenient)
			}
			m := t.ownMap(fv)
			t.touch(m, k)
			if ev.IsValid() {
				if !t.isOwned(ev) {
					ev = t.cloneStruct(ev)
					m.SetMapIndex(k, ev)
				}
			} else {
				ev = t.newEntry(f, k)
				m.SetMapIndex(k, ev)
			}
			cur, ti = ev, f.elem
		}
	}
	return nil
}

// lenientSkip is returned for a missing delete target in lenient mode.
var lenientSkip = errors.New("skip")

func notFound(lenient bool) error {
	if lenient {
		return lenientSkip
	}
	return ErrNotFound
}

func listKey(f *fieldInfo, e *gpb.PathElem) (reflect.Value, error) {
	if f.elem.keyName == "" {
		return reflect.Value{}, fmt.Errorf("list %q has a composite key and cannot be written", f.name)
	}
	keys := e.GetKey()
	s, ok := keys[f.elem.keyName]
	if !ok || len(keys) != 1 {
		return reflect.Value{}, fmt.Errorf("list %q is keyed by %q only", f.name, f.elem.keyName)
	}
	return parseKey(f.mapKey, s)
}

// newEntry makes an owned list entry whose key leaf and config key leaf are set.
func (t *txState) newEntry(f *fieldInfo, k reflect.Value) reflect.Value {
	ev := t.newStruct(f.elem.typ)
	fillKeys(ev, f.elem, k)
	if cf := f.elem.configField(); cf != nil {
		cv := ev.Elem().Field(cf.idx)
		cv.Set(t.newStruct(cf.elem.typ))
		fillKeys(cv, cf.elem, k)
	}
	return ev
}

// fillKeys sets the leaf named like the list key in struct v, if unset.
func fillKeys(v reflect.Value, ti *typeInfo, k reflect.Value) {
	name := keyLeafName(ti)
	if name == "" {
		return
	}
	fv := v.Elem().Field(ti.byName[name].idx)
	if fv.IsNil() {
		p := reflect.New(fv.Type().Elem())
		p.Elem().Set(k.Convert(fv.Type().Elem()))
		fv.Set(p)
	}
}

// keyLeafName returns the name of the leaf of ti that carries its list key:
// the key leaf of a list entry, or of the config container of one.
func keyLeafName(ti *typeInfo) string {
	if ti.keyName != "" {
		return ti.keyName
	}
	if p := ti.entry.Parent; p != nil && p.IsList() && !strings.Contains(p.Key, " ") {
		if ti.byName[p.Key] != nil {
			return p.Key
		}
	}
	return ""
}

// applyLeaf sets or deletes leaf f of the owned struct cur.
func (t *txState) applyLeaf(op Op, cur reflect.Value, ti *typeInfo, f *fieldInfo, lenient bool) error {
	fv := cur.Elem().Field(f.idx)
	if op.Kind == OpDelete {
		if fv.IsZero() {
			return notFound(lenient)
		}
		fv.Set(reflect.Zero(fv.Type()))
		return nil
	}
	tv, err := normalizeVal(op.Val)
	if err != nil {
		return err
	}
	if f.kind == kLeafList {
		fv.Set(reflect.Zero(fv.Type())) // never append to a shared backing array
	}
	p := &gpb.Path{Elem: []*gpb.PathElem{{Name: f.name}}}
	if err := ytypes.SetNode(ti.entry, cur.Interface(), p, tv); err != nil {
		if f.secret {
			return fmt.Errorf("value %s is not valid for %s", redacted, f.entry.Type.Name)
		}
		return fmt.Errorf("invalid value for %s %q: %s", typeName(f), f.name, shortErr(err))
	}
	return nil
}

func typeName(f *fieldInfo) string {
	if f.entry.Type == nil {
		return "leaf"
	}
	return f.entry.Type.Kind.String()
}

// shortErr trims the gRPC status prefix and ygot's repetition of the value.
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "; "); i >= 0 {
		s = s[i+2:]
	}
	s = strings.TrimPrefix(s, "rpc error: code = Unknown desc = ")
	return s
}

// normalizeVal checks the value of a replace or update; json_val is treated as
// RFC 7951 (module prefixes optional).
func normalizeVal(v *gpb.TypedValue) (*gpb.TypedValue, error) {
	if v == nil || v.GetValue() == nil {
		return nil, errors.New("replace or update needs a value")
	}
	if j := v.GetJsonVal(); j != nil {
		return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: j}}, nil
	}
	return v, nil
}

// decodeJSON unmarshals a JSON value (object or array) for a non-leaf node.
func decodeJSON(v *gpb.TypedValue) (any, error) {
	tv, err := normalizeVal(v)
	if err != nil {
		return nil, err
	}
	b := tv.GetJsonIetfVal()
	if b == nil {
		return nil, errors.New("a container or list needs a JSON value (json_ietf_val or json_val)")
	}
	var tree any
	if err := json.Unmarshal(b, &tree); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	return tree, nil
}

// freshNode unmarshals a JSON object into a new struct of type ti.
func freshNode(ti *typeInfo, v *gpb.TypedValue) (reflect.Value, error) {
	tree, err := decodeJSON(v)
	if err != nil {
		return reflect.Value{}, err
	}
	if _, ok := tree.(map[string]any); !ok {
		return reflect.Value{}, errors.New("a container or list entry needs a JSON object")
	}
	n := reflect.New(ti.typ)
	if err := decodeStruct(ti, tree.(map[string]any), n); err != nil {
		return reflect.Value{}, scrubErr(err, tree)
	}
	if sp := findState(ti, n); sp != "" {
		return reflect.Value{}, fmt.Errorf("%w (%s in the value)", errStatePath, sp)
	}
	return n, nil
}

// findState returns the relative path of the first config-false node set in v.
func findState(ti *typeInfo, v reflect.Value) string {
	if v.IsNil() {
		return ""
	}
	for _, f := range ti.fields {
		fv := v.Elem().Field(f.idx)
		if fv.IsZero() {
			continue
		}
		if f.readOnly {
			return f.name
		}
		switch f.kind {
		case kContainer:
			if s := findState(f.elem, fv); s != "" {
				return f.name + "/" + s
			}
		case kList:
			it := fv.MapRange()
			for it.Next() {
				if s := findState(f.elem, it.Value()); s != "" {
					return f.name + "/" + s
				}
			}
		}
	}
	return ""
}

// applyContainer replaces, merges or deletes the container in field fv.
func (t *txState) applyContainer(op Op, fv reflect.Value, f *fieldInfo, lenient bool) error {
	switch op.Kind {
	case OpDelete:
		if fv.IsNil() {
			return notFound(lenient)
		}
		fv.Set(reflect.Zero(fv.Type()))
		return nil
	}
	n, err := freshNode(f.elem, op.Val)
	if err != nil {
		return err
	}
	if op.Kind == OpReplace {
		fv.Set(n)
		return nil
	}
	fv.Set(t.merge(f.elem, fv, n))
	return nil
}

// applyEntry replaces, merges or deletes list entry k of the list in field fv.
func (t *txState) applyEntry(op Op, fv reflect.Value, f *fieldInfo, k reflect.Value, lenient bool) error {
	var old reflect.Value
	if !fv.IsNil() {
		old = fv.MapIndex(k)
	}
	if op.Kind == OpDelete {
		if !old.IsValid() {
			return notFound(lenient)
		}
		m := t.ownMap(fv)
		t.touch(m, k)
		m.SetMapIndex(k, reflect.Value{})
		if m.Len() == 0 {
			fv.Set(reflect.Zero(fv.Type()))
		}
		return nil
	}
	n, err := freshNode(f.elem, op.Val)
	if err != nil {
		return err
	}
	if err := checkEntryKey(f, n, k); err != nil {
		return err
	}
	m := t.ownMap(fv)
	t.touch(m, k)
	if op.Kind == OpUpdate && old.IsValid() {
		n = t.merge(f.elem, old, n)
	}
	m.SetMapIndex(k, n)
	return nil
}

// checkEntryKey fills in the key leaves of a new entry from the path and
// refuses a value whose key disagrees with the path's.
func checkEntryKey(f *fieldInfo, n, k reflect.Value) error {
	want := keyString(k)
	check := func(v reflect.Value, ti *typeInfo, where string) error {
		name := keyLeafName(ti)
		if name == "" || v.IsNil() {
			return nil
		}
		kv := v.Elem().Field(ti.byName[name].idx)
		if !kv.IsNil() {
			if got := keyString(kv.Elem()); got != want {
				return fmt.Errorf("%s %q is %s but the path says %s", where, name, got, want)
			}
		}
		fillKeys(v, ti, k)
		return nil
	}
	if err := check(n, f.elem, "key"); err != nil {
		return err
	}
	if cf := f.elem.configField(); cf != nil {
		return check(n.Elem().Field(cf.idx), cf.elem, "config")
	}
	return nil
}

// applyList replaces, merges or deletes a whole list (a path without keys).
func (t *txState) applyList(op Op, cur reflect.Value, f *fieldInfo, lenient bool) error {
	fv := cur.Elem().Field(f.idx)
	if op.Kind == OpDelete {
		if fv.IsNil() {
			return notFound(lenient)
		}
		fv.Set(reflect.Zero(fv.Type()))
		return nil
	}
	tree, err := decodeJSON(op.Val)
	if err != nil {
		return err
	}
	if _, ok := tree.([]any); !ok {
		return errors.New("a list needs a JSON array")
	}
	parent := typeInfos[cur.Type().Elem()]
	n := reflect.New(parent.typ)
	nm := n.Elem().Field(f.idx)
	if err := decodeList(f, tree, nm); err != nil {
		return scrubErr(err, tree)
	}
	if sp := findState(parent, n); sp != "" {
		return fmt.Errorf("%w (%s in the value)", errStatePath, sp)
	}
	it := nm.MapRange()
	for it.Next() {
		if err := checkEntryKey(f, it.Value(), it.Key()); err != nil {
			return err
		}
	}
	if op.Kind == OpReplace || fv.IsNil() {
		fv.Set(nm)
		return nil
	}
	m := t.ownMap(fv)
	it = nm.MapRange()
	for it.Next() {
		t.touch(m, it.Key())
		old := m.MapIndex(it.Key())
		nv := it.Value()
		if old.IsValid() {
			nv = t.merge(f.elem, old, nv)
		}
		m.SetMapIndex(it.Key(), nv)
	}
	return nil
}

// merge returns dst updated with every node set in src (gNMI update
// semantics: leaves and leaf-lists replaced, containers and lists merged).
// dst is not modified unless owned.
func (t *txState) merge(ti *typeInfo, dst, src reflect.Value) reflect.Value {
	if dst.IsNil() {
		return src
	}
	if src.IsNil() {
		return dst
	}
	if !t.isOwned(dst) {
		dst = t.cloneStruct(dst)
	}
	for _, f := range ti.fields {
		sv := src.Elem().Field(f.idx)
		if sv.IsZero() {
			continue
		}
		dv := dst.Elem().Field(f.idx)
		switch f.kind {
		case kLeaf, kLeafList:
			dv.Set(sv)
		case kContainer:
			dv.Set(t.merge(f.elem, dv, sv))
		case kList:
			if dv.IsNil() {
				dv.Set(sv)
				continue
			}
			m := t.ownMap(dv)
			it := sv.MapRange()
			for it.Next() {
				t.touch(m, it.Key())
				nv := it.Value()
				if old := m.MapIndex(it.Key()); old.IsValid() {
					nv = t.merge(f.elem, old, nv)
				}
				m.SetMapIndex(it.Key(), nv)
			}
		}
	}
	return dst
}

// applyRoot handles an op on the root path.
func (t *txState) applyRoot(op Op) error {
	switch op.Kind {
	case OpDelete:
		t.root = t.newStruct(rootInfo.typ)
		return nil
	}
	n, err := freshNode(rootInfo, op.Val)
	if err != nil {
		return err
	}
	if op.Kind == OpReplace {
		t.root = n
		t.owned[n.Pointer()] = struct{}{}
		return nil
	}
	t.root = t.merge(rootInfo, t.root, n)
	return nil
}

// scrubErr removes secret strings found in a JSON value from an error text.
func scrubErr(err error, tree any) error {
	msg := shortErr(err)
	for _, s := range secretStrings(tree, nil) {
		msg = strings.ReplaceAll(msg, s, redacted)
		msg = strings.ReplaceAll(msg, strconv.Quote(s), redacted)
	}
	return errors.New(msg)
}

// secretStrings collects the string values of JSON members named like the
// secret leaf ("key"), wherever they are: over-scrubbing is harmless.
func secretStrings(tree any, out []string) []string {
	switch v := tree.(type) {
	case map[string]any:
		for k, c := range v {
			name := stripPrefix(k)
			if name == "key" {
				if s, ok := c.(string); ok {
					out = append(out, s)
					continue
				}
			}
			out = secretStrings(c, out)
		}
	case []any:
		for _, c := range v {
			out = secretStrings(c, out)
		}
	}
	return out
}

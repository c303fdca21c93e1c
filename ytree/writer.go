package ytree

import (
	"errors"
	"fmt"
	"maps"
	"reflect"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
)

// Writer builds a new version of a tree from an old one by copying only the
// structs and list maps on the paths it writes (structural sharing): the new
// tree shares every other subtree with the old one, which is never
// modified. It remembers which nodes it allocated (they are changed in place
// by later writes) and which keys of each copied list map it touched, so
// that Diff of the two versions visits only those.
//
// The store's transactions and the telemetry tree both write through it. A
// Writer is not safe for concurrent use.
type Writer struct {
	// Config makes the tree a configuration: paths through config false
	// nodes are refused (ErrState), and list entries created on the way get
	// a config container with their key leaves, as well as their own key
	// leaves.
	Config bool

	root    reflect.Value // *gen.Device, owned
	owned   map[uintptr]struct{}
	dirty   map[uintptr][]reflect.Value // owned map -> keys touched, in order
	cloneOf map[uintptr]uintptr         // owned map -> the map it was cloned from
}

// ErrNotFound is a path whose node (or an ancestor of it) does not exist.
var ErrNotFound = errors.New("not found")

// ErrState is a write of config false data into a configuration.
var ErrState = errors.New("state (config false) data cannot be written")

// NewWriter starts a new version of old (nil: an empty tree).
func NewWriter(old *gen.Device) *Writer {
	w := &Writer{owned: map[uintptr]struct{}{}, dirty: map[uintptr][]reflect.Value{}, cloneOf: map[uintptr]uintptr{}}
	if old == nil {
		old = &gen.Device{}
	}
	w.root = w.clone(reflect.ValueOf(old))
	return w
}

// Root returns the new tree. It must not be modified except through w.
func (w *Writer) Root() *gen.Device { return w.root.Interface().(*gen.Device) }

func (w *Writer) isOwned(v reflect.Value) bool {
	_, ok := w.owned[v.Pointer()]
	return ok
}

// clone returns an owned shallow copy of the struct pointer v.
func (w *Writer) clone(v reflect.Value) reflect.Value {
	n := reflect.New(v.Type().Elem())
	n.Elem().Set(v.Elem())
	w.owned[n.Pointer()] = struct{}{}
	return n
}

// Own returns an owned shallow copy of the struct v (a container or list
// entry the caller built): setting its key leaves or writing below it then
// changes the copy, never v.
func (w *Writer) Own(v ygot.GoStruct) reflect.Value { return w.clone(reflect.ValueOf(v)) }

// Adopt marks the struct pointer v, which the caller built and nothing
// else references, as owned by w: later writes through w change it in
// place instead of copying it.
func (w *Writer) Adopt(v reflect.Value) { w.owned[v.Pointer()] = struct{}{} }

// ownStruct makes field fv (a struct pointer) owned, cloning it, or creating
// it when nil and create is set; false if it is nil and not created.
func (w *Writer) ownStruct(fv reflect.Value, create bool) bool {
	switch {
	case fv.IsNil():
		if !create {
			return false
		}
		n := reflect.New(fv.Type().Elem())
		w.owned[n.Pointer()] = struct{}{}
		fv.Set(n)
	case !w.isOwned(fv):
		fv.Set(w.clone(fv))
	}
	return true
}

// ownMap makes field fv (a list map) owned, cloning or creating it.
func (w *Writer) ownMap(fv reflect.Value) reflect.Value {
	if fv.IsNil() {
		fv.Set(reflect.MakeMap(fv.Type()))
		w.owned[fv.Pointer()] = struct{}{}
		return fv
	}
	if !w.isOwned(fv) {
		src := fv.Pointer()
		fv.Set(cloneMap(fv))
		w.owned[fv.Pointer()] = struct{}{}
		w.cloneOf[fv.Pointer()] = src
	}
	return fv
}

func (w *Writer) touch(m, k reflect.Value) {
	p := m.Pointer()
	w.dirty[p] = append(w.dirty[p], k)
}

// cloneMap copies a list map; the big generated list types go through
// maps.Clone (about 50 ns per entry: Go maps cannot share structure).
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
	case map[gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_Key]*gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa:
		return reflect.ValueOf(maps.Clone(m))
	case map[uint32]*gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa:
		return reflect.ValueOf(maps.Clone(m))
	}
	n := reflect.MakeMapWithSize(v.Type(), v.Len())
	it := v.MapRange()
	for it.Next() {
		n.SetMapIndex(it.Key(), it.Value())
	}
	return n
}

// Target is the node a path names in a Writer's tree, as Descend finds it:
// the owned struct that holds it and the schema child it is.
type Target struct {
	Path   []*gpb.PathElem
	Parent reflect.Value // the owned struct holding the node; invalid for the root
	Field  *Field        // the schema child; nil for the root
	// Key is the map key of a list entry; invalid for a whole list, a
	// container or a leaf.
	Key reflect.Value
}

// IsRoot reports whether t is the whole tree.
func (t Target) IsRoot() bool { return t.Field == nil }

// IsEntry reports whether t is one list entry.
func (t Target) IsEntry() bool { return t.Key.IsValid() }

// Type returns the type of the node for a container, a list entry or the
// root (nil for a leaf or a whole list).
func (t Target) Type() *Type {
	switch {
	case t.Field == nil:
		return rootType
	case t.Field.Kind == KindContainer || t.IsEntry():
		return t.Field.Elem
	}
	return nil
}

// Descend finds the node path names (module prefixes accepted), making every
// struct on the way owned. With create, missing containers and list entries
// on the way are created (entries with their key leaves); without it, a
// missing one is ErrNotFound. The node itself may be absent: see Get.
func (w *Writer) Descend(path []*gpb.PathElem, create bool) (Target, error) {
	if len(path) == 0 {
		return Target{}, nil
	}
	cur, ti := w.root, rootType
	for i, e := range path {
		name := stripPrefix(e.GetName())
		f := ti.byName[name]
		if f == nil {
			return Target{}, fmt.Errorf("unknown element %q in schema %s", name, ti.Schema.Name)
		}
		if w.Config && f.State {
			return Target{}, ErrState
		}
		last := i == len(path)-1
		fv := cur.Elem().Field(f.Index)
		switch f.Kind {
		case KindLeaf, KindLeafList:
			if !last {
				return Target{}, fmt.Errorf("%q is a leaf and has no children", name)
			}
			if len(e.GetKey()) > 0 {
				return Target{}, fmt.Errorf("leaf %q takes no keys", name)
			}
			return Target{Path: path, Parent: cur, Field: f}, nil
		case KindContainer:
			if len(e.GetKey()) > 0 {
				return Target{}, fmt.Errorf("container %q takes no keys", name)
			}
			if last {
				return Target{Path: path, Parent: cur, Field: f}, nil
			}
			if !w.ownStruct(fv, create) {
				return Target{}, ErrNotFound
			}
			cur, ti = fv, f.Elem
		case KindList:
			if len(e.GetKey()) == 0 {
				if !last {
					return Target{}, fmt.Errorf("list %q needs its keys %v", name, f.keyNames)
				}
				return Target{Path: path, Parent: cur, Field: f}, nil
			}
			k, err := f.ParseKey(e.GetKey())
			if err != nil {
				return Target{}, err
			}
			if last {
				return Target{Path: path, Parent: cur, Field: f, Key: k}, nil
			}
			ev, err := w.ownEntry(fv, f, k, create)
			if err != nil {
				return Target{}, err
			}
			cur, ti = ev, f.Elem
		}
	}
	return Target{}, errors.New("unreachable")
}

// Child is one step of Descend from an owned struct: it returns the
// container f (key invalid) or the list entry f[key] of parent, made owned
// (cloned, or created when create is set: entries with their key leaves,
// as Descend creates them). A missing child that is not created is
// ErrNotFound. parent must be owned by w: the root, or a struct Descend,
// Child or Own returned. Walking a tree node by node (an edit that mirrors
// the tree's shape) costs one step per node instead of a Descend from the
// root.
func (w *Writer) Child(parent reflect.Value, f *Field, key reflect.Value, create bool) (reflect.Value, error) {
	if w.Config && f.State {
		return reflect.Value{}, ErrState
	}
	fv := parent.Elem().Field(f.Index)
	switch f.Kind {
	case KindContainer:
		if !w.ownStruct(fv, create) {
			return reflect.Value{}, ErrNotFound
		}
		return fv, nil
	case KindList:
		return w.ownEntry(fv, f, key, create)
	}
	return reflect.Value{}, fmt.Errorf("%q is not a container or list", f.Name)
}

// ownEntry makes entry k of the list in field fv owned (cloning or, with
// create, creating it) and returns it.
func (w *Writer) ownEntry(fv reflect.Value, f *Field, k reflect.Value, create bool) (reflect.Value, error) {
	var ev reflect.Value
	if !fv.IsNil() {
		ev = fv.MapIndex(k)
	}
	if !ev.IsValid() && !create {
		return reflect.Value{}, ErrNotFound
	}
	m := w.ownMap(fv)
	w.touch(m, k)
	switch {
	case !ev.IsValid():
		ev = reflect.New(f.Elem.Go)
		w.owned[ev.Pointer()] = struct{}{}
		f.FillKeys(ev, k, w.Config)
		w.ownConfig(ev, f.Elem)
	case !w.isOwned(ev):
		ev = w.clone(ev)
	default:
		return ev, nil
	}
	m.SetMapIndex(k, ev)
	return ev, nil
}

// ownConfig marks the config container FillKeys created as owned.
func (w *Writer) ownConfig(ev reflect.Value, ti *Type) {
	if cv := configOf(ev, ti); cv.IsValid() && !cv.IsNil() {
		w.owned[cv.Pointer()] = struct{}{}
	}
}

// Get returns the node's current value: the leaf field, the struct
// pointer of a container, entry or the root, or the list map; ok is false
// when it is absent (unset, nil or empty).
func (w *Writer) Get(t Target) (reflect.Value, bool) {
	if t.IsRoot() {
		return w.root, true
	}
	fv := t.Parent.Elem().Field(t.Field.Index)
	if t.IsEntry() {
		if fv.IsNil() {
			return reflect.Value{}, false
		}
		ev := fv.MapIndex(t.Key)
		return ev, ev.IsValid()
	}
	return fv, isSet(fv) && !(t.Field.Kind == KindList && fv.Len() == 0)
}

// Set replaces the node with v: a leaf field value, a struct pointer for a
// container, a list entry or the root, a list map for a whole list. An
// invalid v deletes the node.
func (w *Writer) Set(t Target, v reflect.Value) {
	if !v.IsValid() {
		w.Delete(t)
		return
	}
	if t.IsRoot() {
		w.root = v
		w.Adopt(v)
		return
	}
	fv := t.Parent.Elem().Field(t.Field.Index)
	if t.IsEntry() {
		m := w.ownMap(fv)
		w.touch(m, t.Key)
		m.SetMapIndex(t.Key, v)
		return
	}
	fv.Set(v)
}

// Delete removes the node and reports whether it was there. A list left
// without entries becomes nil.
func (w *Writer) Delete(t Target) bool {
	if _, ok := w.Get(t); !ok {
		return false
	}
	if t.IsRoot() {
		w.root = reflect.New(rootType.Go)
		w.Adopt(w.root)
		return true
	}
	fv := t.Parent.Elem().Field(t.Field.Index)
	if t.IsEntry() {
		m := w.ownMap(fv)
		w.touch(m, t.Key)
		m.SetMapIndex(t.Key, reflect.Value{})
		if m.Len() == 0 {
			fv.Set(reflect.Zero(fv.Type()))
		}
		return true
	}
	fv.Set(reflect.Zero(fv.Type()))
	return true
}

// Merge merges v into the node (gNMI update semantics: leaves and
// leaf-lists replaced, containers and lists merged entry by entry); v is
// the value Set would take. The nodes of v become part of the tree.
func (w *Writer) Merge(t Target, v reflect.Value) {
	switch {
	case t.IsRoot():
		w.root = w.merge(rootType, w.root, v)
	case t.IsEntry():
		old, _ := w.Get(t)
		if old.IsValid() {
			v = w.merge(t.Field.Elem, old, v)
		}
		w.Set(t, v)
	case t.Field.Kind == KindContainer:
		fv := t.Parent.Elem().Field(t.Field.Index)
		fv.Set(w.merge(t.Field.Elem, fv, v))
	case t.Field.Kind == KindList:
		w.mergeList(t.Field, t.Parent.Elem().Field(t.Field.Index), v)
	default:
		w.Set(t, v)
	}
}

// merge returns dst updated with every node set in src; dst is not
// modified unless owned.
func (w *Writer) merge(ti *Type, dst, src reflect.Value) reflect.Value {
	if dst.IsNil() {
		return src
	}
	if src.IsNil() {
		return dst
	}
	if !w.isOwned(dst) {
		dst = w.clone(dst)
	}
	for _, f := range ti.Fields {
		sv := src.Elem().Field(f.Index)
		if sv.IsZero() {
			continue
		}
		dv := dst.Elem().Field(f.Index)
		switch f.Kind {
		case KindLeaf, KindLeafList:
			dv.Set(sv)
		case KindContainer:
			dv.Set(w.merge(f.Elem, dv, sv))
		case KindList:
			w.mergeList(f, dv, sv)
		}
	}
	return dst
}

// mergeList merges the entries of the list map src into the list field dv.
func (w *Writer) mergeList(f *Field, dv, src reflect.Value) {
	if dv.IsNil() {
		dv.Set(src)
		return
	}
	m := w.ownMap(dv)
	it := src.MapRange()
	for it.Next() {
		w.touch(m, it.Key())
		nv := it.Value()
		if old := m.MapIndex(it.Key()); old.IsValid() {
			nv = w.merge(f.Elem, old, nv)
		}
		m.SetMapIndex(it.Key(), nv)
	}
}

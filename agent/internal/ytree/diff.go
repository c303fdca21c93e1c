package ytree

import (
	"reflect"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"
)

// DiffFunc receives one difference: an updated leaf (val set) or a deleted
// leaf or node (val nil).
type DiffFunc func(path []*gpb.PathElem, schema *yang.Entry, val *gpb.TypedValue) error

// DiffStructs reports how the struct new differs from old, both pointers
// to the same generated type at path (either may be nil). Subtrees the two
// share (the same pointer, as a Writer leaves them) are skipped without
// being visited; a list entry or container that went away is one delete.
func DiffStructs(old, new reflect.Value, e *yang.Entry, path []*gpb.PathElem, fn DiffFunc) error {
	switch {
	case old.IsValid() && new.IsValid() && !old.IsNil() && !new.IsNil() && old.Pointer() == new.Pointer():
		return nil
	case !new.IsValid() || new.IsNil():
		if old.IsValid() && !old.IsNil() {
			return fn(path, e, nil)
		}
		return nil
	case !old.IsValid() || old.IsNil():
		return leavesOf(new, e, path, func(l Leaf) error { return fn(l.Path, l.Schema, l.Val) })
	}
	of, nf := fields(old, e), fields(new, e)
	for i, f := range nf {
		o := of[i]
		p := childPath(path, &gpb.PathElem{Name: f.name})
		switch {
		case f.schema.IsList():
			if err := diffLists(o.value, f.value, f.schema, path, f.name, fn); err != nil {
				return err
			}
		case f.schema.IsLeaf() || f.schema.IsLeafList():
			if err := diffLeaf(o.value, f.value, f.schema, p, fn); err != nil {
				return err
			}
		default:
			if err := DiffStructs(o.value, f.value, f.schema, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func diffLeaf(o, n reflect.Value, e *yang.Entry, p []*gpb.PathElem, fn DiffFunc) error {
	os, ns := isSet(o), isSet(n)
	switch {
	case !ns && !os:
		return nil
	case !ns:
		return fn(p, e, nil)
	case os && reflect.DeepEqual(o.Interface(), n.Interface()):
		return nil
	}
	tv, err := ygot.EncodeTypedValue(n.Interface(), gpb.Encoding_JSON)
	if err != nil || tv == nil {
		return err
	}
	return fn(p, e, tv)
}

func diffLists(o, n reflect.Value, e *yang.Entry, path []*gpb.PathElem, name string, fn DiffFunc) error {
	if !o.IsNil() && !n.IsNil() && o.Pointer() == n.Pointer() {
		return nil
	}
	names := splitKey(e.Key)
	elem := func(k reflect.Value) (*gpb.PathElem, error) {
		keys, err := keyMap(k, names)
		return &gpb.PathElem{Name: name, Key: keys}, err
	}
	if !n.IsNil() {
		it := n.MapRange()
		for it.Next() {
			var ov reflect.Value
			if !o.IsNil() {
				ov = o.MapIndex(it.Key())
			}
			if ov.IsValid() && ov.Pointer() == it.Value().Pointer() {
				continue
			}
			pe, err := elem(it.Key())
			if err != nil {
				return err
			}
			if err := DiffStructs(ov, it.Value(), e, childPath(path, pe), fn); err != nil {
				return err
			}
		}
	}
	if o.IsNil() {
		return nil
	}
	it := o.MapRange()
	for it.Next() {
		if !n.IsNil() && n.MapIndex(it.Key()).IsValid() {
			continue
		}
		pe, err := elem(it.Key())
		if err != nil {
			return err
		}
		if err := fn(childPath(path, pe), e, nil); err != nil {
			return err
		}
	}
	return nil
}

// DiffNodes reports how the node at a path changed between two trees, as
// DiffStructs does; old and new are the results of Lookup in each tree.
func DiffNodes(old Node, hadOld bool, new Node, hasNew bool, path []*gpb.PathElem, fn DiffFunc) error {
	var e *yang.Entry
	switch {
	case hasNew:
		e = new.Schema
	case hadOld:
		e = old.Schema
	default:
		return nil
	}
	var ov, nv reflect.Value
	if hadOld {
		ov = old.Value
	}
	if hasNew {
		nv = new.Value
	}
	if e.IsLeaf() || e.IsLeafList() {
		if !ov.IsValid() {
			ov = reflect.Zero(nv.Type())
		}
		if !nv.IsValid() {
			nv = reflect.Zero(ov.Type())
		}
		return diffLeaf(ov, nv, e, path, fn)
	}
	return DiffStructs(ov, nv, e, path, fn)
}

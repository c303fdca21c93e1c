package ytree

import (
	"reflect"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
)

// EntryChange is a list entry that differs between two versions of a tree
// (changed, added or removed), as Differ.Entry reports it and validators
// receive it.
type EntryChange struct {
	Path     []*gpb.PathElem // the entry's path, with its key
	List     *Field          // the list
	Old, New ygot.GoStruct   // the entry before and after; nil when absent
}

// Differ compares two versions of a tree and reports what differs through
// its callbacks. It walks both in parallel and skips every subtree whose
// pointer is the same in both (shared by structural sharing); in a list map
// that Writer copied it visits only the keys the Writer touched. Its cost
// follows the size of the change, not of the tree.
type Differ struct {
	// Writer, when set, is the Writer that built the new version from the
	// old one.
	Writer *Writer
	// Leaf receives each leaf or leaf-list whose value differs; old or new
	// is the zero Value when unset. path is newly allocated.
	Leaf func(path []*gpb.PathElem, f *Field, old, new reflect.Value)
	// Removed, if set, receives each container or list entry that only the
	// old version has, instead of its leaves one by one.
	Removed func(path []*gpb.PathElem, t *Type)
	// Entry, if set, receives each list entry that differs, after its
	// leaves; old or new is the zero Value when absent.
	Entry func(path []*gpb.PathElem, list *Field, key, old, new reflect.Value)

	path []*gpb.PathElem
}

// Diff compares two trees (*gen.Device or any generated struct, of the same
// type; either may be nil) and reports whether they differ.
func (d *Differ) Diff(old, new any) bool {
	ov, nv := reflect.ValueOf(old), reflect.ValueOf(new)
	t := rootType
	if nv.IsValid() {
		t = TypeOf(nv.Type())
	} else if ov.IsValid() {
		t = TypeOf(ov.Type())
	}
	return d.Structs(t, nil, ov, nv)
}

// Structs compares two struct pointers of type t at path at (either may be
// nil or invalid) and reports whether anything below them differs.
func (d *Differ) Structs(t *Type, at []*gpb.PathElem, old, new reflect.Value) bool {
	d.path = append(d.path[:0], at...)
	return d.structs(t, old, new)
}

func (d *Differ) here(extra *gpb.PathElem) []*gpb.PathElem {
	n := len(d.path)
	if extra != nil {
		n++
	}
	out := make([]*gpb.PathElem, n)
	copy(out, d.path)
	if extra != nil {
		out[n-1] = extra
	}
	return out
}

func isNil(v reflect.Value) bool { return !v.IsValid() || v.IsNil() }

func (d *Differ) structs(t *Type, old, new reflect.Value) bool {
	on, nn := isNil(old), isNil(new)
	if on && nn {
		return false
	}
	if !on && !nn && old.Pointer() == new.Pointer() {
		return false
	}
	if nn && d.Removed != nil {
		d.Removed(d.here(nil), t)
		return true
	}
	changed := false
	for _, f := range t.Fields {
		var ov, nv reflect.Value
		if !on {
			ov = old.Elem().Field(f.Index)
		}
		if !nn {
			nv = new.Elem().Field(f.Index)
		}
		switch f.Kind {
		case KindLeaf, KindLeafList:
			if d.leaf(f, ov, nv) {
				changed = true
			}
		case KindContainer:
			d.path = append(d.path, &gpb.PathElem{Name: f.Name})
			if d.structs(f.Elem, ov, nv) {
				changed = true
			}
			d.path = d.path[:len(d.path)-1]
		case KindList:
			if d.lists(f, ov, nv) {
				changed = true
			}
		}
	}
	return changed
}

func (d *Differ) lists(f *Field, old, new reflect.Value) bool {
	on, nn := isNil(old), isNil(new)
	if on && nn {
		return false
	}
	if !on && !nn && old.Pointer() == new.Pointer() {
		return false
	}
	changed := false
	visit := func(k reflect.Value) {
		var ov, nv reflect.Value
		if !on {
			ov = old.MapIndex(k)
		}
		if !nn {
			nv = new.MapIndex(k)
		}
		if ov.IsValid() && nv.IsValid() && ov.Pointer() == nv.Pointer() {
			return // shared: nothing below differs (and no path to build)
		}
		d.path = append(d.path, f.KeyElem(k))
		if d.structs(f.Elem, ov, nv) {
			changed = true
			if d.Entry != nil {
				d.Entry(d.here(nil), f, k, ov, nv)
			}
		}
		d.path = d.path[:len(d.path)-1]
	}
	if w := d.Writer; w != nil && !on && !nn && w.cloneOf[new.Pointer()] == old.Pointer() {
		keys := w.dirty[new.Pointer()]
		if len(keys) == 1 {
			visit(keys[0])
			return changed
		}
		seen := make(map[any]struct{}, len(keys))
		for _, k := range keys {
			if _, ok := seen[k.Interface()]; ok {
				continue
			}
			seen[k.Interface()] = struct{}{}
			visit(k)
		}
		return changed
	}
	if !on {
		it := old.MapRange()
		for it.Next() {
			visit(it.Key())
		}
	}
	if !nn {
		it := new.MapRange()
		for it.Next() {
			if !on && old.MapIndex(it.Key()).IsValid() {
				continue
			}
			visit(it.Key())
		}
	}
	return changed
}

func leafEqual(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Pointer:
		return a.Elem().Interface() == b.Elem().Interface()
	case reflect.Int64:
		return a.Int() == b.Int()
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// A secret leaf (spt:secret) differs when it was written, whatever its
// value: old and new are the same value only when they are the same
// pointer. Comparing the values would tell whoever writes a guess whether
// it was right (a commit, a change event, or none), and the time the
// comparison takes would too.
func (d *Differ) leaf(f *Field, old, new reflect.Value) bool {
	os, ns := isSet(old), isSet(new)
	if !os && !ns {
		return false
	}
	if os && ns {
		if f.Secret && old.Kind() == reflect.Pointer {
			if old.Pointer() == new.Pointer() {
				return false
			}
		} else if leafEqual(old, new) {
			return false
		}
	}
	if !os {
		old = reflect.Value{}
	}
	if !ns {
		new = reflect.Value{}
	}
	d.Leaf(d.here(&gpb.PathElem{Name: f.Name}), f, old, new)
	return true
}

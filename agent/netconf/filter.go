package netconf

import (
	"reflect"

	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// Subtree filtering (RFC 6241 §6) on a tree of generated structs:
// namespace selection, containment nodes, selection nodes and content-match
// nodes. The result is a tree of its own that shares every subtree selected
// whole with the data. Attribute matching is not supported (the model has
// no attributes).
//
// Secret leaves (spt:secret: the pre-shared key) cannot be content-match
// nodes: checkFilter refuses such a filter, from the filter and the schema
// alone, before any data is looked at, so that whether a guess is right
// changes nothing in the answer, its errors or its timing.

// isContentMatch reports whether filter element f is a content-match node:
// no children, and text (or an XPath predicate, which compares even with
// an empty literal).
func isContentMatch(f *elem) bool { return len(f.Kids) == 0 && (f.text() != "" || f.match) }

// checkFilter refuses a filter that uses a secret leaf to select data.
func checkFilter(f *elem) *rpcError {
	return checkFilterKids(ytree.Root(), f.Kids, "")
}

func checkFilterKids(t *ytree.Type, fs []*elem, path string) *rpcError {
	for _, f := range fs {
		fld := fieldFor(t, f.Name.Space, f.Name.Local)
		if fld == nil {
			continue
		}
		p := path + seg(fld.Name)
		if isContentMatch(f) && fld.Secret {
			return newErr("protocol", "invalid-value", "%s is a secret leaf: secret leaves cannot be used to select data", p).at(p).info("bad-element", fld.Name)
		}
		if fld.Elem != nil && len(f.Kids) > 0 {
			if e := checkFilterKids(fld.Elem, f.Kids, p); e != nil {
				return e
			}
		}
	}
	return nil
}

// filterTree returns the part of root selected by the children of a
// <filter type="subtree"> element. A filter with no children selects
// nothing (§6.4.2).
func filterTree(root *gen.Device, f *elem) *gen.Device {
	if root == nil || len(f.Kids) == 0 {
		return &gen.Device{}
	}
	out, ok := filterStruct(ytree.Root(), reflect.ValueOf(root), f.Kids)
	if !ok || isEmpty(ytree.Root(), out) {
		return &gen.Device{}
	}
	return out.Interface().(*gen.Device)
}

// filterStruct returns what the sibling filter elements fs select of the
// struct v (type t): v itself when it is selected whole, else a new struct,
// and whether v matched at all (its content-match nodes).
func filterStruct(t *ytree.Type, v reflect.Value, fs []*elem) (reflect.Value, bool) {
	var content, other []*elem
	for _, f := range fs {
		if isContentMatch(f) {
			content = append(content, f)
		} else {
			other = append(other, f)
		}
	}
	var out reflect.Value
	own := func() reflect.Value {
		if !out.IsValid() {
			out = t.New()
		}
		return out
	}
	for _, c := range content {
		fld := fieldFor(t, c.Name.Space, c.Name.Local)
		if fld == nil || !fld.IsLeaf() || fld.Secret {
			return reflect.Value{}, false
		}
		m, ok := matchContent(fld, v, c.text())
		if !ok {
			return reflect.Value{}, false
		}
		own().Elem().Field(fld.Index).Set(m)
	}
	if len(other) == 0 {
		return v, true
	}
	for _, f := range other {
		fld := fieldFor(t, f.Name.Space, f.Name.Local)
		if fld == nil {
			continue
		}
		fv := v.Elem().Field(fld.Index)
		if !isSet(fv) {
			continue
		}
		switch fld.Kind {
		case ytree.KindLeaf, ytree.KindLeafList:
			own().Elem().Field(fld.Index).Set(fv)
		case ytree.KindContainer:
			sub := fv
			if len(f.Kids) > 0 {
				var ok bool
				if sub, ok = filterStruct(fld.Elem, fv, f.Kids); !ok || isEmpty(fld.Elem, sub) {
					continue
				}
			}
			o := own().Elem().Field(fld.Index)
			if !o.IsNil() {
				sub = reflect.ValueOf(ytree.Overlay(o.Interface().(ygot.GoStruct), sub.Interface().(ygot.GoStruct)))
			}
			o.Set(sub)
		case ytree.KindList:
			it := fv.MapRange()
			for it.Next() {
				sub := it.Value()
				if len(f.Kids) > 0 {
					var ok bool
					if sub, ok = filterStruct(fld.Elem, sub, f.Kids); !ok || isEmpty(fld.Elem, sub) {
						continue
					}
					withKeys(fld, sub, it.Value())
				}
				putEntry(own().Elem().Field(fld.Index), it.Key(), sub)
			}
		}
	}
	if !out.IsValid() {
		return t.New(), true
	}
	return out, true
}

// matchContent returns the value of leaf f of v that content-match text
// selects (for a leaf-list, the matching values), and whether there is one.
// The text is compared in its canonical form (as the leaf's type reads it).
func matchContent(f *ytree.Field, v reflect.Value, text string) (reflect.Value, bool) {
	fv := v.Elem().Field(f.Index)
	if !isSet(fv) {
		return reflect.Value{}, false
	}
	want := canonical(f, v, text)
	if f.Kind == ytree.KindLeaf {
		return fv, ytree.FormatText(fv) == want
	}
	out := reflect.MakeSlice(fv.Type(), 0, 1)
	for i := 0; i < fv.Len(); i++ {
		if ytree.FormatText(fv.Index(i)) == want {
			out = reflect.Append(out, fv.Index(i))
		}
	}
	return out, out.Len() > 0
}

// canonical is text as leaf f's type reads and writes it ("010" is 10), or
// text itself if it is not a value of that type.
func canonical(f *ytree.Field, parent reflect.Value, text string) string {
	scratch := reflect.New(parent.Type().Elem())
	if err := ytree.SetText(f, scratch, text); err != nil {
		return text
	}
	fv := scratch.Elem().Field(f.Index)
	if f.Kind == ytree.KindLeafList {
		fv = fv.Index(0)
	}
	return ytree.FormatText(fv)
}

// withKeys gives a filtered list entry (a new struct) the key leaves of
// the entry it was cut from.
func withKeys(list *ytree.Field, sub, entry reflect.Value) {
	if sub.Pointer() == entry.Pointer() {
		return
	}
	for _, kf := range list.Elem.KeyFields() {
		if sv := sub.Elem().Field(kf.Index); !isSet(sv) {
			sv.Set(entry.Elem().Field(kf.Index))
		}
	}
}

// putEntry adds entry k to the list map field m of a filter result,
// joining it with what other filter elements selected of the same entry.
func putEntry(m, k, entry reflect.Value) {
	if m.IsNil() {
		m.Set(reflect.MakeMap(m.Type()))
	}
	if cur := m.MapIndex(k); cur.IsValid() {
		entry = reflect.ValueOf(ytree.Overlay(cur.Interface().(ygot.GoStruct), entry.Interface().(ygot.GoStruct)))
	}
	m.SetMapIndex(k, entry)
}

// isEmpty reports whether the struct v (type t) holds nothing.
func isEmpty(t *ytree.Type, v reflect.Value) bool {
	for _, f := range t.Fields {
		fv := v.Elem().Field(f.Index)
		switch {
		case !isSet(fv):
		case f.Kind == ytree.KindContainer && isEmpty(f.Elem, fv):
		case f.Kind == ytree.KindList && fv.Len() == 0:
		default:
			return false
		}
	}
	return true
}

package ytree

import (
	"fmt"
	"reflect"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"
)

// Node is one node of a data tree, found by Match or Lookup.
type Node struct {
	Path   []*gpb.PathElem
	Schema *yang.Entry
	// Value is a pointer to a struct for a container or a list entry, and
	// the struct field itself (a pointer, an enum, a slice or a union) for a
	// leaf or leaf-list.
	Value reflect.Value
	// Type is the node's type for a container or list entry.
	Type *Type
	// Field is the schema child that holds the node (nil for the root).
	Field *Field
}

// IsLeaf reports whether n is a leaf or a leaf-list.
func (n Node) IsLeaf() bool { return n.Type == nil }

// Struct returns the node's GoStruct, or nil for a leaf.
func (n Node) Struct() ygot.GoStruct {
	if n.IsLeaf() {
		return nil
	}
	s, _ := n.Value.Interface().(ygot.GoStruct)
	return s
}

// RootNode is the node of a whole tree.
func RootNode(root ygot.GoStruct) Node {
	return Node{Schema: RootSchema(), Value: reflect.ValueOf(root), Type: rootType}
}

// NodeOf is the node of the struct v (a container or list entry) at path.
func NodeOf(path []*gpb.PathElem, v ygot.GoStruct) Node {
	rv := reflect.ValueOf(v)
	t := TypeOf(rv.Type())
	return Node{Path: path, Schema: t.Schema, Value: rv, Type: t}
}

// Leaf is a leaf or leaf-list with a value.
type Leaf struct {
	Path   []*gpb.PathElem
	Schema *yang.Entry
	Val    *gpb.TypedValue
	Field  *Field
	Value  reflect.Value // the struct field
}

func childPath(p []*gpb.PathElem, e *gpb.PathElem) []*gpb.PathElem {
	out := make([]*gpb.PathElem, len(p), len(p)+1)
	copy(out, p)
	return append(out, e)
}

// entries returns the keys of a list map in key order (see sortKeys).
func entries(m reflect.Value) []reflect.Value {
	keys := m.MapKeys()
	sortKeys(keys)
	return keys
}

// Match returns the nodes of the tree under root (a *gen.Device) that match
// pattern. Pattern elements may be "*" (any one element) or "..." (any
// number of elements); list keys that are absent or "*" match any entry.
// A pattern ending in "..." matches the leaves below that point. Results are
// in schema order, list entries in key order.
func Match(root ygot.GoStruct, pattern []*gpb.PathElem) ([]Node, error) {
	v := reflect.ValueOf(root)
	if v.IsNil() {
		return nil, nil
	}
	var out []Node
	err := match(v, TypeOf(v.Type()), nil, pattern, func(n Node) error {
		out = append(out, n)
		return nil
	})
	return out, err
}

// match walks the struct v (a container or list entry) with pattern.
func match(v reflect.Value, ti *Type, at, pattern []*gpb.PathElem, yield func(Node) error) error {
	if len(pattern) == 0 {
		return yield(Node{Path: at, Schema: ti.Schema, Value: v, Type: ti})
	}
	pe := pattern[0]
	if pe.GetName() == "..." {
		return matchAnyDepth(v, ti, at, pattern, yield)
	}
	if pe.GetName() != "*" {
		f := ti.byName[pe.GetName()]
		if f == nil {
			return nil
		}
		return matchField(v, f, at, pe, pattern[1:], yield)
	}
	for _, f := range ti.Fields {
		if err := matchField(v, f, at, pe, pattern[1:], yield); err != nil {
			return err
		}
	}
	return nil
}

// matchField continues a match into one child field of the struct v.
func matchField(v reflect.Value, f *Field, at []*gpb.PathElem, pe *gpb.PathElem, rest []*gpb.PathElem, yield func(Node) error) error {
	fv := v.Elem().Field(f.Index)
	switch f.Kind {
	case KindList:
		if fv.IsNil() {
			return nil
		}
		if k, ok, exact := directKey(f, pe.GetKey()); exact {
			if !ok {
				return nil
			}
			ev := fv.MapIndex(k)
			if !ev.IsValid() {
				return nil
			}
			return match(ev, f.Elem, childPath(at, &gpb.PathElem{Name: f.Name, Key: pe.GetKey()}), rest, yield)
		}
		for _, k := range entries(fv) {
			km := f.KeyMap(k)
			if !keysMatch(pe.GetKey(), km) {
				continue
			}
			if err := match(fv.MapIndex(k), f.Elem, childPath(at, &gpb.PathElem{Name: f.Name, Key: km}), rest, yield); err != nil {
				return err
			}
		}
		return nil
	case KindLeaf, KindLeafList:
		if len(rest) > 0 || !isSet(fv) {
			return nil
		}
		return yield(Node{Path: childPath(at, &gpb.PathElem{Name: f.Name}), Schema: f.Schema, Value: fv, Field: f})
	default:
		if fv.IsNil() {
			return nil
		}
		n := Node{Path: childPath(at, &gpb.PathElem{Name: f.Name})}
		if len(rest) == 0 {
			return yield(Node{Path: n.Path, Schema: f.Schema, Value: fv, Type: f.Elem, Field: f})
		}
		return match(fv, f.Elem, n.Path, rest, yield)
	}
}

// directKey parses the keys of a pattern element that gives every key of
// list f exactly (no "*"): exact is then true, and ok says whether they
// parse (an unparsable key names no entry).
func directKey(f *Field, want map[string]string) (k reflect.Value, ok, exact bool) {
	if len(want) != len(f.keyNames) {
		return reflect.Value{}, false, false
	}
	for _, n := range f.keyNames {
		if s, found := want[n]; !found || s == "*" {
			return reflect.Value{}, false, false
		}
	}
	k, err := f.ParseKey(want)
	return k, err == nil, true
}

// matchAnyDepth handles a "..." element: the rest of the pattern is tried
// here and at every depth below.
func matchAnyDepth(v reflect.Value, ti *Type, at, pattern []*gpb.PathElem, yield func(Node) error) error {
	rest := pattern[1:]
	if len(rest) == 0 {
		return leavesOf(v, ti, at, func(l Leaf) error {
			return yield(Node{Path: l.Path, Schema: l.Schema, Value: l.Value, Field: l.Field})
		})
	}
	if err := match(v, ti, at, rest, yield); err != nil {
		return err
	}
	return eachChildStruct(v, ti, at, func(cv reflect.Value, ct *Type, cp []*gpb.PathElem) error {
		return matchAnyDepth(cv, ct, cp, pattern, yield)
	})
}

// eachChildStruct calls fn for every child container and list entry of v.
func eachChildStruct(v reflect.Value, ti *Type, at []*gpb.PathElem, fn func(reflect.Value, *Type, []*gpb.PathElem) error) error {
	for _, f := range ti.Fields {
		fv := v.Elem().Field(f.Index)
		if f.IsLeaf() || fv.IsNil() {
			continue
		}
		if f.Kind == KindContainer {
			if err := fn(fv, f.Elem, childPath(at, &gpb.PathElem{Name: f.Name})); err != nil {
				return err
			}
			continue
		}
		for _, k := range entries(fv) {
			if err := fn(fv.MapIndex(k), f.Elem, childPath(at, f.KeyElem(k))); err != nil {
				return err
			}
		}
	}
	return nil
}

// Leaves calls fn for every leaf and leaf-list with a value at or under n:
// a struct's own leaves first, then its containers and list entries.
func Leaves(n Node, fn func(Leaf) error) error {
	if n.IsLeaf() {
		return emitLeaf(n.Path, n.Field, n.Value, fn)
	}
	return leavesOf(n.Value, n.Type, n.Path, fn)
}

func leavesOf(v reflect.Value, ti *Type, at []*gpb.PathElem, fn func(Leaf) error) error {
	for _, f := range ti.Fields {
		fv := v.Elem().Field(f.Index)
		if !f.IsLeaf() || !isSet(fv) {
			continue
		}
		if err := emitLeaf(childPath(at, &gpb.PathElem{Name: f.Name}), f, fv, fn); err != nil {
			return err
		}
	}
	return eachChildStruct(v, ti, at, func(cv reflect.Value, ct *Type, cp []*gpb.PathElem) error {
		return leavesOf(cv, ct, cp, fn)
	})
}

func emitLeaf(p []*gpb.PathElem, f *Field, v reflect.Value, fn func(Leaf) error) error {
	tv, err := TypedValue(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", PathString(p), err)
	}
	if tv == nil {
		return nil
	}
	return fn(Leaf{Path: p, Schema: f.Schema, Val: tv, Field: f, Value: v})
}

// Lookup returns the node at a concrete path (no wildcards, every list key
// given), or false.
func Lookup(root ygot.GoStruct, path []*gpb.PathElem) (Node, bool) {
	v := reflect.ValueOf(root)
	if v.IsNil() {
		return Node{}, false
	}
	ti := TypeOf(v.Type())
	n := Node{Schema: ti.Schema, Value: v, Type: ti}
	for i, pe := range path {
		if n.Type == nil {
			return Node{}, false
		}
		f := n.Type.byName[stripPrefix(pe.GetName())]
		if f == nil {
			return Node{}, false
		}
		fv := n.Value.Elem().Field(f.Index)
		switch f.Kind {
		case KindList:
			k, ok, exact := directKey(f, pe.GetKey())
			if !exact || !ok || fv.IsNil() {
				return Node{}, false
			}
			if fv = fv.MapIndex(k); !fv.IsValid() {
				return Node{}, false
			}
			n = Node{Schema: f.Schema, Value: fv, Type: f.Elem, Field: f}
		case KindContainer:
			if len(pe.GetKey()) > 0 || fv.IsNil() {
				return Node{}, false
			}
			n = Node{Schema: f.Schema, Value: fv, Type: f.Elem, Field: f}
		default:
			if len(pe.GetKey()) > 0 || i != len(path)-1 || !isSet(fv) {
				return Node{}, false
			}
			n = Node{Schema: f.Schema, Value: fv, Field: f}
		}
	}
	n.Path = path
	return n, true
}

// isSet reports whether a field has a value: a non-nil pointer, interface
// or map, a non-empty slice, an enumeration other than UNSET (0).
func isSet(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map:
		return !v.IsNil()
	case reflect.Slice:
		return v.Len() > 0
	case reflect.Int64:
		return v.Int() != 0
	}
	return v.IsValid() && !v.IsZero()
}

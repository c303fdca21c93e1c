// Package ytree reads and rewrites trees of ygot-generated structs (the
// uncompressed structs of package gen) by gNMI path: matching a path pattern
// with wildcards against a tree, enumerating the leaves under a node, and
// copying the spine of a tree so that a new version can share every untouched
// subtree with the old one.
//
// It knows the generated code's conventions (path and module struct tags,
// maps for lists, key structs for multi-key lists) and nothing of the store,
// the engines or gNMI transport.
package ytree

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
)

// Node is one node of a data tree, found by Match or Lookup.
type Node struct {
	Path   []*gpb.PathElem
	Schema *yang.Entry
	// Value is a pointer to a struct for a container or a list entry, and
	// the struct field itself (a pointer, an enum, a slice or a union) for a
	// leaf or leaf-list.
	Value reflect.Value
}

// IsLeaf reports whether n is a leaf or a leaf-list.
func (n Node) IsLeaf() bool { return n.Schema.IsLeaf() || n.Schema.IsLeafList() }

// Struct returns the node's GoStruct, or nil for a leaf.
func (n Node) Struct() ygot.GoStruct {
	if n.IsLeaf() {
		return nil
	}
	s, _ := n.Value.Interface().(ygot.GoStruct)
	return s
}

// Leaf is a leaf or leaf-list with a value.
type Leaf struct {
	Path   []*gpb.PathElem
	Schema *yang.Entry
	Val    *gpb.TypedValue
	value  reflect.Value
}

// RootSchema is the schema of gen.Device, the root of every tree.
func RootSchema() *yang.Entry { return gen.SchemaTree["Device"] }

// schemaOf returns the schema entry of a generated struct type.
func schemaOf(t reflect.Type) *yang.Entry {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return gen.SchemaTree[t.Name()]
}

// field is one schema child of a struct: its name and the struct field.
type field struct {
	name   string
	schema *yang.Entry
	value  reflect.Value
}

// fields lists the schema children of the struct v points to, in struct
// order (alphabetical in generated code).
func fields(v reflect.Value, e *yang.Entry) []field {
	sv := v.Elem()
	st := sv.Type()
	out := make([]field, 0, st.NumField())
	for i := 0; i < st.NumField(); i++ {
		name := st.Field(i).Tag.Get("path")
		if name == "" {
			continue
		}
		ce := e.Dir[name]
		if ce == nil {
			continue
		}
		out = append(out, field{name: name, schema: ce, value: sv.Field(i)})
	}
	return out
}

// fieldByName returns the struct field of the schema child called name.
func fieldByName(v reflect.Value, e *yang.Entry, name string) (field, bool) {
	ce := e.Dir[name]
	if ce == nil {
		return field{}, false
	}
	sv := v.Elem()
	st := sv.Type()
	for i := 0; i < st.NumField(); i++ {
		if st.Field(i).Tag.Get("path") == name {
			return field{name: name, schema: ce, value: sv.Field(i)}, true
		}
	}
	return field{}, false
}

// isSet reports whether a leaf field has a value.
func isSet(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map:
		return !v.IsNil()
	case reflect.Slice:
		return v.Len() > 0
	case reflect.Int64: // generated enums: 0 is UNSET
		return v.Int() != 0
	}
	return !v.IsZero()
}

// entry is one list entry: its key as gNMI key values and its struct.
type entry struct {
	keys  map[string]string
	value reflect.Value
}

// listEntries returns the entries of a list field, sorted by key
// (numerically for numeric keys).
func listEntries(m reflect.Value, e *yang.Entry) ([]entry, error) {
	out := make([]entry, 0, m.Len())
	names := splitKey(e.Key)
	kind := m.Type().Key().Kind()
	var mk []reflect.Value
	it := m.MapRange()
	for it.Next() {
		keys, err := keyMap(it.Key(), names)
		if err != nil {
			return nil, err
		}
		out = append(out, entry{keys: keys, value: it.Value()})
		mk = append(mk, it.Key())
	}
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	switch kind {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		sort.Slice(idx, func(i, j int) bool { return mk[idx[i]].Uint() < mk[idx[j]].Uint() })
	case reflect.String:
		sort.Slice(idx, func(i, j int) bool { return mk[idx[i]].String() < mk[idx[j]].String() })
	default:
		sort.Slice(idx, func(i, j int) bool { return lessKeys(out[idx[i]].keys, out[idx[j]].keys, names) })
	}
	sorted := make([]entry, len(out))
	for i, k := range idx {
		sorted[i] = out[k]
	}
	return sorted, nil
}

// keyMap renders a map key (a scalar or a generated key struct) as gNMI keys.
func keyMap(k reflect.Value, names []string) (map[string]string, error) {
	if k.Kind() != reflect.Struct {
		s, err := ygot.KeyValueAsString(k.Interface())
		if err != nil {
			return nil, err
		}
		return map[string]string{names[0]: s}, nil
	}
	out := make(map[string]string, k.NumField())
	for i := 0; i < k.NumField(); i++ {
		s, err := ygot.KeyValueAsString(k.Field(i).Interface())
		if err != nil {
			return nil, err
		}
		out[k.Type().Field(i).Tag.Get("path")] = s
	}
	return out, nil
}

// lessKeys orders entries by their keys, numerically where both are numbers.
func lessKeys(a, b map[string]string, names []string) bool {
	for _, n := range names {
		x, y := a[n], b[n]
		if x == y {
			continue
		}
		if isDigits(x) && isDigits(y) && len(x) != len(y) {
			return len(x) < len(y)
		}
		return x < y
	}
	return false
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// keysMatch reports whether an entry's keys satisfy a pattern's keys; a key
// that is absent from the pattern or is "*" matches anything.
func keysMatch(want, have map[string]string) bool {
	for k, v := range want {
		if v == "*" {
			continue
		}
		if have[k] != v {
			return false
		}
	}
	return true
}

func childPath(p []*gpb.PathElem, e *gpb.PathElem) []*gpb.PathElem {
	out := make([]*gpb.PathElem, len(p), len(p)+1)
	copy(out, p)
	return append(out, e)
}

// Match returns the nodes of the tree under root (a *gen.Device) that match
// pattern. Pattern elements may be "*" (any one element) or "..." (any
// number of elements); list keys that are absent or "*" match any entry.
// A pattern ending in "..." matches the leaves below that point.
func Match(root ygot.GoStruct, pattern []*gpb.PathElem) ([]Node, error) {
	var out []Node
	v := reflect.ValueOf(root)
	if v.IsNil() {
		return nil, nil
	}
	err := match(v, schemaOf(v.Type()), nil, pattern, func(n Node) error {
		out = append(out, n)
		return nil
	})
	return out, err
}

// match walks the struct v (a container or list entry) with pattern.
func match(v reflect.Value, e *yang.Entry, at, pattern []*gpb.PathElem, yield func(Node) error) error {
	if len(pattern) == 0 {
		return yield(Node{Path: at, Schema: e, Value: v})
	}
	pe := pattern[0]
	if pe.GetName() == "..." {
		return matchAnyDepth(v, e, at, pattern, yield)
	}
	for _, f := range fields(v, e) {
		if pe.GetName() != "*" && pe.GetName() != f.name {
			continue
		}
		if err := matchField(f, at, pe, pattern[1:], yield); err != nil {
			return err
		}
	}
	return nil
}

// matchField continues a match into one child field of a struct.
func matchField(f field, at []*gpb.PathElem, pe *gpb.PathElem, rest []*gpb.PathElem, yield func(Node) error) error {
	switch {
	case f.schema.IsList():
		if f.value.IsNil() {
			return nil
		}
		if v, keys, ok := directEntry(f, pe.GetKey()); ok {
			if !v.IsValid() {
				return nil
			}
			return match(v, f.schema, childPath(at, &gpb.PathElem{Name: f.name, Key: keys}), rest, yield)
		}
		entries, err := listEntries(f.value, f.schema)
		if err != nil {
			return err
		}
		for _, en := range entries {
			if !keysMatch(pe.GetKey(), en.keys) {
				continue
			}
			if err := match(en.value, f.schema, childPath(at, &gpb.PathElem{Name: f.name, Key: en.keys}), rest, yield); err != nil {
				return err
			}
		}
		return nil
	case f.schema.IsLeaf() || f.schema.IsLeafList():
		if len(rest) > 0 || !isSet(f.value) {
			return nil
		}
		return yield(Node{Path: childPath(at, &gpb.PathElem{Name: f.name}), Schema: f.schema, Value: f.value})
	default:
		if f.value.IsNil() {
			return nil
		}
		return match(f.value, f.schema, childPath(at, &gpb.PathElem{Name: f.name}), rest, yield)
	}
}

// directEntry looks a list entry up by its key without scanning the list,
// when the pattern gives every key exactly. ok is false when a scan is
// needed.
func directEntry(f field, want map[string]string) (v reflect.Value, keys map[string]string, ok bool) {
	names := strings.Fields(f.schema.Key)
	if len(want) != len(names) {
		return reflect.Value{}, nil, false
	}
	for _, n := range names {
		if s, found := want[n]; !found || s == "*" {
			return reflect.Value{}, nil, false
		}
	}
	k, err := mapKey(f, want)
	if err != nil {
		return reflect.Value{}, nil, true // unparsable key: no such entry
	}
	return f.value.MapIndex(k), want, true
}

// matchAnyDepth handles a "..." element: the rest of the pattern is tried
// here and at every depth below.
func matchAnyDepth(v reflect.Value, e *yang.Entry, at, pattern []*gpb.PathElem, yield func(Node) error) error {
	rest := pattern[1:]
	if len(rest) == 0 {
		return Leaves(Node{Path: at, Schema: e, Value: v}, func(l Leaf) error {
			return yield(Node{Path: l.Path, Schema: l.Schema, Value: l.value})
		})
	}
	if err := match(v, e, at, rest, yield); err != nil {
		return err
	}
	return eachChildStruct(v, e, at, func(cv reflect.Value, ce *yang.Entry, cp []*gpb.PathElem) error {
		return matchAnyDepth(cv, ce, cp, pattern, yield)
	})
}

// eachChildStruct calls fn for every child container and list entry of v.
func eachChildStruct(v reflect.Value, e *yang.Entry, at []*gpb.PathElem, fn func(reflect.Value, *yang.Entry, []*gpb.PathElem) error) error {
	for _, f := range fields(v, e) {
		switch {
		case f.schema.IsList():
			if f.value.IsNil() {
				continue
			}
			entries, err := listEntries(f.value, f.schema)
			if err != nil {
				return err
			}
			for _, en := range entries {
				if err := fn(en.value, f.schema, childPath(at, &gpb.PathElem{Name: f.name, Key: en.keys})); err != nil {
					return err
				}
			}
		case f.schema.IsLeaf() || f.schema.IsLeafList():
		default:
			if f.value.IsNil() {
				continue
			}
			if err := fn(f.value, f.schema, childPath(at, &gpb.PathElem{Name: f.name})); err != nil {
				return err
			}
		}
	}
	return nil
}

// Leaves calls fn for every leaf and leaf-list with a value at or under n,
// in schema order.
func Leaves(n Node, fn func(Leaf) error) error {
	if n.IsLeaf() {
		return emitLeaf(n.Path, n.Schema, n.Value, fn)
	}
	return leavesOf(n.Value, n.Schema, n.Path, fn)
}

func leavesOf(v reflect.Value, e *yang.Entry, at []*gpb.PathElem, fn func(Leaf) error) error {
	for _, f := range fields(v, e) {
		if !(f.schema.IsLeaf() || f.schema.IsLeafList()) || !isSet(f.value) {
			continue
		}
		if err := emitLeaf(childPath(at, &gpb.PathElem{Name: f.name}), f.schema, f.value, fn); err != nil {
			return err
		}
	}
	return eachChildStruct(v, e, at, func(cv reflect.Value, ce *yang.Entry, cp []*gpb.PathElem) error {
		return leavesOf(cv, ce, cp, fn)
	})
}

func emitLeaf(p []*gpb.PathElem, e *yang.Entry, v reflect.Value, fn func(Leaf) error) error {
	tv, err := typedValue(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", PathString(p), err)
	}
	if tv == nil {
		return nil
	}
	return fn(Leaf{Path: p, Schema: e, Val: tv, value: v})
}

// Lookup returns the node at a concrete path (no wildcards), or false.
func Lookup(root ygot.GoStruct, path []*gpb.PathElem) (Node, bool) {
	for _, pe := range path {
		if pe.GetName() == "*" || pe.GetName() == "..." {
			return Node{}, false
		}
	}
	nodes, err := Match(root, path)
	if err != nil || len(nodes) != 1 {
		return Node{}, false
	}
	// A concrete path without all keys of a list matches several entries;
	// only a full match counts.
	if len(nodes[0].Path) != len(path) {
		return Node{}, false
	}
	return nodes[0], true
}

// PathString renders path elements as /a/b[k=v]/c, keys in name order,
// with "]" and "\\" in key values escaped as in the gNMI path conventions.
func PathString(p []*gpb.PathElem) string {
	if len(p) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, e := range p {
		b.WriteByte('/')
		b.WriteString(e.GetName())
		keys := e.GetKey()
		switch len(keys) {
		case 0:
		case 1:
			for k, v := range keys {
				writeKey(&b, k, v)
			}
		default:
			names := make([]string, 0, len(keys))
			for k := range keys {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				writeKey(&b, k, keys[k])
			}
		}
	}
	return b.String()
}

func writeKey(b *strings.Builder, k, v string) {
	b.WriteByte('[')
	b.WriteString(k)
	b.WriteByte('=')
	if strings.ContainsAny(v, `]\`) {
		v = strings.NewReplacer(`\`, `\\`, `]`, `\]`).Replace(v)
	}
	b.WriteString(v)
	b.WriteByte(']')
}

func splitKey(k string) []string { return strings.Fields(k) }

// typedValue encodes a set leaf field as a scalar TypedValue: directly for
// pointers to strings, booleans and integers, through ygot for enums,
// unions, binaries and leaf-lists.
func typedValue(v reflect.Value) (*gpb.TypedValue, error) {
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		switch x := v.Elem(); x.Kind() {
		case reflect.String:
			return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: x.String()}}, nil
		case reflect.Bool:
			return &gpb.TypedValue{Value: &gpb.TypedValue_BoolVal{BoolVal: x.Bool()}}, nil
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: x.Uint()}}, nil
		case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return &gpb.TypedValue{Value: &gpb.TypedValue_IntVal{IntVal: x.Int()}}, nil
		}
	}
	return ygot.EncodeTypedValue(v.Interface(), gpb.Encoding_JSON)
}

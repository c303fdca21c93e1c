package netconf

import (
	"cmp"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/ytree"
)

// The XML view of the schema: ytree's tables (types, fields, keys, the
// text form of values) plus what only XML needs, the modules' namespaces
// and the canonical order of a node's children.

// moduleNamespaces maps the data modules to their XML namespaces (the
// generated schema keeps module names, not namespaces; a test checks this
// table against yang/).
var moduleNamespaces = map[string]string{
	"spiagent-crypto": "urn:spiagent:yang:spiagent-crypto",
}

const (
	cryptoModule   = "spiagent-crypto"
	cryptoRevision = "2026-11-27"
)

// nsOf is the XML namespace of a schema child.
func nsOf(f *ytree.Field) string { return moduleNamespaces[f.Module] }

// xmlOrders holds, for every type reachable from the root, the order in
// which its children are written: a list entry's keys first, in key order
// (RFC 7950 §7.8.5), then the other children by name. Built once.
var xmlOrders = func() map[*ytree.Type][]*ytree.Field {
	m := map[*ytree.Type][]*ytree.Field{}
	var walk func(t *ytree.Type)
	walk = func(t *ytree.Type) {
		if _, ok := m[t]; ok {
			return
		}
		keys := t.KeyFields()
		rest := make([]*ytree.Field, 0, len(t.Fields))
		for _, f := range t.Fields {
			isKey := false
			for _, k := range keys {
				isKey = isKey || k == f
			}
			if !isKey {
				rest = append(rest, f)
			}
		}
		sort.SliceStable(rest, func(i, j int) bool { return rest[i].Name < rest[j].Name })
		m[t] = append(append([]*ytree.Field(nil), keys...), rest...)
		for _, f := range t.Fields {
			if f.Elem != nil {
				walk(f.Elem)
			}
		}
	}
	walk(ytree.Root())
	return m
}()

// xmlOrder is the order of t's children in XML.
func xmlOrder(t *ytree.Type) []*ytree.Field { return xmlOrders[t] }

// sortEntries returns the keys of list map m (of list f) in the order
// entries are written: key by key, numbers numerically, other values as
// text, and text that reads as an integer (an access list named "150") as
// that integer, as NETCONF replies have always ordered them.
func sortEntries(f *ytree.Field, m reflect.Value) []reflect.Value {
	keys := m.MapKeys()
	if len(keys) < 2 {
		return keys
	}
	parts := len(f.KeyNames())
	ords := make([]keyOrder, len(keys)*parts)
	for i, k := range keys {
		for j := 0; j < parts; j++ {
			c := k
			if k.Kind() == reflect.Struct {
				c = k.Field(j)
			}
			ords[i*parts+j] = orderOf(c)
		}
	}
	// Sort indexes, not the records: moving records that hold pointers
	// costs a write barrier each.
	idx := make([]int32, len(keys))
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortFunc(idx, func(a, b int32) int {
		x, y := ords[int(a)*parts:int(a+1)*parts], ords[int(b)*parts:int(b+1)*parts]
		for j := range x {
			if c := x[j].cmp(y[j]); c != 0 {
				return c
			}
		}
		return 0
	})
	out := make([]reflect.Value, len(keys))
	for i, j := range idx {
		out[i] = keys[j]
	}
	return out
}

// keyOrder is how one key component sorts: as an integer when it is one
// (or its text reads as one), else by its text.
type keyOrder struct {
	num   int64
	isNum bool
	text  string
}

func (a keyOrder) cmp(b keyOrder) int {
	if a.isNum && b.isNum {
		return cmp.Compare(a.num, b.num)
	}
	return strings.Compare(a.text, b.text)
}

func orderOf(v reflect.Value) keyOrder {
	switch v.Kind() {
	case reflect.Int64:
		if v.Type().Implements(goEnum) {
			return keyOrder{text: ytree.FormatText(v)}
		}
		return keyOrder{num: v.Int(), isNum: true}
	case reflect.Int8, reflect.Int16, reflect.Int32:
		return keyOrder{num: v.Int(), isNum: true}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return keyOrder{num: int64(v.Uint()), isNum: true}
	case reflect.Uint64:
		if n := v.Uint(); n <= 1<<63-1 {
			return keyOrder{num: int64(n), isNum: true}
		}
		return keyOrder{text: strconv.FormatUint(v.Uint(), 10)}
	case reflect.String:
		s := v.String()
		if looksInteger(s) {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return keyOrder{num: n, isNum: true, text: s}
			}
		}
		return keyOrder{text: s}
	}
	return keyOrder{text: ytree.FormatText(v)}
}

// looksInteger reports whether s is digits with an optional sign (what
// strconv.ParseInt may accept), cheaply.
func looksInteger(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// fieldFor returns the child of t an element names (local name, and its
// namespace unless the element has none), or nil.
func fieldFor(t *ytree.Type, space, local string) *ytree.Field {
	f := t.Field(local)
	if f == nil || (space != "" && space != nsOf(f)) {
		return nil
	}
	return f
}

// seg is the XPath step of element name under the data module's prefix.
func seg(name string) string { return "/" + xpathPrefix + ":" + name }

// entryStep is the XPath step of entry k of list f: the name and a
// predicate per key.
func entryStep(f *ytree.Field, k reflect.Value) string {
	var b strings.Builder
	b.WriteString(seg(f.Name))
	km := f.KeyMap(k)
	for _, name := range f.KeyNames() {
		writePredicate(&b, name, km[name])
	}
	return b.String()
}

// writePredicate appends [spc:name='value'], quoting with " when the value
// holds a '.
func writePredicate(b *strings.Builder, name, v string) {
	v = ytree.Clip(v)
	q := "'"
	if strings.Contains(v, "'") {
		q = `"`
	}
	b.WriteString("[" + xpathPrefix + ":" + name + "=" + q + v + q + "]")
}

// isSet reports whether a leaf or leaf-list field has a value (a non-nil
// pointer or union, a set enumeration, a non-empty leaf-list).
func isSet(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map:
		return !v.IsNil()
	case reflect.Slice:
		return v.Len() > 0
	case reflect.Int64:
		return v.Int() != 0
	}
	return !v.IsZero()
}

// goEnum is the interface of generated enumerations.
var goEnum = reflect.TypeOf((*ygot.GoEnum)(nil)).Elem()

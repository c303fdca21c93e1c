package ytree

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
)

// PathString renders path elements as /a/b[k=v]/c: keys in name order, "]"
// and "\" in key values escaped with "\" as in the gNMI path conventions.
// It is the one text form of a path in errors, problems, logs and maps.
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

var keyEscaper = strings.NewReplacer(`\`, `\\`, `]`, `\]`)

func writeKey(b *strings.Builder, k, v string) {
	b.WriteByte('[')
	b.WriteString(k)
	b.WriteByte('=')
	if strings.ContainsAny(v, `]\`) {
		v = keyEscaper.Replace(v)
	}
	b.WriteString(v)
	b.WriteByte(']')
}

// Resolved is what a path pattern means in the schema.
type Resolved struct {
	// Schema is the node the pattern ends at, or nil if wildcards make it
	// ambiguous.
	Schema *yang.Entry
	// State is true when every node the pattern can reach is config false.
	State bool
	// HasState is true when some node the pattern can reach is config false.
	HasState bool
}

// Resolve checks a pattern (elements already stripped of module prefixes)
// against the schema: every name must be a child of its parent, keys may
// only be given on lists and must be the list's keys, and concrete key
// values must parse as the keys' types. "*" and "..." are accepted; after
// "..." names are checked only to exist somewhere below.
func Resolve(pattern []*gpb.PathElem) (Resolved, error) {
	nodes := []*yang.Entry{RootSchema()}
	for i, pe := range pattern {
		name := pe.GetName()
		var next []*yang.Entry
		switch name {
		case "":
			return Resolved{}, fmt.Errorf("element %d has an empty name", i)
		case "...":
			for _, n := range nodes {
				next = append(next, descendants(n)...)
			}
		case "*":
			for _, n := range nodes {
				for _, c := range children(n) {
					next = append(next, c)
				}
			}
		default:
			for _, n := range nodes {
				if c := children(n)[name]; c != nil {
					next = append(next, c)
				}
			}
			if len(next) == 0 {
				return Resolved{}, fmt.Errorf("no schema node %q under %s", name, PathString(pattern[:i]))
			}
		}
		if err := checkKeys(pe, next); err != nil {
			return Resolved{}, err
		}
		nodes = next
		if name == "..." && i == len(pattern)-1 {
			nodes = leavesBelow(nodes)
		}
	}
	if len(nodes) == 0 {
		return Resolved{}, fmt.Errorf("path matches no schema node")
	}
	if err := CheckKeyValues(pattern); err != nil {
		return Resolved{}, err
	}
	r := Resolved{State: true}
	if len(nodes) == 1 {
		r.Schema = nodes[0]
	}
	for _, n := range nodes {
		s := IsState(n)
		r.State = r.State && s
		r.HasState = r.HasState || s || hasStateBelow(n)
	}
	return r, nil
}

// checkKeys verifies the keys of pe against the list nodes it may name.
func checkKeys(pe *gpb.PathElem, nodes []*yang.Entry) error {
	if len(pe.GetKey()) == 0 {
		return nil
	}
	for _, n := range nodes {
		if !n.IsList() {
			continue
		}
		names := strings.Fields(n.Key)
		ok := true
		for k := range pe.GetKey() {
			if !contains(names, k) {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if pe.GetName() != "*" && pe.GetName() != "..." {
			var have []string
			for k := range pe.GetKey() {
				have = append(have, k)
			}
			return fmt.Errorf("list %s has keys [%s], not %v", pe.GetName(), strings.Join(names, " "), have)
		}
	}
	return fmt.Errorf("%s is not a list: it takes no keys", pe.GetName())
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if x == y {
			return true
		}
	}
	return false
}

// children returns the data children of a schema node (choices and cases
// are not used by this model).
func children(e *yang.Entry) map[string]*yang.Entry {
	if e.IsLeaf() || e.IsLeafList() {
		return nil
	}
	return e.Dir
}

func descendants(e *yang.Entry) []*yang.Entry {
	out := []*yang.Entry{e}
	for _, c := range children(e) {
		out = append(out, descendants(c)...)
	}
	return out
}

func leavesBelow(nodes []*yang.Entry) []*yang.Entry {
	var out []*yang.Entry
	for _, n := range nodes {
		if n.IsLeaf() || n.IsLeafList() {
			out = append(out, n)
		}
	}
	return out
}

// IsState reports whether a schema node is config false (itself or through
// an ancestor).
func IsState(e *yang.Entry) bool {
	if e == RootSchema() {
		return false
	}
	return e.ReadOnly()
}

func hasStateBelow(e *yang.Entry) bool {
	for _, c := range children(e) {
		if IsState(c) || hasStateBelow(c) {
			return true
		}
	}
	return false
}

// MirrorsConfig reports whether a config-false leaf is the applied copy of a
// config leaf: it sits in a "state" container whose sibling "config"
// container has a leaf of the same name (OpenConfig's convention), or it is
// a list key. Operational data is state that does not mirror config.
func MirrorsConfig(leaf *yang.Entry) bool {
	p := leaf.Parent
	if p == nil {
		return false
	}
	if p.IsList() {
		return contains(strings.Fields(p.Key), leaf.Name)
	}
	if p.Name != "state" || p.Parent == nil {
		return false
	}
	cfg := p.Parent.Dir["config"]
	return cfg != nil && cfg.Dir[leaf.Name] != nil
}

// SchemaAt returns the schema node of a concrete path, or nil.
func SchemaAt(p []*gpb.PathElem) *yang.Entry {
	e := RootSchema()
	for _, pe := range p {
		name, err := StripModule(pe.GetName())
		if err != nil {
			return nil
		}
		if e = children(e)[name]; e == nil {
			return nil
		}
	}
	return e
}

// Covers reports whether the concrete path p is at or under a node the
// pattern selects ("*", "..." and missing or "*" keys as in Match).
func Covers(pattern, p []*gpb.PathElem) bool {
	if len(pattern) == 0 {
		return true
	}
	if pattern[0].GetName() == "..." {
		for i := 0; i <= len(p); i++ {
			if Covers(pattern[1:], p[i:]) {
				return true
			}
		}
		return false
	}
	if len(p) == 0 || !elemMatches(pattern[0], p[0]) {
		return false
	}
	return Covers(pattern[1:], p[1:])
}

// Overlaps reports whether the concrete path p is under a node the pattern
// selects or is an ancestor of one: deleting p deletes selected data.
func Overlaps(pattern, p []*gpb.PathElem) bool {
	if len(pattern) == 0 || len(p) == 0 {
		return true
	}
	if pattern[0].GetName() == "..." {
		return true
	}
	if !elemMatches(pattern[0], p[0]) {
		return false
	}
	return Overlaps(pattern[1:], p[1:])
}

func elemMatches(pat, e *gpb.PathElem) bool {
	if pat.GetName() != "*" && pat.GetName() != e.GetName() {
		return false
	}
	return keysMatch(pat.GetKey(), e.GetKey())
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

// CheckKeyValues verifies that every concrete list key value in a pattern
// (not "*") parses as the key's type: a number in range, a known enum
// name. Elements after a "*" or "..." element are not checked.
func CheckKeyValues(pattern []*gpb.PathElem) error {
	ti := rootType
	for _, pe := range pattern {
		if pe.GetName() == "*" || pe.GetName() == "..." {
			return nil
		}
		f := ti.byName[pe.GetName()]
		if f == nil || f.IsLeaf() {
			return nil
		}
		if f.Kind == KindList {
			for i, name := range f.keyNames {
				s, ok := pe.GetKey()[name]
				if !ok || s == "*" {
					continue
				}
				t := f.mapKey
				if t.Kind() == reflect.Struct {
					t = t.Field(i).Type
				}
				if _, err := ParseText(t, s); err != nil {
					return fmt.Errorf("%s: key %s=%q: %v", pe.GetName(), name, s, err)
				}
			}
		}
		ti = f.Elem
	}
	return nil
}

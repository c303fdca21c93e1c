package ytree

import (
	"fmt"
	"reflect"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"

	"github.com/spiagent/spiagent/gen"
)

// Module is the YANG module whose prefix may qualify path element names.
const Module = "spiagent-crypto"

// StripModule removes an optional "spiagent-crypto:" qualifier from a path
// element name and rejects any other module.
func StripModule(name string) (string, error) {
	mod, local, ok := strings.Cut(name, ":")
	if !ok {
		return name, nil
	}
	if mod != Module {
		return "", fmt.Errorf("unknown module %q in %q", mod, name)
	}
	return local, nil
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
// only be given on lists and must be the list's keys. "*" and "..." are
// accepted; after "..." names are checked only to exist somewhere below.
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
				return Resolved{}, fmt.Errorf("no schema node %q under %s", name, prefixString(pattern[:i]))
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
		s := isState(n)
		r.State = r.State && s
		r.HasState = r.HasState || s || hasStateBelow(n)
	}
	return r, nil
}

func prefixString(p []*gpb.PathElem) string { return PathString(p) }

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
			return fmt.Errorf("list %s has keys [%s], not %v", pe.GetName(), strings.Join(names, " "), keyNames(pe))
		}
	}
	return fmt.Errorf("%s is not a list: it takes no keys", pe.GetName())
}

func keyNames(pe *gpb.PathElem) []string {
	var out []string
	for k := range pe.GetKey() {
		out = append(out, k)
	}
	return out
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

// isState reports whether a schema node is config false (itself or through
// an ancestor).
func isState(e *yang.Entry) bool {
	if e == RootSchema() {
		return false
	}
	return e.ReadOnly()
}

func hasStateBelow(e *yang.Entry) bool {
	for _, c := range children(e) {
		if isState(c) || hasStateBelow(c) {
			return true
		}
	}
	return false
}

// IsState reports whether a schema node is config false.
func IsState(e *yang.Entry) bool { return isState(e) }

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

// CheckKeyValues verifies that every concrete list key value in a pattern
// (not "*") parses as the key's type: a number in range, a known enum
// name. Elements after a "*" or "..." element are not checked.
func CheckKeyValues(pattern []*gpb.PathElem) error {
	t := reflect.TypeOf(gen.Device{})
	for _, pe := range pattern {
		if pe.GetName() == "*" || pe.GetName() == "..." {
			return nil
		}
		f, ok := structFieldByPath(t, pe.GetName())
		if !ok {
			return nil
		}
		ft := f.Type
		switch ft.Kind() {
		case reflect.Map:
			if err := checkKeyTypes(ft.Key(), pe); err != nil {
				return fmt.Errorf("%s: %w", pe.GetName(), err)
			}
			t = ft.Elem().Elem()
		case reflect.Pointer:
			if ft.Elem().Kind() != reflect.Struct {
				return nil
			}
			t = ft.Elem()
		default:
			return nil
		}
	}
	return nil
}

func structFieldByPath(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("path") == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

func checkKeyTypes(kt reflect.Type, pe *gpb.PathElem) error {
	for k, v := range pe.GetKey() {
		if v == "*" {
			continue
		}
		typ := kt
		if kt.Kind() == reflect.Struct {
			f, ok := structFieldByPath(kt, k)
			if !ok {
				continue
			}
			typ = f.Type
		}
		if _, err := parseScalar(typ, v); err != nil {
			return fmt.Errorf("key %s=%q: %v", k, v, err)
		}
	}
	return nil
}

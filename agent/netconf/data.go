package netconf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/openconfig/goyang/pkg/yang"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// node is one node of a data tree bound to the generated schema: a
// container, a list entry (one node per entry), a leaf, or one value of a
// leaf-list (one node per value). Children are kept in canonical order: list
// keys first, then by name, list entries by key.
type node struct {
	e    *yang.Entry
	val  string  // leaf and leaf-list value, canonical text
	kids []*node // container and list entry children
	op   string  // edit-config operation attribute ("" = inherited)
}

// rootEntry is the schema of the root (gen.Device).
func rootEntry() *yang.Entry { return gen.SchemaTree["Device"] }

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

// moduleOf is the module defining e, from its schema path annotation.
func moduleOf(e *yang.Entry) string {
	for p := e; p != nil; p = p.Parent {
		if sp, ok := p.Annotation["schemapath"].(string); ok {
			if m, _, _ := strings.Cut(strings.TrimPrefix(sp, "/"), "/"); m != "" {
				return m
			}
		}
	}
	return cryptoModule
}

// nsOf is the XML namespace of e.
func nsOf(e *yang.Entry) string { return moduleNamespaces[moduleOf(e)] }

func isList(e *yang.Entry) bool       { return e.IsList() }
func isLeafish(e *yang.Entry) bool    { return e.IsLeaf() || e.IsLeafList() }
func keyNames(e *yang.Entry) []string { return strings.Fields(e.Key) }

// identity distinguishes siblings: the name, plus the keys of a list entry
// or the value of a leaf-list value.
func (n *node) identity() string {
	switch {
	case n.e.IsLeafList():
		return n.e.Name + "\x00" + n.val
	case isList(n.e):
		var b strings.Builder
		b.WriteString(n.e.Name)
		for _, k := range keyNames(n.e) {
			b.WriteByte(0)
			if kn := n.kid(k); kn != nil {
				b.WriteString(kn.val)
			}
		}
		return b.String()
	}
	return n.e.Name
}

// kid returns the first child named name.
func (n *node) kid(name string) *node {
	for _, k := range n.kids {
		if k.e.Name == name {
			return k
		}
	}
	return nil
}

// clone deep-copies n (without edit operations), children in canonical
// order.
func (n *node) clone() *node {
	c := &node{e: n.e, val: n.val}
	if len(n.kids) > 0 {
		c.kids = make([]*node, len(n.kids))
		for i, k := range n.kids {
			c.kids[i] = k.clone()
		}
		c.sortKids()
	}
	return c
}

// sortKids puts n's children in canonical order.
func (n *node) sortKids() {
	keyRank := map[string]int{}
	if isList(n.e) {
		for i, k := range keyNames(n.e) {
			keyRank[k] = i + 1
		}
	}
	sort.SliceStable(n.kids, func(i, j int) bool {
		a, b := n.kids[i], n.kids[j]
		ra, rb := keyRank[a.e.Name], keyRank[b.e.Name]
		if ra != rb {
			if ra == 0 || rb == 0 {
				return ra != 0
			}
			return ra < rb
		}
		if a.e.Name != b.e.Name {
			return a.e.Name < b.e.Name
		}
		switch {
		case a.e.IsLeafList():
			return lessValue(a.val, b.val)
		case isList(a.e):
			for _, k := range keyNames(a.e) {
				ka, kb := a.kid(k), b.kid(k)
				if ka == nil || kb == nil || ka.val == kb.val {
					continue
				}
				return lessValue(ka.val, kb.val)
			}
		}
		return false
	})
}

// lessValue orders numbers numerically and other values as strings.
func lessValue(a, b string) bool {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	if errA == nil && errB == nil {
		return x < y
	}
	return a < b
}

// leafType is the type of a leaf with leafrefs followed to their target.
func leafType(e *yang.Entry) *yang.YangType {
	t := e.Type
	for i := 0; t != nil && t.Kind == yang.Yleafref && i < 8; i++ {
		target := e.Find(t.Path)
		if target == nil {
			return t
		}
		e, t = target, target.Type
	}
	return t
}

// checkValue checks s against the type of leaf e and returns its canonical
// text.
func checkValue(e *yang.Entry, s string) (string, error) {
	return checkType(leafType(e), s)
}

func checkType(t *yang.YangType, s string) (string, error) {
	if t == nil {
		return s, nil
	}
	switch t.Kind {
	case yang.Yint8, yang.Yint16, yang.Yint32, yang.Yint64, yang.Yuint8, yang.Yuint16, yang.Yuint32, yang.Yuint64:
		return checkInt(t, s)
	case yang.Ybool:
		if s != "true" && s != "false" {
			return "", fmt.Errorf("%q is not a boolean (true or false)", s)
		}
	case yang.Yenum:
		if !t.Enum.IsDefined(s) {
			return "", fmt.Errorf("%q is not one of %s", s, strings.Join(t.Enum.Names(), ", "))
		}
	case yang.Yempty:
		if s != "" {
			return "", fmt.Errorf("a leaf of type empty has no value")
		}
	case yang.Ydecimal64:
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return "", fmt.Errorf("%q is not a decimal number", s)
		}
	case yang.Yunion:
		var msgs []string
		for _, m := range t.Type {
			v, err := checkType(m, s)
			if err == nil {
				return v, nil
			}
			msgs = append(msgs, err.Error())
		}
		return "", fmt.Errorf("%s", strings.Join(msgs, "; and "))
	}
	return s, nil
}

var intBits = map[yang.TypeKind]struct {
	bits   int
	signed bool
}{
	yang.Yint8: {8, true}, yang.Yint16: {16, true}, yang.Yint32: {32, true}, yang.Yint64: {64, true},
	yang.Yuint8: {8, false}, yang.Yuint16: {16, false}, yang.Yuint32: {32, false}, yang.Yuint64: {64, false},
}

func checkInt(t *yang.YangType, s string) (string, error) {
	ib := intBits[t.Kind]
	var num yang.Number
	if ib.signed {
		n, err := strconv.ParseInt(s, 10, ib.bits)
		if err != nil {
			return "", fmt.Errorf("%q is not an integer of type %s", s, t.Kind)
		}
		num, s = yang.FromInt(n), strconv.FormatInt(n, 10)
	} else {
		n, err := strconv.ParseUint(s, 10, ib.bits)
		if err != nil {
			return "", fmt.Errorf("%q is not an integer of type %s", s, t.Kind)
		}
		num, s = yang.FromUint(n), strconv.FormatUint(n, 10)
	}
	if len(t.Range) == 0 {
		return s, nil
	}
	for _, r := range t.Range {
		if !num.Less(r.Min) && !r.Max.Less(num) {
			return s, nil
		}
	}
	return "", fmt.Errorf("%s is out of range %s", s, t.Range)
}

// jsonValue is the RFC 7951 JSON value of a leaf's canonical text.
func jsonValue(e *yang.Entry, s string) any {
	return jsonOfType(leafType(e), s)
}

func jsonOfType(t *yang.YangType, s string) any {
	if t == nil {
		return s
	}
	switch t.Kind {
	case yang.Yint8, yang.Yint16, yang.Yint32, yang.Yuint8, yang.Yuint16, yang.Yuint32:
		return json.Number(s)
	case yang.Ybool:
		return s == "true"
	case yang.Yempty:
		return []any{nil}
	case yang.Yunion:
		for _, m := range t.Type {
			if _, err := checkType(m, s); err == nil {
				return jsonOfType(m, s)
			}
		}
	}
	return s
}

// toJSON renders the children of n (the root, a container or a list entry)
// as an RFC 7951 object; top-level members are module-qualified.
func toJSON(n *node, top bool) map[string]any {
	obj := make(map[string]any, len(n.kids))
	for _, k := range n.kids {
		name := k.e.Name
		if top {
			name = moduleOf(k.e) + ":" + name
		}
		switch {
		case k.e.IsLeafList():
			l, _ := obj[name].([]any)
			obj[name] = append(l, jsonValue(k.e, k.val))
		case k.e.IsLeaf():
			obj[name] = jsonValue(k.e, k.val)
		case isList(k.e):
			l, _ := obj[name].([]any)
			obj[name] = append(l, toJSON(k, false))
		default:
			obj[name] = toJSON(k, false)
		}
	}
	return obj
}

// marshalTree is the JSON_IETF text of a whole tree.
func marshalTree(root *node) ([]byte, error) {
	b, err := json.Marshal(toJSON(root, true))
	if err != nil {
		return nil, fmt.Errorf("netconf: encode JSON: %w", err)
	}
	return b, nil
}

// treeFromJSON builds a tree from RFC 7951 JSON of the whole tree.
func treeFromJSON(b []byte) (*node, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var obj map[string]any
	if err := d.Decode(&obj); err != nil {
		return nil, fmt.Errorf("netconf: decode JSON: %w", err)
	}
	return fromJSON(rootEntry(), obj), nil
}

// fromJSON builds the node of schema e from a decoded JSON object. Members
// the schema does not know are dropped.
func fromJSON(e *yang.Entry, obj map[string]any) *node {
	n := &node{e: e}
	for name, v := range obj {
		if i := strings.IndexByte(name, ':'); i >= 0 {
			name = name[i+1:]
		}
		ce := e.Dir[name]
		if ce == nil {
			continue
		}
		switch {
		case ce.IsLeafList():
			l, _ := v.([]any)
			for _, x := range l {
				n.kids = append(n.kids, &node{e: ce, val: scalarText(x)})
			}
		case ce.IsLeaf():
			n.kids = append(n.kids, &node{e: ce, val: scalarText(v)})
		case isList(ce):
			l, _ := v.([]any)
			for _, x := range l {
				if m, ok := x.(map[string]any); ok {
					n.kids = append(n.kids, fromJSON(ce, m))
				}
			}
		default:
			if m, ok := v.(map[string]any); ok {
				if c := fromJSON(ce, m); len(c.kids) > 0 {
					n.kids = append(n.kids, c)
				}
			}
		}
	}
	n.sortKids()
	return n
}

func scalarText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case json.Number:
		return x.String()
	case nil:
		return ""
	case []any: // type empty: [null]
		return ""
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// mergeTrees returns a tree with the data of both (a's leaves win); used to
// join config and state for <get>. Inputs are not modified.
func mergeTrees(a, b *node) *node {
	out := &node{e: a.e, val: a.val}
	idx := map[string]int{}
	for _, k := range a.kids {
		idx[k.identity()] = len(out.kids)
		out.kids = append(out.kids, k)
	}
	changed := false
	for _, k := range b.kids {
		i, ok := idx[k.identity()]
		if !ok {
			out.kids = append(out.kids, k)
			changed = true
			continue
		}
		if !isLeafish(k.e) {
			out.kids[i] = mergeTrees(out.kids[i], k)
		}
	}
	if changed {
		out.sortKids()
	}
	return out
}

// writeKids appends the XML of n's children. parentNS is the namespace in
// force; secrets are redacted when redact is set.
func writeKids(b *bytes.Buffer, n *node, parentNS string, redact bool) {
	for _, k := range n.kids {
		writeXML(b, k, parentNS, redact)
	}
}

func writeXML(b *bytes.Buffer, n *node, parentNS string, redact bool) {
	ns := nsOf(n.e)
	b.WriteByte('<')
	b.WriteString(n.e.Name)
	if ns != parentNS {
		b.WriteString(` xmlns="`)
		escape(b, ns)
		b.WriteByte('"')
	}
	b.WriteByte('>')
	if isLeafish(n.e) {
		if redact && ytree.IsSecret(n.e) {
			escape(b, redactedText)
		} else {
			escape(b, n.val)
		}
	} else {
		writeKids(b, n, ns, redact)
	}
	b.WriteString("</")
	b.WriteString(n.e.Name)
	b.WriteByte('>')
}

// redactedText replaces a secret in every reply.
const redactedText = "<redacted>"

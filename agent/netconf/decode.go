package netconf

import (
	"encoding/xml"
	"reflect"
	"strings"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// Namespaces of the protocol.
const (
	baseNS = "urn:ietf:params:xml:ns:netconf:base:1.0"
)

// Edit operations (RFC 6241 §7.2).
const (
	opMerge   = "merge"
	opReplace = "replace"
	opCreate  = "create"
	opDelete  = "delete"
	opRemove  = "remove"
	opNone    = "none"
)

// opSet is a set of edit operations, as bits.
type opSet uint8

func opBit(op string) opSet {
	switch op {
	case opMerge:
		return 1
	case opReplace:
		return 2
	case opCreate:
		return 4
	case opDelete:
		return 8
	case opRemove:
		return 16
	}
	return 0
}

func (s opSet) has(ops ...string) bool {
	for _, op := range ops {
		if s&opBit(op) != 0 {
			return true
		}
	}
	return false
}

func validOp(op string) bool { return opBit(op) != 0 }

// cfgTree is a decoded <config>: its data as a tree of generated structs
// (root), and the operation attributes of an edit-config, by node. Only
// nodes that carry an operation are in the maps, so an edit without any
// costs nothing here.
type cfgTree struct {
	root *gen.Device
	// ops of containers and list entries, by struct pointer
	structOps map[uintptr]string
	// ops of leaves and leaf-list values; a leaf deleted or removed has an
	// op here and no value in its struct
	leafOps map[leafRef]string
	// the operations given at or below a container or list entry
	below map[uintptr]opSet
}

// leafRef names a leaf (idx -1) or one value of a leaf-list in a decoded
// struct.
type leafRef struct {
	parent uintptr
	field  int
	idx    int
}

func (c *cfgTree) structOp(v reflect.Value) (string, bool) {
	op, ok := c.structOps[v.Pointer()]
	return op, ok
}

func (c *cfgTree) leafOp(parent reflect.Value, f *ytree.Field, idx int) (string, bool) {
	op, ok := c.leafOps[leafRef{parent.Pointer(), f.Index, idx}]
	return op, ok
}

func (c *cfgTree) opsBelow(v reflect.Value) opSet { return c.below[v.Pointer()] }

// xpathAt is the location of a node being decoded, rendered as an XPath
// (error-path) only for an error.
type xpathAt struct {
	up    *xpathAt
	name  string
	list  *ytree.Field  // set for a list entry:
	entry reflect.Value // its struct, whose key leaves read so far give the predicates
}

func (x *xpathAt) String() string {
	if x == nil {
		return ""
	}
	s := x.up.String() + seg(x.name)
	if x.list == nil {
		return s
	}
	var b strings.Builder
	b.WriteString(s)
	for _, kf := range x.list.Elem.KeyFields() {
		if kv := x.entry.Elem().Field(kf.Index); isSet(kv) {
			writePredicate(&b, kf.Name, ytree.FormatText(kv))
		}
	}
	return b.String()
}

// frame is a container or list entry being decoded.
type frame struct {
	t    *ytree.Type
	v    reflect.Value // the struct being filled
	at   *xpathAt
	op   string // the operation in force (explicit or inherited)
	seen []bool // children given, by index in t.Fields order of Field.Index
	ops  opSet  // operations given at or below
	// leaf-list values given, by field index (duplicates are refused)
	values map[int]map[string]bool
}

// cfgDecoder decodes the content of a <config> element into a cfgTree.
type cfgDecoder struct {
	p      *parser
	c      *cfgTree
	edit   bool
	frames []*frame
}

// decodeConfig decodes the content of the <config> element whose start
// tag the parser just read, up to and including its end tag. A problem
// with the data is an rpc-error (and the rest of the element is skipped);
// a problem with the XML, or with the memory it needs, is an error.
func (p *parser) decodeConfig(edit bool) (*cfgTree, *rpcError, error) {
	depth := p.depth
	c := &cfgTree{root: &gen.Device{}}
	dec := &cfgDecoder{p: p, c: c, edit: edit}
	rerr, err := dec.body(ytree.Root(), reflect.ValueOf(c.root), nil, "")
	if err != nil {
		return nil, nil, err
	}
	if rerr != nil {
		if err := p.skip(depth); err != nil {
			return nil, nil, err
		}
		return nil, rerr, nil
	}
	return c, nil, nil
}

// body decodes the children of the struct v (type t) up to the end tag of
// its element.
//
// In a list entry whose keys have not all been given yet, the first error
// in its other children waits: the rest of the entry is read for its keys
// only, so that a missing key is reported first, as the entry cannot even
// be named without it.
func (dec *cfgDecoder) body(t *ytree.Type, v reflect.Value, at *xpathAt, op string) (*rpcError, error) {
	fr := &frame{t: t, v: v, at: at, op: op}
	if own, ok := dec.c.structOp(v); ok {
		fr.ops = opBit(own)
	}
	dec.frames = append(dec.frames, fr)
	defer func() { dec.frames = dec.frames[:len(dec.frames)-1] }()
	depth := dec.p.depth
	var pending *rpcError
	for {
		tok, err := dec.p.token()
		if err != nil {
			return nil, unexpectedEOF(err)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			if pending != nil && !isKey(t, tk.Name.Local) {
				if err := dec.p.skip(depth + 1); err != nil {
					return nil, err
				}
				continue
			}
			rerr, err := dec.child(fr, tk)
			if err != nil {
				return nil, err
			}
			if rerr == nil {
				continue
			}
			if pending != nil || keysGiven(t, v) {
				return rerr, nil
			}
			pending = rerr
			if err := dec.p.skip(depth + 1); err != nil {
				return nil, err
			}
		case xml.EndElement:
			if pending != nil {
				return pending, nil
			}
			return dec.finish(fr), nil
		}
	}
}

// isKey reports whether name is a key leaf of t (a list entry type).
func isKey(t *ytree.Type, name string) bool {
	for _, kf := range t.KeyFields() {
		if kf.Name == name {
			return true
		}
	}
	return false
}

// keysGiven reports whether every key leaf of the struct v (type t) is
// set; true for a container.
func keysGiven(t *ytree.Type, v reflect.Value) bool {
	for _, kf := range t.KeyFields() {
		if !isSet(v.Elem().Field(kf.Index)) {
			return false
		}
	}
	return true
}

// finish checks what needs the whole struct: its leaf-lists, and records
// the operations given inside it.
func (dec *cfgDecoder) finish(fr *frame) *rpcError {
	for idx := range fr.values {
		f := fieldByIndex(fr.t, idx)
		fv := fr.v.Elem().Field(idx)
		at := &xpathAt{up: fr.at, name: f.Name}
		if ps := ytree.LeafProblems(f, fv, at.String); len(ps) > 0 {
			return newErr("application", "invalid-value", "%s: %s", f.Name, ps[0].Reason).at(at.String()).info("bad-element", f.Name)
		}
	}
	if fr.ops != 0 {
		if dec.c.below == nil {
			dec.c.below = map[uintptr]opSet{}
		}
		dec.c.below[fr.v.Pointer()] = fr.ops
	}
	return nil
}

func fieldByIndex(t *ytree.Type, idx int) *ytree.Field {
	for _, f := range t.Fields {
		if f.Index == idx {
			return f
		}
	}
	return nil
}

// recordOp notes an operation given on a node inside the current frames.
func (dec *cfgDecoder) recordOp(op string) {
	for _, fr := range dec.frames {
		fr.ops |= opBit(op)
	}
}

// seen marks child f of fr given and reports whether it was already.
func (fr *frame) given(f *ytree.Field) bool {
	if fr.seen == nil {
		fr.seen = make([]bool, fr.v.Elem().NumField())
	}
	was := fr.seen[f.Index]
	fr.seen[f.Index] = true
	return was
}

// child decodes one child element of the struct of frame fr.
func (dec *cfgDecoder) child(fr *frame, start xml.StartElement) (*rpcError, error) {
	name := start.Name.Local
	f := fr.t.Field(name)
	at := &xpathAt{up: fr.at, name: ytree.Clip(name)}
	top := fr.at == nil
	if f == nil || (start.Name.Space != nsOf(f) && !(start.Name.Space == "" && !top)) {
		return newErr("application", "unknown-element", "unknown element %q in namespace %q", ytree.Clip(name), ytree.Clip(start.Name.Space)).at(at.String()).info("bad-element", ytree.Clip(name)), nil
	}
	if f.State {
		return newErr("application", "invalid-value", "%s is state data (config false) and cannot be configured", name).at(at.String()).info("bad-element", name), nil
	}
	op, explicit := operationAttr(start)
	if explicit {
		if !dec.edit || !validOp(op) {
			return newErr("protocol", "bad-attribute", "bad operation attribute %q on %s", ytree.Clip(op), name).at(at.String()).info("bad-attribute", "operation").info("bad-element", name), nil
		}
		dec.recordOp(op)
	}
	eff := fr.op
	if explicit {
		eff = op
	}
	switch f.Kind {
	case ytree.KindLeaf, ytree.KindLeafList:
		return dec.leaf(fr, f, at, eff, op, explicit)
	case ytree.KindContainer:
		if fr.given(f) {
			return dupErr("container", f.Name, at), nil
		}
		if err := dec.p.charge(int(f.Elem.Go.Size()) + structCost); err != nil {
			return nil, err
		}
		cv := f.Elem.New()
		fr.v.Elem().Field(f.Index).Set(cv)
		dec.setStructOp(cv, op, explicit)
		return dec.body(f.Elem, cv, at, eff)
	}
	return dec.entry(fr, f, at, eff, op, explicit)
}

func (dec *cfgDecoder) setStructOp(v reflect.Value, op string, explicit bool) {
	if !explicit {
		return
	}
	if dec.c.structOps == nil {
		dec.c.structOps = map[uintptr]string{}
	}
	dec.c.structOps[v.Pointer()] = op
}

// entry decodes one list entry and adds it to its list, by its keys.
func (dec *cfgDecoder) entry(fr *frame, f *ytree.Field, at *xpathAt, eff, op string, explicit bool) (*rpcError, error) {
	if err := dec.p.charge(int(f.Elem.Go.Size()) + structCost + entryCost + int(f.MapKey().Size())); err != nil {
		return nil, err
	}
	ev := f.Elem.New()
	at.list, at.entry = f, ev
	dec.setStructOp(ev, op, explicit)
	rerr, err := dec.body(f.Elem, ev, at, eff)
	if err != nil {
		return nil, err
	}
	for _, kf := range f.Elem.KeyFields() {
		if !isSet(ev.Elem().Field(kf.Index)) {
			path := at.up.String() + seg(f.Name)
			return newErr("protocol", "missing-element", "list %s entry without its key %s", f.Name, kf.Name).at(path).info("bad-element", kf.Name), nil
		}
	}
	if rerr != nil {
		return rerr, nil
	}
	k, err := f.KeyOf(ev)
	if err != nil {
		return valueErr(f, at, err.Error()), nil
	}
	if err := f.CheckEntryKeys(ev, k); err != nil {
		return valueErr(f, at, err.Error()), nil
	}
	if ct := f.Elem.Field("config"); ct != nil && ev.Elem().Field(ct.Index).IsNil() {
		// FillKeys makes the entry's config container, with its keys.
		if err := dec.p.charge(int(ct.Elem.Go.Size()) + structCost + len(f.KeyNames())*(leafCost+int(f.MapKey().Size()))); err != nil {
			return nil, err
		}
	}
	f.FillKeys(ev, k, true)
	m := fr.v.Elem().Field(f.Index)
	if m.IsNil() {
		m.Set(reflect.MakeMap(m.Type()))
	}
	if m.MapIndex(k).IsValid() {
		return dupErr("list entry", f.Name, at), nil
	}
	m.SetMapIndex(k, ev)
	return nil, nil
}

// leaf decodes a leaf or one value of a leaf-list.
func (dec *cfgDecoder) leaf(fr *frame, f *ytree.Field, at *xpathAt, eff, op string, explicit bool) (*rpcError, error) {
	text, rerr, err := dec.leafText(f, at)
	if rerr != nil || err != nil {
		return rerr, err
	}
	fv := fr.v.Elem().Field(f.Index)
	idx := -1
	if f.Kind == ytree.KindLeafList {
		idx = fv.Len()
	} else if fr.given(f) {
		return dupErr("leaf", f.Name, at), nil
	}
	if explicit {
		if dec.c.leafOps == nil {
			dec.c.leafOps = map[leafRef]string{}
		}
		dec.c.leafOps[leafRef{fr.v.Pointer(), f.Index, idx}] = op
	}
	// Deleting or removing a leaf names it; its text, if any, is not
	// looked at (never compared with the value: see secrets in README).
	// A list entry's keys name the entry: they are always read.
	if f.Kind == ytree.KindLeaf && (eff == opDelete || eff == opRemove) && !isKey(fr.t, f.Name) {
		return nil, nil
	}
	if !isStringLeaf(fv.Type()) {
		text = strings.TrimSpace(text)
	}
	if err := dec.p.charge(leafCost + len(text)); err != nil {
		return nil, err
	}
	if f.Kind == ytree.KindLeafList {
		if fr.values == nil {
			fr.values = map[int]map[string]bool{}
		}
		vals := fr.values[f.Index]
		if vals == nil {
			vals = map[string]bool{}
			fr.values[f.Index] = vals
		}
		if vals[text] {
			return dupErr("leaf-list value", f.Name, at), nil
		}
		if err := dec.p.charge(entryCost + len(text)); err != nil {
			return nil, err
		}
		vals[text] = true
	}
	if err := ytree.SetText(f, fr.v, text); err != nil {
		return valueErr(f, at, strings.TrimPrefix(err.Error(), `leaf "`+f.Name+`": `)), nil
	}
	if f.Kind == ytree.KindLeaf {
		if ps := ytree.LeafProblems(f, fv, at.String); len(ps) > 0 {
			return valueErr(f, at, ps[0].Reason), nil
		}
	}
	return nil, nil
}

func valueErr(f *ytree.Field, at *xpathAt, msg string) *rpcError {
	return newErr("application", "invalid-value", "%s: %s", f.Name, clipMsg(msg)).at(at.String()).info("bad-element", f.Name)
}

// dupErr refuses a node given twice (RFC 7950 §7.6.7, §7.7.8, §7.8.7: a
// leaf, a container, a list entry and a leaf-list value exist once).
func dupErr(what, name string, at *xpathAt) *rpcError {
	return newErr("application", "bad-element", "%s %s given twice", what, name).at(at.String()).info("bad-element", name)
}

// isStringLeaf reports whether a leaf field holds a string (its text is
// taken as it is; other types' text may have white space around it).
func isStringLeaf(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t.Kind() == reflect.String && !t.Implements(goEnum)
}

// leafText reads a leaf's text up to its end tag; an element inside a
// leaf is an error.
func (dec *cfgDecoder) leafText(f *ytree.Field, at *xpathAt) (string, *rpcError, error) {
	var b []byte
	for {
		tok, err := dec.p.token()
		if err != nil {
			return "", nil, unexpectedEOF(err)
		}
		switch tk := tok.(type) {
		case xml.CharData:
			if err := dec.p.charge(len(tk)); err != nil {
				return "", nil, err
			}
			b = append(b, tk...)
		case xml.StartElement:
			bad := ytree.Clip(tk.Name.Local)
			return "", newErr("application", "unknown-element", "unknown element %q inside leaf %s", bad, f.Name).at(at.String()+seg(bad)).info("bad-element", bad), nil
		case xml.EndElement:
			return string(b), nil, nil
		}
	}
}

// operationAttr returns the operation attribute of an element: in the base
// namespace (nc:operation) or, as many hand-written requests have it,
// unqualified.
func operationAttr(start xml.StartElement) (string, bool) {
	for _, a := range start.Attr {
		if a.Name.Local == "operation" && a.Name.Space == baseNS {
			return a.Value, true
		}
	}
	for _, a := range start.Attr {
		if a.Name.Local == "operation" && a.Name.Space == "" {
			return a.Value, true
		}
	}
	return "", false
}

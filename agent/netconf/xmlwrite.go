package netconf

import (
	"bytes"
	"encoding/xml"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// xmlWriter renders a tree of generated structs as XML straight from the
// schema tables: children in canonical order (xmlOrder: list keys first,
// then by name; entries by key, see sortEntries; leaf-list values in their
// order, the model's leaf-lists being ordered-by user), a namespace
// declaration where the module changes, empty containers left out, and
// secrets written as "<redacted>" when redact is set.
type xmlWriter struct {
	b      []byte
	redact bool
	orders *listOrders // nil: sort every list
}

// redactedText replaces a secret in every reply.
const redactedText = ytree.Redacted

// kids appends the XML of the children of the struct v (of type t);
// parentNS is the namespace in force.
func (x *xmlWriter) kids(t *ytree.Type, v reflect.Value, parentNS string) {
	for _, f := range xmlOrder(t) {
		fv := v.Elem().Field(f.Index)
		switch f.Kind {
		case ytree.KindLeaf:
			if isSet(fv) {
				x.leaf(f, fv, parentNS)
			}
		case ytree.KindLeafList:
			for i := 0; i < fv.Len(); i++ {
				x.leaf(f, fv.Index(i), parentNS)
			}
		case ytree.KindContainer:
			if fv.IsNil() {
				continue
			}
			mark := len(x.b)
			ns := x.open(f, parentNS)
			n := len(x.b)
			x.kids(f.Elem, fv, ns)
			if len(x.b) == n {
				x.b = x.b[:mark]
				continue
			}
			x.close(f)
		case ytree.KindList:
			if fv.Len() == 0 {
				continue
			}
			for _, k := range x.orders.sorted(f, fv) {
				ns := x.open(f, parentNS)
				x.kids(f.Elem, fv.MapIndex(k), ns)
				x.close(f)
			}
		}
	}
}

// leaf appends one leaf (or one leaf-list value).
func (x *xmlWriter) leaf(f *ytree.Field, v reflect.Value, parentNS string) {
	x.open(f, parentNS)
	if x.redact && f.Secret {
		x.text(redactedText)
	} else {
		x.value(v)
	}
	x.close(f)
}

// value appends a leaf value's text (as ytree.FormatText gives it),
// numbers without an intermediate string.
func (x *xmlWriter) value(v reflect.Value) {
	if v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.String:
		x.text(v.String())
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		x.b = strconv.AppendUint(x.b, v.Uint(), 10)
	case reflect.Int8, reflect.Int16, reflect.Int32:
		x.b = strconv.AppendInt(x.b, v.Int(), 10)
	case reflect.Bool:
		x.b = strconv.AppendBool(x.b, v.Bool())
	default: // enumerations (int64) and the rest
		x.text(ytree.FormatText(v))
	}
}

// open appends f's start tag and returns the namespace in force inside.
func (x *xmlWriter) open(f *ytree.Field, parentNS string) string {
	ns := nsOf(f)
	x.b = append(x.b, '<')
	x.b = append(x.b, f.Name...)
	if ns != parentNS {
		x.b = append(x.b, ` xmlns="`...)
		x.text(ns)
		x.b = append(x.b, '"')
	}
	x.b = append(x.b, '>')
	return ns
}

func (x *xmlWriter) close(f *ytree.Field) {
	x.b = append(x.b, '<', '/')
	x.b = append(x.b, f.Name...)
	x.b = append(x.b, '>')
}

// text appends s escaped (as encoding/xml escapes it); the common case,
// nothing to escape, is a copy.
func (x *xmlWriter) text(s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x80 || c == '&' || c == '<' || c == '>' || c == '"' || c == '\'' {
			var buf bytes.Buffer
			_ = xml.EscapeText(&buf, []byte(s))
			x.b = append(x.b, buf.Bytes()...)
			return
		}
	}
	x.b = append(x.b, s...)
}

// escape appends s with XML special characters escaped.
func escape(b *bytes.Buffer, s string) {
	_ = xml.EscapeText(b, []byte(s))
}

// renderData renders the children of a data tree's root (*gen.Device or
// nil) as XML under an element in namespace parentNS.
func renderData(b []byte, root reflect.Value, parentNS string, redact bool) []byte {
	x := &xmlWriter{b: b, redact: redact}
	if root.IsValid() && !root.IsNil() {
		x.kids(ytree.Root(), root, parentNS)
	}
	return x.b
}

// renderDatastore is renderData (redacted) for a datastore's tree (the
// running snapshot or the candidate, immutable): the order of its lists'
// entries is remembered for the next reply.
func renderDatastore(b []byte, root *gen.Device, parentNS string) []byte {
	if root == nil {
		return b
	}
	x := &xmlWriter{b: b, redact: true, orders: datastoreOrders.forTree(root)}
	x.kids(ytree.Root(), reflect.ValueOf(root), parentNS)
	return x.b
}

// listOrders remembers the sorted keys of the list maps of one immutable
// tree, by map: sorting 10,000 keys costs more than writing their entries.
// It holds the tree, so the maps it names stay alive and no other map can
// take their address. The trees cached with it are looked in too (a new
// snapshot shares most lists with the one before): a map found there at
// the address of one of this tree's maps is that map, both trees being
// alive (held by the cache) while it is looked up.
type listOrders struct {
	root *gen.Device
	keys map[uintptr][]reflect.Value
}

// orderCache keeps the list orders of the last few datastore trees.
type orderCache struct {
	mu    sync.Mutex
	trees []*listOrders // most recent first
}

// cachedTrees is how many trees' orders are kept (running and candidate,
// and the one before each).
const cachedTrees = 4

var datastoreOrders orderCache

func (c *orderCache) forTree(root *gen.Device) *listOrders {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, t := range c.trees {
		if t.root == root {
			copy(c.trees[1:i+1], c.trees[:i])
			c.trees[0] = t
			return t
		}
	}
	t := &listOrders{root: root, keys: map[uintptr][]reflect.Value{}}
	c.trees = append([]*listOrders{t}, c.trees...)
	if len(c.trees) > cachedTrees {
		c.trees = c.trees[:cachedTrees]
	}
	return t
}

// sorted returns the keys of list map m (of list f) in output order.
func (o *listOrders) sorted(f *ytree.Field, m reflect.Value) []reflect.Value {
	if o == nil || m.Len() < 64 {
		return sortEntries(f, m)
	}
	c := &datastoreOrders
	p := m.Pointer()
	c.mu.Lock()
	keys, ok := o.keys[p]
	for _, t := range c.trees {
		if ok {
			break
		}
		keys, ok = t.keys[p]
	}
	c.mu.Unlock()
	if !ok {
		keys = sortEntries(f, m)
	}
	c.mu.Lock()
	o.keys[p] = keys
	c.mu.Unlock()
	return keys
}

// replyHint is the size of the last data reply: the next one starts with
// that much room, so that a big reply is not copied as it grows.
var replyHint atomic.Int64

// replyBuffer returns an empty buffer for a data reply.
func replyBuffer() []byte {
	return make([]byte, 0, max(4096, replyHint.Load()*9/8))
}

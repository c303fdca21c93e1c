package netconf

import (
	"strings"

	"github.com/openconfig/goyang/pkg/yang"

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

func validOp(op string) bool {
	switch op {
	case opMerge, opReplace, opCreate, opDelete, opRemove:
		return true
	}
	return false
}

// decodeConfig decodes the children of a <config> element (data of the
// whole tree) into a tree. With edit set, operation attributes are kept and
// leaves of deleted nodes may be empty.
func decodeConfig(x *elem, edit bool) (*node, *rpcError) {
	root := &node{e: rootEntry()}
	if err := decodeKids(root, x, "", edit, ""); err != nil {
		return nil, err
	}
	return root, nil
}

// seg is the XPath step of element name under the data module's prefix.
func seg(name string) string { return "/" + xpathPrefix + ":" + name }

func decodeKids(parent *node, x *elem, path string, edit bool, inherited string) *rpcError {
	for _, k := range x.Kids {
		n, err := decodeElem(parent.e, k, path, edit, inherited)
		if err != nil {
			return err
		}
		parent.kids = append(parent.kids, n)
	}
	return nil
}

func decodeElem(pe *yang.Entry, k *elem, path string, edit bool, inherited string) (*node, *rpcError) {
	name := k.Name.Local
	ce := pe.Dir[name]
	cpath := path + seg(name)
	if ce == nil || (k.Name.Space != nsOf(ce) && !(k.Name.Space == "" && pe.Parent != nil)) {
		return nil, newErr("application", "unknown-element", "unknown element %q in namespace %q", name, k.Name.Space).at(cpath).info("bad-element", name)
	}
	if ce.ReadOnly() {
		return nil, newErr("application", "invalid-value", "%s is state data (config false) and cannot be configured", name).at(cpath).info("bad-element", name)
	}
	n := &node{e: ce}
	op, ok := k.attr(baseNS, "operation")
	if !ok {
		// Unqualified, as many hand-written requests have it.
		op, ok = k.attr("", "operation")
	}
	if ok {
		if !edit || !validOp(op) {
			return nil, newErr("protocol", "bad-attribute", "bad operation attribute %q on %s", op, name).at(cpath).info("bad-attribute", "operation").info("bad-element", name)
		}
		n.op = op
	}
	eff := n.op
	if eff == "" {
		eff = inherited
	}
	if isLeafish(ce) {
		if len(k.Kids) > 0 {
			bad := k.Kids[0].Name.Local
			return nil, newErr("application", "unknown-element", "unknown element %q inside leaf %s", bad, name).at(cpath+seg(bad)).info("bad-element", bad)
		}
		text := k.text()
		if edit && (eff == opDelete || eff == opRemove) && text == "" && ce.IsLeaf() {
			return n, nil
		}
		v, err := checkValue(ce, text)
		if err != nil {
			msg := err.Error()
			if ytree.IsSecret(ce) {
				msg = "invalid value " + redactedText
			}
			return nil, newErr("application", "invalid-value", "%s: %s", name, msg).at(cpath).info("bad-element", name)
		}
		n.val = v
		return n, nil
	}
	if isList(ce) {
		var preds strings.Builder
		for _, key := range keyNames(ce) {
			ke := k.kid(k.Name.Space, key)
			if ke == nil {
				ke = k.kid("", key)
			}
			if ke == nil {
				return nil, newErr("protocol", "missing-element", "list %s entry without its key %s", name, key).at(cpath).info("bad-element", key)
			}
			preds.WriteString("[" + xpathPrefix + ":" + key + "='" + ke.text() + "']")
		}
		cpath += preds.String()
	}
	if err := decodeKids(n, k, cpath, edit, eff); err != nil {
		return nil, err
	}
	return n, nil
}

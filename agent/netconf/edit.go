package netconf

import (
	"strings"
)

// Error options of edit-config.
const (
	stopOnError     = "stop-on-error"
	continueOnError = "continue-on-error"
	rollbackOnError = "rollback-on-error"
)

// editor applies an edit tree (decoded <config> with operations) to a data
// tree (RFC 6241 §7.2), collecting errors.
type editor struct {
	errOpt string
	errs   rpcErrors
}

// fail records an error and says whether to stop.
func (ed *editor) fail(e *rpcError) bool {
	ed.errs = append(ed.errs, e)
	return ed.errOpt != continueOnError
}

// own returns a private shallow copy of n: its own node and kids slice,
// sharing the children (trees are copy-on-write: a shared node is never
// modified).
func own(n *node) *node {
	c := &node{e: n.e, val: n.val}
	if len(n.kids) > 0 {
		c.kids = append(make([]*node, 0, len(n.kids)+1), n.kids...)
	}
	return c
}

// apply applies the children of edit to target (same schema node, a
// private copy made with own); it returns true when processing must stop.
func (ed *editor) apply(target, edit *node, inherited, path string) bool {
	idx := make(map[string]int, len(target.kids))
	for i, k := range target.kids {
		idx[k.identity()] = i
	}
	removed, added := false, false
	defer func() {
		if removed {
			kids := target.kids[:0]
			for _, k := range target.kids {
				if k != nil {
					kids = append(kids, k)
				}
			}
			target.kids = kids
		}
		if added {
			target.sortKids()
		}
	}()
	for _, ek := range edit.kids {
		op := ek.op
		if op == "" {
			op = inherited
		}
		id := ek.identity()
		i, exists := idx[id]
		cpath := path + stepOf(ek)
		remove := func() {
			target.kids[i] = nil
			delete(idx, id)
			removed = true
		}
		add := func(n *node) *node {
			idx[id] = len(target.kids)
			target.kids = append(target.kids, n)
			added = true
			return n
		}
		switch op {
		case opMerge, opNone:
			if isLeafish(ek.e) {
				if op == opNone {
					continue
				}
				if exists {
					target.kids[i] = &node{e: ek.e, val: ek.val}
				} else {
					add(&node{e: ek.e, val: ek.val})
				}
				continue
			}
			var m *node
			if exists {
				m = own(target.kids[i])
				target.kids[i] = m
			} else if op == opMerge || hasOp(ek, opMerge, opReplace, opCreate) {
				m = add(keysOf(ek))
			} else if hasOp(ek, opDelete) {
				if ed.fail(newErr("application", "data-missing", "%s does not exist", ek.e.Name).at(cpath)) {
					return true
				}
				continue
			} else {
				continue
			}
			if ed.apply(m, ek, op, cpath) {
				return true
			}
		case opReplace:
			if exists {
				target.kids[i] = ek.clone()
			} else {
				add(ek.clone())
			}
		case opCreate:
			if exists {
				if ed.fail(newErr("application", "data-exists", "%s already exists", ek.e.Name).at(cpath)) {
					return true
				}
				continue
			}
			add(ek.clone())
		case opDelete:
			if !exists {
				if ed.fail(newErr("application", "data-missing", "%s does not exist", ek.e.Name).at(cpath)) {
					return true
				}
				continue
			}
			remove()
		case opRemove:
			if exists {
				remove()
			}
		}
	}
	return false
}

// hasOp reports whether n or a descendant carries one of ops.
func hasOp(n *node, ops ...string) bool {
	for _, o := range ops {
		if n.op == o {
			return true
		}
	}
	for _, k := range n.kids {
		if hasOp(k, ops...) {
			return true
		}
	}
	return false
}

// stepOf is the XPath step of n, with key predicates for a list entry.
func stepOf(n *node) string {
	s := seg(n.e.Name)
	if isList(n.e) {
		var b strings.Builder
		b.WriteString(s)
		for _, k := range keyNames(n.e) {
			if kn := n.kid(k); kn != nil {
				b.WriteString("[" + xpathPrefix + ":" + k + "='" + kn.val + "']")
			}
		}
		return b.String()
	}
	return s
}

// keysOf is a new node of ek's schema holding only ek's list keys.
func keysOf(ek *node) *node {
	n := &node{e: ek.e}
	if isList(ek.e) {
		for _, k := range keyNames(ek.e) {
			if kn := ek.kid(k); kn != nil {
				n.kids = append(n.kids, &node{e: kn.e, val: kn.val})
			}
		}
	}
	return n
}

package netconf

// Subtree filtering (RFC 6241 §6): namespace selection, containment nodes,
// selection nodes and content-match nodes. Attribute matching is not
// supported (the model has no attributes).

// filterTree returns the part of root selected by the children of a
// <filter type="subtree"> element. A filter with no children selects
// nothing (§6.4.2).
func filterTree(root *node, f *elem) *node {
	out := &node{e: root.e}
	if len(f.Kids) == 0 {
		return out
	}
	out.kids, _ = filterKids(root, f.Kids)
	return out
}

// filterKids returns the children of d selected by the sibling filter
// elements fs, and whether d matched at all (its content-match nodes).
func filterKids(d *node, fs []*elem) ([]*node, bool) {
	var content, other []*elem
	for _, f := range fs {
		if len(f.Kids) == 0 && f.text() != "" {
			content = append(content, f)
		} else {
			other = append(other, f)
		}
	}
	var out []*node
	for _, c := range content {
		m := matchContent(d, c)
		if len(m) == 0 {
			return nil, false
		}
		out = append(out, m...)
	}
	if len(other) == 0 {
		return d.kids, true
	}
	idx := map[string]int{}
	put := func(n *node) {
		id := n.identity()
		if i, ok := idx[id]; ok {
			if !isLeafish(n.e) && out[i] != n {
				out[i] = mergeTrees(out[i], n)
			}
			return
		}
		idx[id] = len(out)
		out = append(out, n)
	}
	for i, n := range out {
		idx[n.identity()] = i
	}
	for _, f := range other {
		for _, ch := range d.kids {
			if !filterNames(f, ch) {
				continue
			}
			if len(f.Kids) == 0 || isLeafish(ch.e) {
				put(ch)
				continue
			}
			sub, ok := filterKids(ch, f.Kids)
			if !ok || len(sub) == 0 {
				continue
			}
			put(withKeys(ch, sub))
		}
	}
	return out, true
}

// filterNames reports whether filter element f names data node n (an
// element without a namespace matches any).
func filterNames(f *elem, n *node) bool {
	return f.Name.Local == n.e.Name && (f.Name.Space == "" || f.Name.Space == nsOf(n.e))
}

// matchContent returns the leaves of d matching content-match node c.
func matchContent(d *node, c *elem) []*node {
	var out []*node
	for _, ch := range d.kids {
		if !filterNames(c, ch) || !isLeafish(ch.e) {
			continue
		}
		want, err := checkValue(ch.e, c.text())
		if err != nil {
			want = c.text()
		}
		if ch.val == want {
			out = append(out, ch)
		}
	}
	return out
}

// withKeys is a copy of list entry or container n holding kids, plus the
// list keys if kids lacks them.
func withKeys(n *node, kids []*node) *node {
	out := &node{e: n.e}
	if isList(n.e) {
		for _, k := range keyNames(n.e) {
			kn := n.kid(k)
			if kn == nil {
				continue
			}
			found := false
			for _, x := range kids {
				if x == kn {
					found = true
				}
			}
			if !found {
				out.kids = append(out.kids, kn)
			}
		}
	}
	out.kids = append(out.kids, kids...)
	out.sortKids()
	return out
}

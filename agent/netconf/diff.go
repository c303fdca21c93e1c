package netconf

import (
	"encoding/json"
	"fmt"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/spiagent/spiagent/store"
)

// diffOps returns the store operations that turn tree a into tree b.
// Trees are copy-on-write, so subtrees the two share are skipped at once: a
// one-leaf edit of a 10k config is a one-op transaction.
func diffOps(a, b *node) ([]store.Op, error) {
	var ops []store.Op
	if err := diffNode(a, b, nil, &ops); err != nil {
		return nil, err
	}
	return ops, nil
}

func diffNode(a, b *node, path []*gpb.PathElem, ops *[]store.Op) error {
	if a == b {
		return nil
	}
	// Children shared by both trees are unchanged: only the others are
	// compared by identity (no key strings built for 10k shared entries).
	inA := make(map[*node]struct{}, len(a.kids))
	for _, k := range a.kids {
		inA[k] = struct{}{}
	}
	inB := make(map[*node]struct{}, len(b.kids))
	for _, k := range b.kids {
		inB[k] = struct{}{}
	}
	changedLL := map[string]bool{}
	am := map[string]*node{}
	var gone []*node
	for _, k := range a.kids {
		if _, shared := inB[k]; shared {
			continue
		}
		if k.e.IsLeafList() {
			changedLL[k.e.Name] = true
			continue
		}
		am[k.identity()] = k
		gone = append(gone, k)
	}
	seen := map[string]bool{}
	for _, k := range b.kids {
		if _, shared := inA[k]; shared {
			continue
		}
		if k.e.IsLeafList() {
			changedLL[k.e.Name] = true
			continue
		}
		id := k.identity()
		seen[id] = true
		old, ok := am[id]
		switch {
		case ok && isLeafish(k.e) && old.val == k.val:
		case ok && !isLeafish(k.e):
			if err := diffNode(old, k, childPath(path, k), ops); err != nil {
				return err
			}
		default:
			v, err := nodeJSON(k)
			if err != nil {
				return err
			}
			*ops = append(*ops, store.Op{Kind: store.OpReplace, Path: &gpb.Path{Elem: childPath(path, k)}, Val: v})
		}
	}
	for _, k := range gone {
		if !seen[k.identity()] {
			*ops = append(*ops, store.Op{Kind: store.OpDelete, Path: &gpb.Path{Elem: childPath(path, k)}})
		}
	}
	for name := range changedLL {
		if err := diffLeafList(a, b, name, path, ops); err != nil {
			return err
		}
	}
	return nil
}

// diffLeafList replaces (or deletes) leaf-list name when its values differ.
func diffLeafList(a, b *node, name string, path []*gpb.PathElem, ops *[]store.Op) error {
	values := func(n *node) []string {
		var out []string
		for _, k := range n.kids {
			if k.e.Name == name {
				out = append(out, k.val)
			}
		}
		return out
	}
	av, bv := values(a), values(b)
	if equalStrings(av, bv) {
		return nil
	}
	e := b.e.Dir[name]
	p := &gpb.Path{Elem: childPath(path, &node{e: e})}
	if len(bv) == 0 {
		*ops = append(*ops, store.Op{Kind: store.OpDelete, Path: p})
		return nil
	}
	arr := make([]any, len(bv))
	for i, v := range bv {
		arr[i] = jsonValue(e, v)
	}
	raw, err := json.Marshal(arr)
	if err != nil {
		return fmt.Errorf("netconf: encode %s: %w", name, err)
	}
	*ops = append(*ops, store.Op{Kind: store.OpReplace, Path: p, Val: ietf(raw)})
	return nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func ietf(b []byte) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: b}}
}

// childPath is path extended by the element of n (with its list keys).
func childPath(path []*gpb.PathElem, n *node) []*gpb.PathElem {
	pe := &gpb.PathElem{Name: n.e.Name}
	if isList(n.e) {
		pe.Key = map[string]string{}
		for _, k := range keyNames(n.e) {
			if kn := n.kid(k); kn != nil {
				pe.Key[k] = kn.val
			}
		}
	}
	out := make([]*gpb.PathElem, len(path), len(path)+1)
	copy(out, path)
	return append(out, pe)
}

// nodeJSON is the JSON_IETF value of a leaf, container or list entry.
func nodeJSON(n *node) (*gpb.TypedValue, error) {
	var v any
	if isLeafish(n.e) {
		v = jsonValue(n.e, n.val)
	} else {
		v = toJSON(n, false)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("netconf: encode %s: %w", n.e.Name, err)
	}
	return ietf(b), nil
}

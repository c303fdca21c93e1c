package store

import (
	"reflect"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
)

// entChange is a list entry that changed (or was added or removed).
type entChange struct {
	ti       *typeInfo
	path     []*gpb.PathElem
	key      reflect.Value
	old, new reflect.Value // struct pointers, nil when absent
}

// differ walks an old and a new tree in parallel, skipping subtrees whose
// pointers are equal (shared between snapshots), so its cost follows what
// changed. For a list map cloned by the transaction it visits only the keys
// the transaction touched.
type differ struct {
	dirty   map[uintptr][]reflect.Value
	cloneOf map[uintptr]uintptr
	path    []*gpb.PathElem

	diff     Diff
	ents     []entChange
	problems []Problem // schema problems of added and modified leaves
	validate bool

	ops     []Op // asOps: the ops that turn old into new
	asOps   bool
	encErrs int
}

func (d *differ) push(e *gpb.PathElem) { d.path = append(d.path, e) }
func (d *differ) pop()                 { d.path = d.path[:len(d.path)-1] }

func (d *differ) curPath(extra string) *gpb.Path {
	n := len(d.path)
	if extra != "" {
		n++
	}
	elems := make([]*gpb.PathElem, n)
	copy(elems, d.path)
	if extra != "" {
		elems[n-1] = &gpb.PathElem{Name: extra}
	}
	return &gpb.Path{Elem: elems}
}

func isNil(v reflect.Value) bool { return !v.IsValid() || v.IsNil() }

// structs compares two struct pointers of type ti; it reports whether anything
// below them differs.
func (d *differ) structs(ti *typeInfo, old, new reflect.Value) bool {
	on, nn := isNil(old), isNil(new)
	if on && nn {
		return false
	}
	if !on && !nn && old.Pointer() == new.Pointer() {
		return false
	}
	if d.asOps && nn {
		d.ops = append(d.ops, Op{Kind: OpDelete, Path: d.curPath("")})
		return true
	}
	changed := false
	for _, f := range ti.fields {
		if f.readOnly {
			continue
		}
		var ov, nv reflect.Value
		if !on {
			ov = old.Elem().Field(f.idx)
		}
		if !nn {
			nv = new.Elem().Field(f.idx)
		}
		switch f.kind {
		case kLeaf, kLeafList:
			if d.leaf(f, ov, nv) {
				changed = true
			}
		case kContainer:
			d.push(&gpb.PathElem{Name: f.name})
			if d.structs(f.elem, ov, nv) {
				changed = true
			}
			d.pop()
		case kList:
			if d.lists(f, ov, nv) {
				changed = true
			}
		}
	}
	return changed
}

func (d *differ) lists(f *fieldInfo, old, new reflect.Value) bool {
	on, nn := isNil(old), isNil(new)
	if on && nn {
		return false
	}
	if !on && !nn && old.Pointer() == new.Pointer() {
		return false
	}
	changed := false
	visit := func(k reflect.Value) {
		var ov, nv reflect.Value
		if !on {
			ov = old.MapIndex(k)
		}
		if !nn {
			nv = new.MapIndex(k)
		}
		d.push(keyElem(f, k))
		if d.structs(f.elem, ov, nv) {
			changed = true
			if f.elem.kind != entNone {
				d.ents = append(d.ents, entChange{ti: f.elem, path: d.curPath("").Elem, key: k, old: ov, new: nv})
			}
		}
		d.pop()
	}
	if !on && !nn && d.cloneOf[new.Pointer()] == old.Pointer() {
		keys := d.dirty[new.Pointer()]
		if len(keys) == 1 {
			visit(keys[0])
			return changed
		}
		seen := make(map[any]struct{}, len(keys))
		for _, k := range keys {
			if _, ok := seen[k.Interface()]; ok {
				continue
			}
			seen[k.Interface()] = struct{}{}
			visit(k)
		}
		return changed
	}
	if !on {
		it := old.MapRange()
		for it.Next() {
			visit(it.Key())
		}
	}
	if !nn {
		it := new.MapRange()
		for it.Next() {
			if !on && old.MapIndex(it.Key()).IsValid() {
				continue
			}
			visit(it.Key())
		}
	}
	return changed
}

func leafSet(v reflect.Value) bool {
	return v.IsValid() && !v.IsZero() && !(v.Kind() == reflect.Slice && v.Len() == 0)
}

func leafEqual(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Ptr:
		return a.Elem().Interface() == b.Elem().Interface()
	case reflect.Int64:
		return a.Int() == b.Int()
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

func (d *differ) leaf(f *fieldInfo, old, new reflect.Value) bool {
	os, ns := leafSet(old), leafSet(new)
	if !os && !ns {
		return false
	}
	if os && ns && leafEqual(old, new) {
		return false
	}
	p := d.curPath(f.name)
	if d.asOps {
		if ns {
			d.ops = append(d.ops, Op{Kind: OpUpdate, Path: p, Val: d.encode(new)})
		} else {
			d.ops = append(d.ops, Op{Kind: OpDelete, Path: p})
		}
		return true
	}
	c := Change{Path: p}
	switch {
	case !os:
		c.Kind, c.New = Added, d.encode(new)
	case !ns:
		c.Kind, c.Old = Removed, d.encode(old)
	default:
		c.Kind, c.Old, c.New = Modified, d.encode(old), d.encode(new)
	}
	d.diff = append(d.diff, c)
	if d.validate && ns {
		d.problems = append(d.problems, validateLeaf(f, new, p)...)
	}
	return true
}

func (d *differ) encode(v reflect.Value) *gpb.TypedValue {
	tv, err := ygot.EncodeTypedValue(v.Interface(), gpb.Encoding_JSON_IETF)
	if err != nil || tv == nil {
		d.encErrs++
		return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: "<unencodable>"}}
	}
	return tv
}

// diffTrees computes the leaf diff of old -> new. tx, when not nil, is the
// transaction that built new from old (its touched keys bound the walk).
func diffTrees(old, new reflect.Value, tx *txState, validate bool) *differ {
	d := &differ{validate: validate}
	if tx != nil {
		d.dirty, d.cloneOf = tx.dirty, tx.cloneOf
	}
	d.structs(rootInfo, old, new)
	return d
}

// opsBetween returns ops that turn old into new: deletes of removed subtrees
// and leaves, updates of added and modified leaves.
func opsBetween(old, new reflect.Value) []Op {
	d := &differ{asOps: true}
	d.structs(rootInfo, old, new)
	return d.ops
}

package store

import (
	"reflect"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// EntryChange is a list entry that a commit changed, added or removed, as
// validators see it (ytree.EntryChange).
type EntryChange = ytree.EntryChange

// changes is what a commit's diff found: the leaf diff, the changed list
// entries and the schema problems of added and modified leaves.
type changes struct {
	diff     Diff
	ents     []EntryChange
	problems []Problem
}

// diffTrees computes the leaf diff of old -> new (ytree.Differ: shared
// subtrees skipped, list maps the transaction copied bounded to the keys it
// touched). With validate, added and modified leaves are schema-checked
// and changed list entries get their key and mandatory-leaf checks.
func diffTrees(old, new *gen.Device, w *ytree.Writer, validate bool) *changes {
	c := &changes{}
	d := ytree.Differ{
		Writer: w,
		Leaf: func(p []*gpb.PathElem, f *ytree.Field, ov, nv reflect.Value) {
			ch := Change{Path: &gpb.Path{Elem: p}}
			switch {
			case !ov.IsValid():
				ch.Kind, ch.New = Added, encode(nv)
			case !nv.IsValid():
				ch.Kind, ch.Old = Removed, encode(ov)
			default:
				ch.Kind, ch.Old, ch.New = Modified, encode(ov), encode(nv)
			}
			c.diff = append(c.diff, ch)
			if validate && nv.IsValid() {
				c.problems = append(c.problems, ytree.LeafProblems(f, nv, func() string { return ytree.PathString(p) })...)
			}
		},
		Entry: func(p []*gpb.PathElem, list *ytree.Field, key, ov, nv reflect.Value) {
			ec := EntryChange{Path: p, List: list}
			if ov.IsValid() {
				ec.Old = ov.Interface().(ygot.GoStruct)
			}
			if nv.IsValid() {
				ec.New = nv.Interface().(ygot.GoStruct)
				if validate {
					c.problems = append(c.problems, list.EntryProblems(key, nv, func() string { return ytree.PathString(p) })...)
				}
			}
			c.ents = append(c.ents, ec)
		},
	}
	d.Diff(old, new)
	return c
}

func encode(v reflect.Value) *gpb.TypedValue {
	tv, err := ytree.TypedValue(v)
	if err != nil || tv == nil {
		return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: "<unencodable>"}}
	}
	return tv
}

// OpsBetween returns ops that turn the configuration old into new: deletes
// of removed subtrees and leaves, updates of added and modified leaves.
func OpsBetween(old, new *gen.Device) []Op {
	var ops []Op
	d := ytree.Differ{
		Leaf: func(p []*gpb.PathElem, _ *ytree.Field, _, nv reflect.Value) {
			if nv.IsValid() {
				ops = append(ops, Op{Kind: OpUpdate, Path: &gpb.Path{Elem: p}, Val: encode(nv)})
			} else {
				ops = append(ops, Op{Kind: OpDelete, Path: &gpb.Path{Elem: p}})
			}
		},
		Removed: func(p []*gpb.PathElem, _ *ytree.Type) {
			ops = append(ops, Op{Kind: OpDelete, Path: &gpb.Path{Elem: p}})
		},
	}
	d.Diff(old, new)
	return ops
}

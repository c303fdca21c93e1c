package netconf

import (
	"reflect"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// Error options of edit-config.
const (
	stopOnError     = "stop-on-error"
	continueOnError = "continue-on-error"
	rollbackOnError = "rollback-on-error"
)

// editor applies a decoded <config> and its operations (RFC 6241 §7.2) to
// a datastore's tree through a ytree.Writer: the result shares every
// subtree the edit does not touch with the tree it was made from, which is
// never modified. It walks the edit and the tree together, one Writer.Child
// step per container or list entry of the edit.
type editor struct {
	w      *ytree.Writer
	c      *cfgTree
	errOpt string
	errs   rpcErrors // at most maxErrors
	more   int       // errors beyond them
}

// applyEdit returns base with edit c applied, whose nodes take operation
// defOp unless they give one (merge or none; with replace, the config given
// becomes the whole content: it is merged into an empty tree), and the
// errors met. With stop-on-error the walk stops at the first; the tree
// returned holds what was applied until then.
func applyEdit(base *gen.Device, c *cfgTree, defOp, errOpt string) (*gen.Device, rpcErrors) {
	if defOp == opReplace {
		base, defOp = nil, opMerge
	}
	w := ytree.NewWriter(base)
	w.Config = true
	ed := &editor{w: w, c: c, errOpt: errOpt}
	ed.kids(reflect.ValueOf(w.Root()), ytree.Root(), reflect.ValueOf(c.root), defOp, "")
	if ed.more > 0 {
		ed.errs = append(ed.errs, moreErrors(ed.more))
	}
	return w.Root(), ed.errs
}

// fail records an error and says whether to stop.
func (ed *editor) fail(e *rpcError) bool {
	if len(ed.errs) < maxErrors {
		ed.errs = append(ed.errs, e)
	} else {
		ed.more++
	}
	return ed.errOpt != continueOnError
}

// kids applies the children of the edit struct src to the owned struct
// dst (both of type t); it returns true when processing must stop.
func (ed *editor) kids(dst reflect.Value, t *ytree.Type, src reflect.Value, inherited, path string) bool {
	for _, f := range xmlOrder(t) {
		sv := src.Elem().Field(f.Index)
		switch f.Kind {
		case ytree.KindLeaf:
			if ed.leaf(dst, f, src, sv, inherited, path) {
				return true
			}
		case ytree.KindLeafList:
			if sv.Len() > 0 && ed.leafList(dst, f, src, sv, inherited, path) {
				return true
			}
		case ytree.KindContainer:
			if !sv.IsNil() && ed.node(dst, f, reflect.Value{}, sv, inherited, path+seg(f.Name)) {
				return true
			}
		case ytree.KindList:
			if sv.Len() == 0 {
				continue
			}
			for _, k := range sortEntries(f, sv) {
				if ed.node(dst, f, k, sv.MapIndex(k), inherited, path+entryStep(f, k)) {
					return true
				}
			}
		}
	}
	return false
}

// node applies the edit of a container or list entry (ev, of child f of
// dst; k is the entry's key).
func (ed *editor) node(dst reflect.Value, f *ytree.Field, k, ev reflect.Value, inherited, path string) bool {
	op := inherited
	if o, ok := ed.c.structOp(ev); ok {
		op = o
	}
	t := ytree.Target{Parent: dst, Field: f, Key: k}
	_, exists := ed.w.Get(t)
	switch op {
	case opMerge, opNone:
		if !exists {
			below := ed.c.opsBelow(ev)
			switch {
			case op == opMerge || below.has(opMerge, opReplace, opCreate):
			case below.has(opDelete):
				return ed.fail(newErr("application", "data-missing", "%s does not exist", f.Name).at(path))
			default:
				return false
			}
		}
		child, err := ed.w.Child(dst, f, k, !exists)
		if err != nil {
			return ed.fail(newErr("application", "operation-failed", "%s: %v", f.Name, err).at(path))
		}
		return ed.kids(child, f.Elem, ev, op, path)
	case opReplace:
		ed.w.Set(t, ev)
	case opCreate:
		if exists {
			return ed.fail(newErr("application", "data-exists", "%s already exists", f.Name).at(path))
		}
		ed.w.Set(t, ev)
	case opDelete:
		if !exists {
			return ed.fail(newErr("application", "data-missing", "%s does not exist", f.Name).at(path))
		}
		ed.w.Delete(t)
	case opRemove:
		ed.w.Delete(t)
	}
	return false
}

// leaf applies the edit of leaf f of the edit struct src (value sv).
// Only the leaf's presence decides create and delete: a value given with
// delete or remove was not even decoded, so nothing compares it with the
// value the datastore holds.
func (ed *editor) leaf(dst reflect.Value, f *ytree.Field, src, sv reflect.Value, inherited, path string) bool {
	op, explicit := ed.c.leafOp(src, f, -1)
	if !explicit {
		if !isSet(sv) {
			return false
		}
		op = inherited
	}
	t := ytree.Target{Parent: dst, Field: f}
	_, exists := ed.w.Get(t)
	switch op {
	case opMerge, opReplace:
		ed.w.Set(t, sv)
	case opCreate:
		if exists {
			return ed.fail(newErr("application", "data-exists", "%s already exists", f.Name).at(path + seg(f.Name)))
		}
		ed.w.Set(t, sv)
	case opDelete:
		if !exists {
			return ed.fail(newErr("application", "data-missing", "%s does not exist", f.Name).at(path + seg(f.Name)))
		}
		ed.w.Delete(t)
	case opRemove:
		ed.w.Delete(t)
	}
	return false
}

// leafList applies the values of leaf-list f given in the edit (each may
// carry its own operation): merged values not there yet are appended (the
// model's leaf-lists are ordered-by user: a new value goes last).
func (ed *editor) leafList(dst reflect.Value, f *ytree.Field, src, sv reflect.Value, inherited, path string) bool {
	cur := dst.Elem().Field(f.Index)
	out := reflect.MakeSlice(cur.Type(), cur.Len(), cur.Len()+sv.Len())
	reflect.Copy(out, cur) // never write into a backing array the old tree shares
	changed := false
	defer func() {
		if !changed {
			return
		}
		if out.Len() == 0 {
			out = reflect.Zero(cur.Type())
		}
		cur.Set(out)
	}()
	for i := 0; i < sv.Len(); i++ {
		v := sv.Index(i)
		op, explicit := ed.c.leafOp(src, f, i)
		if !explicit {
			op = inherited
		}
		pos := -1
		for j := 0; j < out.Len(); j++ {
			if out.Index(j).Interface() == v.Interface() {
				pos = j
				break
			}
		}
		switch op {
		case opMerge, opReplace:
			if pos < 0 {
				out, changed = reflect.Append(out, v), true
			}
		case opCreate:
			if pos >= 0 {
				if ed.fail(newErr("application", "data-exists", "%s %s already exists", f.Name, ytree.Clip(ytree.FormatText(v))).at(path + seg(f.Name))) {
					return true
				}
				continue
			}
			out, changed = reflect.Append(out, v), true
		case opDelete, opRemove:
			if pos < 0 {
				if op == opDelete && ed.fail(newErr("application", "data-missing", "%s %s does not exist", f.Name, ytree.Clip(ytree.FormatText(v))).at(path+seg(f.Name))) {
					return true
				}
				continue
			}
			out, changed = reflect.AppendSlice(out.Slice(0, pos), out.Slice(pos+1, out.Len())), true
		}
	}
	return false
}

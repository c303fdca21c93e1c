package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// newTx starts a transaction on old: a ytree.Writer of a configuration
// (config false data refused, new list entries get their config keys).
func newTx(old *gen.Device) *ytree.Writer {
	w := ytree.NewWriter(old)
	w.Config = true
	return w
}

// lenientSkip is returned for a missing delete target in lenient mode.
var lenientSkip = errors.New("skip")

func notFound(lenient bool) error {
	if lenient {
		return lenientSkip
	}
	return ErrNotFound
}

// apply applies op to the transaction's tree.
func apply(w *ytree.Writer, op Op, lenient bool) error {
	t, err := w.Descend(op.Path.GetElem(), op.Kind != OpDelete)
	if errors.Is(err, ytree.ErrNotFound) {
		return notFound(lenient)
	}
	if err != nil {
		return err
	}
	if op.Kind == OpDelete {
		if !w.Delete(t) {
			return notFound(lenient)
		}
		return nil
	}
	if op.Val == nil || op.Val.GetValue() == nil {
		return errors.New("replace or update needs a value")
	}
	if t.Field != nil && t.Field.IsLeaf() {
		return ytree.SetLeaf(t.Field, t.Parent, op.Val)
	}
	v, err := value(w, t, op.Val)
	if err != nil {
		return err
	}
	if op.Kind == OpReplace {
		w.Set(t, v)
		return nil
	}
	w.Merge(t, v)
	return nil
}

// value decodes the JSON value of a replace or update of a container, a
// list entry, a whole list or the root.
func value(w *ytree.Writer, t ytree.Target, v *gpb.TypedValue) (reflect.Value, error) {
	tree, err := decodeJSON(v)
	if err != nil {
		return reflect.Value{}, err
	}
	var n reflect.Value
	if typ := t.Type(); typ != nil {
		if n, err = ytree.DecodeStruct(typ, tree); err != nil {
			return reflect.Value{}, err
		}
		if sp := ytree.FindState(typ, n); sp != "" {
			return reflect.Value{}, fmt.Errorf("%w (%s in the value)", ErrState, sp)
		}
		if t.IsEntry() {
			if err := t.Field.CheckEntryKeys(n, t.Key); err != nil {
				return reflect.Value{}, err
			}
			t.Field.FillKeys(n, t.Key, false)
		}
		if t.IsRoot() {
			w.Adopt(n)
		}
		return n, nil
	}
	// a whole list
	if _, ok := tree.([]any); !ok {
		return reflect.Value{}, errors.New("a list needs a JSON array")
	}
	if n, err = ytree.DecodeList(t.Field, tree); err != nil {
		return reflect.Value{}, err
	}
	it := n.MapRange()
	for it.Next() {
		if sp := ytree.FindState(t.Field.Elem, it.Value()); sp != "" {
			return reflect.Value{}, fmt.Errorf("%w (%s/%s in the value)", ErrState, t.Field.Name, sp)
		}
		if err := t.Field.CheckEntryKeys(it.Value(), it.Key()); err != nil {
			return reflect.Value{}, err
		}
		t.Field.FillKeys(it.Value(), it.Key(), false)
	}
	return n, nil
}

// decodeJSON unmarshals the JSON value (object or array) of a non-leaf
// node; json_val is read as RFC 7951 (module prefixes optional).
func decodeJSON(v *gpb.TypedValue) (any, error) {
	var b []byte
	switch x := v.GetValue().(type) {
	case *gpb.TypedValue_JsonIetfVal:
		b = x.JsonIetfVal
	case *gpb.TypedValue_JsonVal:
		b = x.JsonVal
	default:
		return nil, errors.New("a container or list needs a JSON value (json_ietf_val or json_val)")
	}
	var tree any
	if err := json.Unmarshal(b, &tree); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	return tree, nil
}

// Apply returns the configuration the ops of tx would make of root, without
// validating it or changing anything: the first step of a commit as a dry
// run (root is not modified; the result shares its unchanged subtrees). An
// op that cannot be applied is an *OpError.
func Apply(root *gen.Device, tx Tx) (*gen.Device, error) {
	w := newTx(root)
	for i, op := range tx.Ops {
		if err := apply(w, op, tx.IgnoreMissing); err != nil && err != lenientSkip {
			return nil, &OpError{Index: i, Path: ytree.PathString(op.Path.GetElem()), Err: err}
		}
	}
	return w.Root(), nil
}

package ytree

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
)

// LeafFunc renders a leaf's scalar value as a JSON-marshalable value.
type LeafFunc func(tv *gpb.TypedValue, e *yang.Entry) (any, error)

// WriteJSON writes the subtree of a container or list entry node as a JSON
// object: lists as arrays in key order, empty containers omitted, leaves
// rendered by leaf. With qualify, the object's own members carry the
// module name (RFC 7951's rule for a top-level object; this model has one
// module, so no deeper member needs it). It is a direct, single-pass
// alternative to ygot's ConstructIETFJSON for big trees.
func WriteJSON(w *bytes.Buffer, n Node, qualify bool, leaf LeafFunc) error {
	if n.IsLeaf() {
		return fmt.Errorf("WriteJSON: %s is a leaf", PathString(n.Path))
	}
	_, err := writeObject(w, n.Value, n.Schema, qualify, leaf)
	return err
}

// writeObject writes the struct v as an object; it reports whether any
// member was written (an empty object is still written).
func writeObject(w *bytes.Buffer, v reflect.Value, e *yang.Entry, qualify bool, leaf LeafFunc) (bool, error) {
	w.WriteByte('{')
	any := false
	for _, f := range fields(v, e) {
		mark := w.Len()
		if any {
			w.WriteByte(',')
		}
		name := f.name
		if qualify {
			name = Module + ":" + name
		}
		writeString(w, name)
		w.WriteByte(':')
		wrote, err := writeMember(w, f, leaf)
		if err != nil {
			return false, err
		}
		if !wrote {
			w.Truncate(mark)
			continue
		}
		any = true
	}
	w.WriteByte('}')
	return any, nil
}

func writeMember(w *bytes.Buffer, f field, leaf LeafFunc) (bool, error) {
	switch {
	case f.schema.IsList():
		if f.value.IsNil() || f.value.Len() == 0 {
			return false, nil
		}
		entries, err := listEntries(f.value, f.schema)
		if err != nil {
			return false, err
		}
		w.WriteByte('[')
		for i, en := range entries {
			if i > 0 {
				w.WriteByte(',')
			}
			if _, err := writeObject(w, en.value, f.schema, false, leaf); err != nil {
				return false, err
			}
		}
		w.WriteByte(']')
		return true, nil
	case f.schema.IsLeaf() || f.schema.IsLeafList():
		if !isSet(f.value) {
			return false, nil
		}
		tv, err := typedValue(f.value)
		if err != nil || tv == nil {
			return false, err
		}
		x, err := leaf(tv, f.schema)
		if err != nil {
			return false, err
		}
		return true, writeValue(w, x)
	default:
		if f.value.IsNil() {
			return false, nil
		}
		mark := w.Len()
		wrote, err := writeObject(w, f.value, f.schema, false, leaf)
		if err != nil {
			return false, err
		}
		if !wrote {
			w.Truncate(mark)
		}
		return wrote, nil
	}
}

// writeString writes a JSON string without HTML escaping.
func writeString(w *bytes.Buffer, s string) { _ = writeValue(w, s) }

// writeValue writes a JSON value without HTML escaping.
func writeValue(w *bytes.Buffer, x any) error {
	switch v := x.(type) {
	case string:
		if plainString(v) {
			w.WriteByte('"')
			w.WriteString(v)
			w.WriteByte('"')
			return nil
		}
	case bool:
		w.WriteString(strconv.FormatBool(v))
		return nil
	case uint64:
		w.WriteString(strconv.FormatUint(v, 10))
		return nil
	case int64:
		w.WriteString(strconv.FormatInt(v, 10))
		return nil
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		return err
	}
	w.Truncate(w.Len() - 1) // Encode's newline
	return nil
}

// plainString reports whether s needs no escaping in JSON.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}

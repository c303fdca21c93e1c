package ytree

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
)

// Writer builds a new version of a tree from an old one by copying only the
// structs and list maps on the paths it writes: the new tree shares every
// other subtree with the old one, which is never modified.
type Writer struct {
	root  reflect.Value // *gen.Device, owned
	owned map[uintptr]bool
}

// NewWriter starts a new version of old (which may be nil).
func NewWriter(old *gen.Device) *Writer {
	w := &Writer{owned: map[uintptr]bool{}}
	if old == nil {
		old = &gen.Device{}
	}
	w.root = w.clone(reflect.ValueOf(old))
	return w
}

// Root returns the new tree. The Writer must not be used afterwards.
func (w *Writer) Root() *gen.Device { return w.root.Interface().(*gen.Device) }

func (w *Writer) clone(v reflect.Value) reflect.Value {
	n := reflect.New(v.Type().Elem())
	n.Elem().Set(v.Elem())
	w.owned[n.Pointer()] = true
	return n
}

// ownStruct makes the struct pointer in field fv owned, creating it if nil.
func (w *Writer) ownStruct(fv reflect.Value) reflect.Value {
	switch {
	case fv.IsNil():
		n := reflect.New(fv.Type().Elem())
		w.owned[n.Pointer()] = true
		fv.Set(n)
	case !w.owned[fv.Pointer()]:
		fv.Set(w.clone(fv))
	}
	return fv
}

// ownMap makes the list map in field fv owned, creating it if nil.
func (w *Writer) ownMap(fv reflect.Value) reflect.Value {
	if !fv.IsNil() && w.owned[fv.Pointer()] {
		return fv
	}
	n := reflect.MakeMapWithSize(fv.Type(), fv.Len()+1)
	if !fv.IsNil() {
		it := fv.MapRange()
		for it.Next() {
			n.SetMapIndex(it.Key(), it.Value())
		}
	}
	w.owned[n.Pointer()] = true
	fv.Set(n)
	return fv
}

// ErrNoNode is returned for a path that names no container or list entry.
var ErrNoNode = errors.New("no such node")

// Replace puts v (a pointer to the generated struct of the node) at path, a
// concrete path to a container or a list entry, creating its ancestors.
// List entries created on the way get their key leaves set.
func (w *Writer) Replace(path []*gpb.PathElem, v ygot.GoStruct) error {
	if len(path) == 0 {
		return fmt.Errorf("replace: empty path")
	}
	_, pe, f, err := w.descend(path, true)
	if err != nil {
		return err
	}
	rv := reflect.ValueOf(v)
	if f.schema.IsList() {
		if rv.Type() != f.value.Type().Elem() {
			return fmt.Errorf("replace %s: value is %s, want %s", PathString(path), rv.Type(), f.value.Type().Elem())
		}
		k, err := mapKey(f, pe.GetKey())
		if err != nil {
			return fmt.Errorf("replace %s: %w", PathString(path), err)
		}
		n := w.clone(rv) // own a copy so setting keys does not touch v
		setKeyLeaves(n, f.schema, k)
		w.ownMap(f.value).SetMapIndex(k, n)
		return nil
	}
	if f.schema.IsLeaf() || f.schema.IsLeafList() {
		return fmt.Errorf("replace %s: a leaf, not a container", PathString(path))
	}
	if rv.Type() != f.value.Type() {
		return fmt.Errorf("replace %s: value is %s, want %s", PathString(path), rv.Type(), f.value.Type())
	}
	f.value.Set(rv)
	return nil
}

// Delete removes the container, list entry or leaf at path. A path that does
// not exist is not an error.
func (w *Writer) Delete(path []*gpb.PathElem) error {
	if len(path) == 0 {
		return fmt.Errorf("delete: empty path")
	}
	if _, ok := Lookup(w.Root(), path); !ok {
		return nil
	}
	_, pe, f, err := w.descend(path, false)
	if err != nil {
		return err
	}
	if f.schema.IsList() {
		k, err := mapKey(f, pe.GetKey())
		if err != nil {
			return fmt.Errorf("delete %s: %w", PathString(path), err)
		}
		w.ownMap(f.value).SetMapIndex(k, reflect.Value{})
		return nil
	}
	f.value.Set(reflect.Zero(f.value.Type()))
	return nil
}

// descend owns every struct down to the parent of the last element and
// returns that parent and the field the last element names.
func (w *Writer) descend(path []*gpb.PathElem, create bool) (reflect.Value, *gpb.PathElem, field, error) {
	cur := w.root
	e := RootSchema()
	for i, pe := range path {
		name, err := StripModule(pe.GetName())
		if err != nil {
			return cur, nil, field{}, err
		}
		f, ok := fieldByName(cur, e, name)
		if !ok {
			return cur, nil, field{}, fmt.Errorf("%s: %w", PathString(path[:i+1]), ErrNoNode)
		}
		if i == len(path)-1 {
			return cur, pe, f, nil
		}
		switch {
		case f.schema.IsList():
			k, err := mapKey(f, pe.GetKey())
			if err != nil {
				return cur, nil, field{}, fmt.Errorf("%s: %w", PathString(path[:i+1]), err)
			}
			m := f.value
			ev := m.MapIndex(k)
			if !ev.IsValid() {
				if !create {
					return cur, nil, field{}, fmt.Errorf("%s: %w", PathString(path[:i+1]), ErrNoNode)
				}
				ev = reflect.New(m.Type().Elem().Elem())
				w.owned[ev.Pointer()] = true
				setKeyLeaves(ev, f.schema, k)
			} else if !w.owned[ev.Pointer()] {
				ev = w.clone(ev)
			}
			w.ownMap(f.value).SetMapIndex(k, ev)
			cur = ev
		case f.schema.IsLeaf() || f.schema.IsLeafList():
			return cur, nil, field{}, fmt.Errorf("%s is a leaf", PathString(path[:i+1]))
		default:
			if f.value.IsNil() && !create {
				return cur, nil, field{}, fmt.Errorf("%s: %w", PathString(path[:i+1]), ErrNoNode)
			}
			cur = w.ownStruct(f.value)
		}
		e = f.schema
	}
	return cur, nil, field{}, fmt.Errorf("unreachable")
}

// mapKey builds the Go map key of a list from gNMI key values.
func mapKey(f field, keys map[string]string) (reflect.Value, error) {
	kt := f.value.Type().Key()
	names := strings.Fields(f.schema.Key)
	if len(keys) != len(names) {
		return reflect.Value{}, fmt.Errorf("list %s needs keys [%s]", f.name, f.schema.Key)
	}
	if kt.Kind() != reflect.Struct {
		s, ok := keys[names[0]]
		if !ok {
			return reflect.Value{}, fmt.Errorf("missing key %q", names[0])
		}
		return parseScalar(kt, s)
	}
	k := reflect.New(kt).Elem()
	for i := 0; i < kt.NumField(); i++ {
		name := kt.Field(i).Tag.Get("path")
		s, ok := keys[name]
		if !ok {
			return reflect.Value{}, fmt.Errorf("missing key %q", name)
		}
		v, err := parseScalar(kt.Field(i).Type, s)
		if err != nil {
			return reflect.Value{}, fmt.Errorf("key %s: %w", name, err)
		}
		k.Field(i).Set(v)
	}
	return k, nil
}

// parseScalar parses a key value: a string, an unsigned or signed integer,
// or a generated enum (by name, module prefix optional).
func parseScalar(t reflect.Type, s string) (reflect.Value, error) {
	v := reflect.New(t).Elem()
	if e, ok := v.Interface().(ygot.GoEnum); ok {
		_, name, _ := strings.Cut(s, ":")
		if !strings.Contains(s, ":") {
			name = s
		}
		for typ, vals := range e.ΛMap() {
			if typ != t.Name() {
				continue
			}
			for n, d := range vals {
				if d.Name == name {
					v.SetInt(n)
					return v, nil
				}
			}
		}
		return v, fmt.Errorf("%q is not a value of %s", s, t.Name())
	}
	switch t.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, t.Bits())
		if err != nil {
			return v, err
		}
		v.SetUint(n)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, t.Bits())
		if err != nil {
			return v, err
		}
		v.SetInt(n)
	default:
		return v, fmt.Errorf("unsupported key type %s", t)
	}
	return v, nil
}

// setKeyLeaves sets the key leaves of a list entry struct from its map key.
func setKeyLeaves(entry reflect.Value, list *yang.Entry, k reflect.Value) {
	names := strings.Fields(list.Key)
	set := func(name string, kv reflect.Value) {
		f, ok := fieldByName(entry, list, name)
		if !ok {
			return
		}
		if f.value.Kind() == reflect.Pointer {
			p := reflect.New(f.value.Type().Elem())
			p.Elem().Set(kv.Convert(f.value.Type().Elem()))
			f.value.Set(p)
			return
		}
		f.value.Set(kv.Convert(f.value.Type()))
	}
	if k.Kind() != reflect.Struct {
		set(names[0], k)
		return
	}
	for i := 0; i < k.NumField(); i++ {
		set(k.Type().Field(i).Tag.Get("path"), k.Field(i))
	}
}

// IsSecret reports whether a schema node is marked with the spt:secret
// extension.
func IsSecret(e *yang.Entry) bool {
	if e == nil {
		return false
	}
	for _, x := range e.Exts {
		if x.Keyword == "secret" || strings.HasSuffix(x.Keyword, ":secret") {
			return true
		}
	}
	return false
}

// Overlay returns a tree holding the data of both a and b (pointers to the
// same generated struct type), sharing every subtree that only one of them
// has: only containers and list entries present in both are copied. Where
// both set a leaf, a's value wins. Neither input is modified; the result
// must be treated as immutable.
func Overlay(a, b ygot.GoStruct) ygot.GoStruct {
	return overlay(reflect.ValueOf(a), reflect.ValueOf(b)).Interface().(ygot.GoStruct)
}

func overlay(a, b reflect.Value) reflect.Value {
	if a.IsNil() {
		return b
	}
	if b.IsNil() {
		return a
	}
	out := reflect.New(a.Type().Elem())
	out.Elem().Set(a.Elem())
	ov, bv := out.Elem(), b.Elem()
	for i := 0; i < ov.NumField(); i++ {
		f, g := ov.Field(i), bv.Field(i)
		switch {
		case !isSet(g):
		case !isSet(f):
			f.Set(g)
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Struct:
			f.Set(overlay(f, g))
		case f.Kind() == reflect.Map:
			m := reflect.MakeMapWithSize(f.Type(), f.Len()+g.Len())
			it := f.MapRange()
			for it.Next() {
				m.SetMapIndex(it.Key(), it.Value())
			}
			it = g.MapRange()
			for it.Next() {
				if cur := m.MapIndex(it.Key()); cur.IsValid() {
					m.SetMapIndex(it.Key(), overlay(cur, it.Value()))
				} else {
					m.SetMapIndex(it.Key(), it.Value())
				}
			}
			f.Set(m)
		}
	}
	return out
}

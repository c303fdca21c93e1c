package ytree

import (
	"reflect"

	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
)

// Redact returns root with every secret leaf (spt:secret: the pre-shared
// key) replaced by "<redacted>". root is not modified; the copy shares every
// subtree that holds no secret.
func Redact(root *gen.Device) *gen.Device {
	if root == nil {
		return nil
	}
	return rewrite(rootType, reflect.ValueOf(root), func(f *Field) bool { return f.Secret }, true).Interface().(*gen.Device)
}

// ConfigOnly returns root without config false data, sharing every subtree
// that holds none.
func ConfigOnly(root *gen.Device) *gen.Device {
	if root == nil {
		return nil
	}
	return rewrite(rootType, reflect.ValueOf(root), func(f *Field) bool { return f.State }, false).Interface().(*gen.Device)
}

// rewrite returns n with every field for which hit is true replaced: by
// "<redacted>" (string leaves, when redact) or by its zero value. Subtrees
// without hits are shared, not copied.
func rewrite(ti *Type, n reflect.Value, hit func(*Field) bool, redact bool) reflect.Value {
	if n.IsNil() || (redact && !ti.secrets) {
		return n
	}
	var out reflect.Value
	own := func() reflect.Value {
		if !out.IsValid() {
			out = reflect.New(ti.Go)
			out.Elem().Set(n.Elem())
		}
		return out
	}
	for _, f := range ti.Fields {
		fv := n.Elem().Field(f.Index)
		if fv.IsZero() {
			continue
		}
		if hit(f) {
			o := own().Elem().Field(f.Index)
			if redact && o.Kind() == reflect.Pointer && o.Type().Elem().Kind() == reflect.String {
				s := Redacted
				o.Set(reflect.ValueOf(&s))
			} else {
				o.Set(reflect.Zero(o.Type()))
			}
			continue
		}
		switch f.Kind {
		case KindContainer:
			if r := rewrite(f.Elem, fv, hit, redact); r.Pointer() != fv.Pointer() {
				own().Elem().Field(f.Index).Set(r)
			}
		case KindList:
			var m reflect.Value
			it := fv.MapRange()
			for it.Next() {
				r := rewrite(f.Elem, it.Value(), hit, redact)
				if r.Pointer() == it.Value().Pointer() {
					continue
				}
				if !m.IsValid() {
					m = cloneMap(fv)
					own().Elem().Field(f.Index).Set(m)
				}
				m.SetMapIndex(it.Key(), r)
			}
		}
	}
	if out.IsValid() {
		return out
	}
	return n
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

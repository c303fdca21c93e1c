package store

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/spiagent/spiagent/gen"
)

// LoadJSON parses RFC 7951 JSON (JSON_IETF) of the whole tree, as
// examples/*.json hold it. Anything after the top-level value (but white
// space) is an error. It does not validate: call Validate.
func LoadJSON(b []byte) (*gen.Device, error) {
	var tree any
	if err := json.Unmarshal(b, &tree); err != nil {
		return nil, fmt.Errorf("store: load JSON: %v", err)
	}
	if _, ok := tree.(map[string]any); !ok {
		return nil, fmt.Errorf("store: load JSON: top-level value must be an object")
	}
	d := &gen.Device{}
	if err := decodeStruct(rootInfo, tree.(map[string]any), reflect.ValueOf(d)); err != nil {
		return nil, fmt.Errorf("store: load JSON: %v", scrubErr(err, tree))
	}
	return d, nil
}

// EmitJSON renders the config (state data left out) as RFC 7951 JSON: with
// module-qualified top-level names when ietf is true (gNMI json_ietf_val), or
// with no module names (json_val) otherwise. Secrets are redacted.
func EmitJSON(root *gen.Device, ietf bool) ([]byte, error) {
	return emitJSON(Redact(root), ietf, "  ")
}

// EmitJSONWithSecrets is EmitJSON without redaction: only for persisting the
// config and for the engines, never for a read path.
func EmitJSONWithSecrets(root *gen.Device, ietf bool) ([]byte, error) {
	return emitJSON(root, ietf, "  ")
}

func emitJSON(root *gen.Device, ietf bool, indent string) ([]byte, error) {
	if root == nil {
		root = &gen.Device{}
	}
	root = configOnly(root)
	b := encodeStruct(make([]byte, 0, 4096), rootInfo, reflect.ValueOf(root), "", ietf)
	if indent != "" {
		b = indentJSON(b, indent)
	}
	return b, nil
}

// Redact returns root with every secret leaf (spt:secret: the pre-shared key
// config/key) replaced by "<redacted>". root is not modified; the copy shares
// every subtree that holds no secret.
func Redact(root *gen.Device) *gen.Device {
	if root == nil {
		return nil
	}
	return rewrite(rootInfo, reflect.ValueOf(root), func(f *fieldInfo) bool { return f.secret }, true).Interface().(*gen.Device)
}

// configOnly returns root without state (config false) data, sharing subtrees.
func configOnly(root *gen.Device) *gen.Device {
	return rewrite(rootInfo, reflect.ValueOf(root), func(f *fieldInfo) bool { return f.readOnly }, false).Interface().(*gen.Device)
}

// rewrite returns n with every field for which hit is true replaced: by
// "<redacted>" (string leaves, when redact) or by its zero value. Subtrees
// without hits are shared, not copied.
func rewrite(ti *typeInfo, n reflect.Value, hit func(*fieldInfo) bool, redact bool) reflect.Value {
	if n.IsNil() || (redact && !ti.secrets) {
		return n
	}
	var out reflect.Value
	own := func() reflect.Value {
		if !out.IsValid() {
			out = reflect.New(ti.typ)
			out.Elem().Set(n.Elem())
		}
		return out
	}
	for _, f := range ti.fields {
		fv := n.Elem().Field(f.idx)
		if fv.IsZero() {
			continue
		}
		if hit(f) {
			o := own().Elem().Field(f.idx)
			if redact && o.Kind() == reflect.Ptr && o.Type().Elem().Kind() == reflect.String {
				s := redacted
				o.Set(reflect.ValueOf(&s))
			} else {
				o.Set(reflect.Zero(o.Type()))
			}
			continue
		}
		switch f.kind {
		case kContainer:
			if r := rewrite(f.elem, fv, hit, redact); r.Pointer() != fv.Pointer() {
				own().Elem().Field(f.idx).Set(r)
			}
		case kList:
			var m reflect.Value
			it := fv.MapRange()
			for it.Next() {
				r := rewrite(f.elem, it.Value(), hit, redact)
				if r.Pointer() == it.Value().Pointer() {
					continue
				}
				if !m.IsValid() {
					m = cloneMap(fv)
					own().Elem().Field(f.idx).Set(m)
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

package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"
)

// This file is a reflection codec between the generated structs and RFC 7951
// JSON, driven by the typeInfo tables. ytypes.Unmarshal and
// ygot.ConstructIETFJSON do the same job but are far too slow for big
// configs (ytypes pretty-prints every container and map it builds, which
// makes loading quadratic): tens of seconds for 10,000 entries.

// enumInfo maps the names of an enumeration to its values and back.
type enumInfo struct {
	byName  map[string]int64
	byValue map[int64]string
}

var enumCache sync.Map // reflect.Type -> *enumInfo

var goEnumType = reflect.TypeOf((*ygot.GoEnum)(nil)).Elem()

func enumOf(t reflect.Type) *enumInfo {
	if e, ok := enumCache.Load(t); ok {
		return e.(*enumInfo)
	}
	ge := reflect.Zero(t).Interface().(ygot.GoEnum)
	e := &enumInfo{byName: map[string]int64{}, byValue: map[int64]string{}}
	for v, def := range ge.ΛMap()[t.Name()] {
		e.byName[def.Name] = v
		e.byValue[v] = def.Name
	}
	enumCache.Store(t, e)
	return e
}

// decodeStruct fills the struct pointer dst from a JSON object.
func decodeStruct(ti *typeInfo, obj map[string]any, dst reflect.Value) error {
	for k, jv := range obj {
		name := stripPrefix(k)
		f := ti.byName[name]
		if f == nil {
			return fmt.Errorf("%s: unknown field %q", ti.entry.Name, name)
		}
		fv := dst.Elem().Field(f.idx)
		var err error
		switch f.kind {
		case kContainer:
			m, ok := jv.(map[string]any)
			if !ok {
				return fmt.Errorf("%s: container %q needs a JSON object", ti.entry.Name, name)
			}
			child := reflect.New(f.elem.typ)
			if err := decodeStruct(f.elem, m, child); err != nil {
				return err
			}
			fv.Set(child)
		case kList:
			err = decodeList(f, jv, fv)
		case kLeafList:
			err = decodeLeafList(f, jv, fv, dst)
		default:
			err = decodeLeaf(f, jv, fv, dst)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeList(f *fieldInfo, jv any, fv reflect.Value) error {
	arr, ok := jv.([]any)
	if !ok {
		return fmt.Errorf("list %q needs a JSON array", f.name)
	}
	if fv.IsNil() {
		fv.Set(reflect.MakeMapWithSize(fv.Type(), len(arr)))
	}
	for _, e := range arr {
		m, ok := e.(map[string]any)
		if !ok {
			return fmt.Errorf("list %q: entries must be JSON objects", f.name)
		}
		child := reflect.New(f.elem.typ)
		if err := decodeStruct(f.elem, m, child); err != nil {
			return err
		}
		k, err := entryKey(f, child)
		if err != nil {
			return err
		}
		if fv.MapIndex(k).IsValid() {
			return fmt.Errorf("list %q: duplicate key %v", f.name, k.Interface())
		}
		fv.SetMapIndex(k, child)
	}
	return nil
}

// entryKey returns the map key of a decoded list entry.
func entryKey(f *fieldInfo, child reflect.Value) (reflect.Value, error) {
	if f.elem.keyName != "" {
		kv := child.Elem().Field(f.elem.keyIdx)
		if kv.IsNil() {
			return reflect.Value{}, fmt.Errorf("list %q: entry without its key %q", f.name, f.elem.keyName)
		}
		return kv.Elem().Convert(f.mapKey), nil
	}
	k := reflect.New(f.mapKey).Elem()
	for i := 0; i < f.mapKey.NumField(); i++ {
		name := f.mapKey.Field(i).Tag.Get("path")
		ef := f.elem.byName[name]
		if ef == nil {
			return reflect.Value{}, fmt.Errorf("list %q: no key leaf %q", f.name, name)
		}
		kv := child.Elem().Field(ef.idx)
		if kv.Kind() == reflect.Ptr {
			if kv.IsNil() {
				return reflect.Value{}, fmt.Errorf("list %q: entry without its key %q", f.name, name)
			}
			kv = kv.Elem()
		}
		k.Field(i).Set(kv.Convert(k.Field(i).Type()))
	}
	return k, nil
}

func decodeLeafList(f *fieldInfo, jv any, fv, parent reflect.Value) error {
	arr, ok := jv.([]any)
	if !ok {
		return fmt.Errorf("leaf-list %q needs a JSON array", f.name)
	}
	et := fv.Type().Elem()
	out := reflect.MakeSlice(fv.Type(), 0, len(arr))
	for _, e := range arr {
		v, err := decodeScalar(f, et, e)
		if errors.Is(err, errFallback) {
			return ytypesLeaf(f, jv, parent)
		}
		if err != nil {
			return err
		}
		out = reflect.Append(out, v)
	}
	fv.Set(out)
	return nil
}

func decodeLeaf(f *fieldInfo, jv any, fv, parent reflect.Value) error {
	t := fv.Type()
	if t.Kind() == reflect.Ptr {
		v, err := decodeScalar(f, t.Elem(), jv)
		if err == nil {
			p := reflect.New(t.Elem())
			p.Elem().Set(v)
			fv.Set(p)
			return nil
		}
		if !errors.Is(err, errFallback) {
			return err
		}
	} else if t.Implements(goEnumType) {
		v, err := decodeScalar(f, t, jv)
		if err != nil {
			return err
		}
		fv.Set(v)
		return nil
	}
	return ytypesLeaf(f, jv, parent)
}

// ytypesLeaf decodes the leaves the codec does not know (unions, decimal64,
// binary, empty) with ytypes, which is fine for single leaves.
func ytypesLeaf(f *fieldInfo, jv any, parent reflect.Value) error {
	if err := ytypes.Unmarshal(f.entry, parent.Interface(), jv); err != nil {
		if f.secret {
			return fmt.Errorf("leaf %q: invalid value %s", f.name, redacted)
		}
		return fmt.Errorf("leaf %q: %s", f.name, shortErr(err))
	}
	return nil
}

var errFallback = errors.New("fallback")

// decodeScalar converts one JSON value to Go type t.
func decodeScalar(f *fieldInfo, t reflect.Type, jv any) (reflect.Value, error) {
	bad := func(want string) (reflect.Value, error) {
		if f.secret {
			return reflect.Value{}, fmt.Errorf("leaf %q: want %s, got a %T (%s)", f.name, want, jv, redacted)
		}
		return reflect.Value{}, fmt.Errorf("leaf %q: want %s, got %T %v", f.name, want, jv, jv)
	}
	v := reflect.New(t).Elem()
	switch {
	case t.Implements(goEnumType):
		s, ok := jv.(string)
		if !ok {
			return bad("an enumeration name")
		}
		n, ok := enumOf(t).byName[stripPrefix(s)]
		if !ok {
			return reflect.Value{}, fmt.Errorf("leaf %q: %q is not one of its enumeration's values", f.name, s)
		}
		v.SetInt(n)
	case t.Kind() == reflect.String:
		s, ok := jv.(string)
		if !ok {
			return bad("a string")
		}
		v.SetString(s)
	case t.Kind() == reflect.Bool:
		b, ok := jv.(bool)
		if !ok {
			return bad("true or false")
		}
		v.SetBool(b)
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		n, ok := jsonInt(jv)
		if !ok || v.OverflowInt(n) {
			return bad("an integer of " + t.Kind().String())
		}
		v.SetInt(n)
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		n, ok := jsonUint(jv)
		if !ok || v.OverflowUint(n) {
			return bad("an integer of " + t.Kind().String())
		}
		v.SetUint(n)
	default:
		return v, errFallback
	}
	return v, nil
}

// jsonInt accepts a JSON number or (RFC 7951, 64-bit types) a string.
func jsonInt(jv any) (int64, bool) {
	switch x := jv.(type) {
	case float64:
		if x != math.Trunc(x) || x < math.MinInt64 || x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

func jsonUint(jv any) (uint64, bool) {
	switch x := jv.(type) {
	case float64:
		if x != math.Trunc(x) || x < 0 || x > math.MaxUint64 {
			return 0, false
		}
		return uint64(x), true
	case string:
		n, err := strconv.ParseUint(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// encodeStruct appends the RFC 7951 JSON object of the struct pointer v.
// Module names qualify a member whose module differs from its parent's (so,
// with ietf, the top-level members); empty containers are left out.
func encodeStruct(b []byte, ti *typeInfo, v reflect.Value, parentMod string, ietf bool) []byte {
	b = append(b, '{')
	first := true
	for _, f := range ti.fields {
		fv := v.Elem().Field(f.idx)
		if !leafSet(fv) {
			continue
		}
		mark := len(b)
		if !first {
			b = append(b, ',')
		}
		b = append(b, '"')
		if ietf && f.module != parentMod {
			b = append(b, f.module...)
			b = append(b, ':')
		}
		b = append(b, f.name...)
		b = append(b, '"', ':')
		switch f.kind {
		case kContainer:
			n := len(b)
			b = encodeStruct(b, f.elem, fv, f.module, ietf)
			if len(b) == n+2 { // {}
				b = b[:mark]
				continue
			}
		case kList:
			b = encodeList(b, f, fv, ietf)
		case kLeafList:
			b = append(b, '[')
			for i := 0; i < fv.Len(); i++ {
				if i > 0 {
					b = append(b, ',')
				}
				b = encodeScalar(b, fv.Index(i))
			}
			b = append(b, ']')
		default:
			b = encodeScalar(b, fv)
		}
		first = false
	}
	return append(b, '}')
}

func encodeList(b []byte, f *fieldInfo, m reflect.Value, ietf bool) []byte {
	keys := m.MapKeys()
	sortKeys(keys)
	b = append(b, '[')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = encodeStruct(b, f.elem, m.MapIndex(k), f.module, ietf)
	}
	return append(b, ']')
}

func sortKeys(keys []reflect.Value) {
	if len(keys) == 0 {
		return
	}
	switch keys[0].Kind() {
	case reflect.String:
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		sort.Slice(keys, func(i, j int) bool { return keys[i].Uint() < keys[j].Uint() })
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		sort.Slice(keys, func(i, j int) bool { return keys[i].Int() < keys[j].Int() })
	default:
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	}
}

// encodeScalar appends one leaf value (a pointer, enum or union value).
func encodeScalar(b []byte, v reflect.Value) []byte {
	if v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	if v.Kind() == reflect.Ptr {
		v = v.Elem()
	}
	if v.Type().Implements(goEnumType) {
		return appendJSONString(b, enumOf(v.Type()).byValue[v.Int()])
	}
	switch v.Kind() {
	case reflect.String:
		return appendJSONString(b, v.String())
	case reflect.Bool:
		return strconv.AppendBool(b, v.Bool())
	case reflect.Int64:
		b = append(b, '"')
		return append(strconv.AppendInt(b, v.Int(), 10), '"')
	case reflect.Uint64:
		b = append(b, '"')
		return append(strconv.AppendUint(b, v.Uint(), 10), '"')
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32:
		return strconv.AppendInt(b, v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return strconv.AppendUint(b, v.Uint(), 10)
	}
	j, err := json.Marshal(v.Interface())
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, j...)
}

func appendJSONString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		j, _ := json.Marshal(s)
		return append(b, j...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, fmt.Sprintf(`\u%04x`, c)...)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// indentJSON re-indents compact JSON.
func indentJSON(b []byte, indent string) []byte {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", indent); err != nil {
		return b
	}
	return out.Bytes()
}

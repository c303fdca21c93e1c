package ytree

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"

	"github.com/spiagent/spiagent/gen"
)

// This file is the RFC 7951 JSON codec between the generated structs and
// JSON, driven by the Type tables. ytypes.Unmarshal and
// ygot.ConstructIETFJSON do the same job but are far too slow for big trees
// (ytypes pretty-prints every container and map it builds, which makes
// loading quadratic): tens of seconds for 10,000 entries.

// enumInfo maps the names of an enumeration to its values and back.
type enumInfo struct {
	byName  map[string]int64
	byValue map[int64]string
}

var enumCache sync.Map // reflect.Type -> *enumInfo

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

// Unmarshal parses RFC 7951 JSON (JSON_IETF; module prefixes optional) of a
// whole tree. Anything after the top-level value (but white space) is an
// error. It does not validate.
func Unmarshal(b []byte) (*gen.Device, error) {
	var tree any
	if err := json.Unmarshal(b, &tree); err != nil {
		return nil, err
	}
	v, err := DecodeStruct(rootType, tree)
	if err != nil {
		return nil, err
	}
	return v.Interface().(*gen.Device), nil
}

// DecodeStruct builds a new struct of type t from a parsed JSON object.
// Errors never show a secret value.
func DecodeStruct(t *Type, tree any) (reflect.Value, error) {
	obj, ok := tree.(map[string]any)
	if !ok {
		if t == rootType {
			return reflect.Value{}, errors.New("top-level value must be an object")
		}
		return reflect.Value{}, errors.New("a container or list entry needs a JSON object")
	}
	n := reflect.New(t.Go)
	if err := decodeStruct(t, obj, n); err != nil {
		return reflect.Value{}, scrubErr(located(err, t == rootType), tree)
	}
	return n, nil
}

// DecodeList builds a new list map for list f from a parsed JSON array.
func DecodeList(f *Field, tree any) (reflect.Value, error) {
	m := reflect.New(reflect.MapOf(f.mapKey, reflect.PointerTo(f.Elem.Go))).Elem()
	if err := decodeList(f, tree, m); err != nil {
		return reflect.Value{}, scrubErr(located(err, false), tree)
	}
	return m, nil
}

// pathError is a decoding error and where in the value it happened.
type pathError struct {
	elems []string // outermost first, built from the inside out
	err   error
}

func (e *pathError) Error() string { return strings.Join(e.elems, "/") + ": " + e.err.Error() }

// at adds an outer path element to a decoding error.
func at(elem string, err error) error {
	if pe, ok := err.(*pathError); ok {
		pe.elems = append([]string{elem}, pe.elems...)
		return pe
	}
	return &pathError{elems: []string{elem}, err: err}
}

// located renders a decoding error with its path: absolute (from the root)
// or relative to the decoded node.
func located(err error, abs bool) error {
	pe, ok := err.(*pathError)
	if !ok {
		return err
	}
	p := strings.Join(pe.elems, "/")
	if abs {
		p = "/" + p
	}
	return fmt.Errorf("%s: %w", p, pe.err)
}

// entryElem names a list entry in a decoding error by the key members of
// its JSON object, as far as they are there.
func entryElem(f *Field, obj map[string]any) string {
	var b strings.Builder
	b.WriteString(f.Name)
	for k, v := range obj {
		if name := stripPrefix(k); contains(f.keyNames, name) {
			if n, ok := v.(float64); ok {
				v = strconv.FormatFloat(n, 'f', -1, 64)
			}
			fmt.Fprintf(&b, "[%s=%v]", name, v)
		}
	}
	return b.String()
}

// decodeStruct fills the struct pointer dst from a JSON object.
func decodeStruct(ti *Type, obj map[string]any, dst reflect.Value) error {
	for k, jv := range obj {
		name := stripPrefix(k)
		f := ti.byName[name]
		if f == nil {
			return fmt.Errorf("%s: unknown field %q", ti.Schema.Name, name)
		}
		fv := dst.Elem().Field(f.Index)
		var err error
		switch f.Kind {
		case KindContainer:
			m, ok := jv.(map[string]any)
			if !ok {
				return fmt.Errorf("%s: container %q needs a JSON object", ti.Schema.Name, name)
			}
			child := reflect.New(f.Elem.Go)
			if err := decodeStruct(f.Elem, m, child); err != nil {
				return at(name, err)
			}
			fv.Set(child)
		case KindList:
			err = decodeList(f, jv, fv)
		case KindLeafList:
			err = decodeLeafList(f, jv, fv, dst)
		default:
			err = decodeLeaf(f, jv, fv, dst)
		}
		if err != nil {
			if _, ok := err.(*pathError); ok {
				return err
			}
			return at(name, err)
		}
	}
	return nil
}

func decodeList(f *Field, jv any, fv reflect.Value) error {
	arr, ok := jv.([]any)
	if !ok {
		return fmt.Errorf("list %q needs a JSON array", f.Name)
	}
	if fv.IsNil() {
		fv.Set(reflect.MakeMapWithSize(fv.Type(), len(arr)))
	}
	for _, e := range arr {
		m, ok := e.(map[string]any)
		if !ok {
			return fmt.Errorf("list %q: entries must be JSON objects", f.Name)
		}
		child := reflect.New(f.Elem.Go)
		if err := decodeStruct(f.Elem, m, child); err != nil {
			return at(entryElem(f, m), err)
		}
		k, err := f.KeyOf(child)
		if err != nil {
			return at(f.Name, err)
		}
		if fv.MapIndex(k).IsValid() {
			return fmt.Errorf("list %q: duplicate key %v", f.Name, k.Interface())
		}
		fv.SetMapIndex(k, child)
	}
	return nil
}

func decodeLeafList(f *Field, jv any, fv, parent reflect.Value) error {
	arr, ok := jv.([]any)
	if !ok {
		return fmt.Errorf("leaf-list %q needs a JSON array", f.Name)
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

func decodeLeaf(f *Field, jv any, fv, parent reflect.Value) error {
	t := fv.Type()
	if t.Kind() == reflect.Pointer {
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
func ytypesLeaf(f *Field, jv any, parent reflect.Value) error {
	if err := ytypes.Unmarshal(f.Schema, parent.Interface(), jv); err != nil {
		if f.Secret {
			return fmt.Errorf("leaf %q: invalid value %s", f.Name, Redacted)
		}
		return fmt.Errorf("leaf %q: %s", f.Name, shortErr(err))
	}
	return nil
}

var errFallback = errors.New("fallback")

// decodeScalar converts one JSON value to Go type t.
func decodeScalar(f *Field, t reflect.Type, jv any) (reflect.Value, error) {
	bad := func(want string) (reflect.Value, error) {
		if f.Secret {
			return reflect.Value{}, fmt.Errorf("leaf %q: want %s, got a %T (%s)", f.Name, want, jv, Redacted)
		}
		return reflect.Value{}, fmt.Errorf("leaf %q: want %s, got %T %v", f.Name, want, jv, jv)
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
			return reflect.Value{}, fmt.Errorf("leaf %q: %q is not one of its enumeration's values", f.Name, s)
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

// FindState returns the relative path of the first config-false node set in
// the struct v of type t, or "".
func FindState(t *Type, v reflect.Value) string {
	if v.IsNil() {
		return ""
	}
	for _, f := range t.Fields {
		fv := v.Elem().Field(f.Index)
		if fv.IsZero() {
			continue
		}
		if f.State {
			return f.Name
		}
		switch f.Kind {
		case KindContainer:
			if s := FindState(f.Elem, fv); s != "" {
				return f.Name + "/" + s
			}
		case KindList:
			it := fv.MapRange()
			for it.Next() {
				if s := FindState(f.Elem, it.Value()); s != "" {
					return f.Name + "/" + s
				}
			}
		}
	}
	return ""
}

// shortErr trims the gRPC status prefix and ygot's repetition of the value.
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "; "); i >= 0 {
		s = s[i+2:]
	}
	return strings.TrimPrefix(s, "rpc error: code = Unknown desc = ")
}

// scrubErr removes secret strings found in a JSON value from an error text.
func scrubErr(err error, tree any) error {
	msg := shortErr(err)
	for _, s := range secretStrings(tree, nil) {
		msg = strings.ReplaceAll(msg, strconv.Quote(s), Redacted)
		msg = strings.ReplaceAll(msg, s, Redacted)
	}
	return errors.New(msg)
}

// secretStrings collects the string values of JSON members named like a
// secret leaf ("key"), wherever they are: over-scrubbing is harmless.
func secretStrings(tree any, out []string) []string {
	switch v := tree.(type) {
	case map[string]any:
		for k, c := range v {
			if secretNames[stripPrefix(k)] {
				if s, ok := c.(string); ok {
					out = append(out, s)
					continue
				}
			}
			out = secretStrings(c, out)
		}
	case []any:
		for _, c := range v {
			out = secretStrings(c, out)
		}
	}
	return out
}

// secretNames are the names of the secret leaves of the model.
var secretNames = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range typeInfo {
		for _, f := range t.Fields {
			if f.Secret {
				m[f.Name] = true
			}
		}
	}
	return m
}()

// JSONOptions select the form AppendJSON writes.
type JSONOptions struct {
	// IETF writes RFC 7951 (gNMI json_ietf_val): members whose module
	// differs from their parent's (so the top-level ones) qualified by the
	// module name, 64-bit integers as strings. Otherwise no module names
	// and 64-bit integers as numbers (json_val).
	IETF bool
	// ConfigOnly leaves config false data out.
	ConfigOnly bool
	// Redact writes secret leaves as "<redacted>".
	Redact bool
	// Indent, if not empty, indents the output with it.
	Indent string
}

// AppendJSON appends the JSON of a node to b: an object for a container or
// list entry (lists as arrays in key order, empty containers and lists left
// out), the value for a leaf or leaf-list.
func AppendJSON(b []byte, n Node, o JSONOptions) []byte {
	start := len(b)
	if n.IsLeaf() {
		b = encodeLeaf(b, n.Field, n.Value, o)
	} else {
		b = encodeStruct(b, n.Type, n.Value, "", o)
	}
	if o.Indent != "" {
		var out bytes.Buffer
		if err := json.Indent(&out, b[start:], "", o.Indent); err == nil {
			b = append(b[:start], out.Bytes()...)
		}
	}
	return b
}

// encodeStruct appends the object of the struct pointer v.
func encodeStruct(b []byte, ti *Type, v reflect.Value, parentMod string, o JSONOptions) []byte {
	b = append(b, '{')
	first := true
	for _, f := range ti.Fields {
		fv := v.Elem().Field(f.Index)
		if !isSet(fv) || (o.ConfigOnly && f.State) || (f.Kind == KindList && fv.Len() == 0) {
			continue
		}
		mark := len(b)
		if !first {
			b = append(b, ',')
		}
		b = append(b, '"')
		if o.IETF && f.Module != parentMod {
			b = append(b, f.Module...)
			b = append(b, ':')
		}
		b = append(b, f.Name...)
		b = append(b, '"', ':')
		switch f.Kind {
		case KindContainer:
			n := len(b)
			b = encodeStruct(b, f.Elem, fv, f.Module, o)
			if len(b) == n+2 { // {}
				b = b[:mark]
				continue
			}
		case KindList:
			b = append(b, '[')
			for i, k := range entries(fv) {
				if i > 0 {
					b = append(b, ',')
				}
				b = encodeStruct(b, f.Elem, fv.MapIndex(k), f.Module, o)
			}
			b = append(b, ']')
		default:
			b = encodeLeaf(b, f, fv, o)
		}
		first = false
	}
	return append(b, '}')
}

func encodeLeaf(b []byte, f *Field, fv reflect.Value, o JSONOptions) []byte {
	if o.Redact && f.Secret {
		return appendJSONString(b, Redacted)
	}
	if f.Kind != KindLeafList {
		return encodeScalar(b, fv, o.IETF)
	}
	b = append(b, '[')
	for i := 0; i < fv.Len(); i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = encodeScalar(b, fv.Index(i), o.IETF)
	}
	return append(b, ']')
}

// encodeScalar appends one leaf value (a pointer, enum or union value).
func encodeScalar(b []byte, v reflect.Value, ietf bool) []byte {
	if v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	if v.Kind() == reflect.Pointer {
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
		return appendInt(b, v.Int(), ietf)
	case reflect.Uint64:
		return appendUint(b, v.Uint(), ietf)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32:
		return strconv.AppendInt(b, v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return strconv.AppendUint(b, v.Uint(), 10)
	}
	return appendMarshal(b, v.Interface())
}

// appendJSONString appends s as a JSON string, without HTML escaping.
func appendJSONString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		return appendMarshal(b, s)
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

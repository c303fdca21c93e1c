package ytree

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"
)

// Redacted replaces every secret value in reads, errors, logs and events.
const Redacted = "<redacted>"

// TypedValue encodes a set leaf or leaf-list field as a gNMI scalar value:
// strings, booleans and integers as themselves, enumerations by name,
// leaf-lists as a leaflist_val (what ygot.EncodeTypedValue gives, without
// its cost). It returns nil for an unset field.
func TypedValue(v reflect.Value) (*gpb.TypedValue, error) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil, nil
		}
		if tv, ok := scalarTyped(v.Elem()); ok {
			return tv, nil
		}
	case reflect.Int64:
		if v.Int() == 0 {
			return nil, nil
		}
		if tv, ok := scalarTyped(v); ok {
			return tv, nil
		}
	case reflect.Slice:
		if v.Len() == 0 {
			return nil, nil
		}
		if v.Type().Elem().Kind() != reflect.Uint8 {
			el := make([]*gpb.TypedValue, v.Len())
			for i := range el {
				tv, ok := scalarTyped(v.Index(i))
				if !ok {
					return ygot.EncodeTypedValue(v.Interface(), gpb.Encoding_JSON)
				}
				el[i] = tv
			}
			return &gpb.TypedValue{Value: &gpb.TypedValue_LeaflistVal{LeaflistVal: &gpb.ScalarArray{Element: el}}}, nil
		}
	}
	return ygot.EncodeTypedValue(v.Interface(), gpb.Encoding_JSON)
}

// scalarTyped encodes a scalar (not a pointer) the common way.
func scalarTyped(x reflect.Value) (*gpb.TypedValue, bool) {
	if x.Type().Implements(goEnumType) {
		name, ok := enumOf(x.Type()).byValue[x.Int()]
		if !ok {
			return nil, false
		}
		return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: name}}, true
	}
	switch x.Kind() {
	case reflect.String:
		return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: x.String()}}, true
	case reflect.Bool:
		return &gpb.TypedValue{Value: &gpb.TypedValue_BoolVal{BoolVal: x.Bool()}}, true
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: x.Uint()}}, true
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &gpb.TypedValue{Value: &gpb.TypedValue_IntVal{IntVal: x.Int()}}, true
	}
	return nil, false
}

// SetLeaf sets leaf or leaf-list f of the struct parent from a gNMI value:
// a scalar of the leaf's type, a leaflist_val, or JSON (json_val and
// json_ietf_val are both read as RFC 7951, module prefixes optional). Values
// ytree does not convert itself (unions given as scalars, decimals, bytes)
// go through ytypes. Errors never show a secret value.
func SetLeaf(f *Field, parent reflect.Value, tv *gpb.TypedValue) error {
	fv := parent.Elem().Field(f.Index)
	if f.Kind == KindLeafList {
		fv.Set(reflect.Zero(fv.Type())) // never append to a shared backing array
	}
	if b := jsonBytes(tv); b != nil {
		var jv any
		if err := json.Unmarshal(b, &jv); err != nil {
			return f.valueErr(fmt.Errorf("invalid JSON: %v", err))
		}
		if f.Kind == KindLeafList {
			return decodeLeafList(f, jv, fv, parent)
		}
		return decodeLeaf(f, jv, fv, parent)
	}
	ft := fv.Type()
	if f.Kind == KindLeafList {
		ll, ok := tv.GetValue().(*gpb.TypedValue_LeaflistVal)
		if !ok {
			return f.valueErr(fmt.Errorf("a leaf-list needs a list of values (leaflist_val or a JSON array), got %s", typedShow(f, tv)))
		}
		if ft.Elem().Kind() == reflect.Interface {
			return f.ytypesSet(parent, tv)
		}
		out := reflect.MakeSlice(ft, 0, len(ll.LeaflistVal.GetElement()))
		for _, el := range ll.LeaflistVal.GetElement() {
			v, err := f.scalarFromTyped(ft.Elem(), el)
			if errors.Is(err, errFallback) {
				return f.ytypesSet(parent, tv)
			}
			if err != nil {
				return err
			}
			out = reflect.Append(out, v)
		}
		fv.Set(out)
		return nil
	}
	t := ft
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if ft.Kind() == reflect.Interface {
		return f.ytypesSet(parent, tv)
	}
	v, err := f.scalarFromTyped(t, tv)
	if errors.Is(err, errFallback) {
		return f.ytypesSet(parent, tv)
	}
	if err != nil {
		return err
	}
	if ft.Kind() == reflect.Pointer {
		p := reflect.New(t)
		p.Elem().Set(v)
		v = p
	}
	fv.Set(v)
	return nil
}

func jsonBytes(tv *gpb.TypedValue) []byte {
	switch x := tv.GetValue().(type) {
	case *gpb.TypedValue_JsonIetfVal:
		return x.JsonIetfVal
	case *gpb.TypedValue_JsonVal:
		return x.JsonVal
	}
	return nil
}

// scalarFromTyped converts a scalar gNMI value to Go type t.
func (f *Field) scalarFromTyped(t reflect.Type, tv *gpb.TypedValue) (reflect.Value, error) {
	v := reflect.New(t).Elem()
	switch x := tv.GetValue().(type) {
	case *gpb.TypedValue_StringVal:
		switch {
		case t.Implements(goEnumType):
			return decodeScalar(f, t, x.StringVal)
		case t.Kind() == reflect.String:
			v.SetString(x.StringVal)
			return v, nil
		}
	case *gpb.TypedValue_BoolVal:
		if t.Kind() == reflect.Bool {
			v.SetBool(x.BoolVal)
			return v, nil
		}
	case *gpb.TypedValue_UintVal:
		switch {
		case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 && !v.OverflowUint(x.UintVal):
			v.SetUint(x.UintVal)
			return v, nil
		case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64 && x.UintVal <= 1<<63-1 && !v.OverflowInt(int64(x.UintVal)):
			v.SetInt(int64(x.UintVal))
			return v, nil
		}
	case *gpb.TypedValue_IntVal:
		switch {
		case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64 && !v.OverflowInt(x.IntVal):
			v.SetInt(x.IntVal)
			return v, nil
		case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 && x.IntVal >= 0 && !v.OverflowUint(uint64(x.IntVal)):
			v.SetUint(uint64(x.IntVal))
			return v, nil
		}
	case *gpb.TypedValue_LeaflistVal:
		return v, f.valueErr(errors.New("a leaf takes one value, not a list"))
	default:
		return v, errFallback
	}
	return v, f.valueErr(fmt.Errorf("want %s, got %s", wantOf(t), typedShow(f, tv)))
}

func wantOf(t reflect.Type) string {
	switch {
	case t.Implements(goEnumType):
		return "an enumeration name"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	}
	return "an integer of " + t.Kind().String()
}

// typedShow describes a gNMI value for an error message.
func typedShow(f *Field, tv *gpb.TypedValue) string {
	if f.Secret {
		return Redacted
	}
	switch x := tv.GetValue().(type) {
	case *gpb.TypedValue_StringVal:
		return "string " + strconv.Quote(x.StringVal)
	case *gpb.TypedValue_UintVal:
		return fmt.Sprintf("unsigned integer %d", x.UintVal)
	case *gpb.TypedValue_IntVal:
		return fmt.Sprintf("integer %d", x.IntVal)
	case *gpb.TypedValue_BoolVal:
		return fmt.Sprintf("boolean %v", x.BoolVal)
	}
	return fmt.Sprintf("%T", tv.GetValue())
}

func (f *Field) valueErr(err error) error {
	return fmt.Errorf("leaf %q: %w", f.Name, err)
}

// ytypesSet sets the leaf with ytypes.SetNode (values the codec does not
// convert), with ygot's text trimmed and secrets kept out.
func (f *Field) ytypesSet(parent reflect.Value, tv *gpb.TypedValue) error {
	p := &gpb.Path{Elem: []*gpb.PathElem{{Name: f.Name}}}
	pt := TypeOf(parent.Type())
	if err := ytypes.SetNode(pt.Schema, parent.Interface(), p, tv); err != nil {
		if f.Secret {
			return f.valueErr(fmt.Errorf("value %s is not valid", Redacted))
		}
		return f.valueErr(errors.New(shortErr(err)))
	}
	return nil
}

// TypedValueJSON renders a scalar or leaf-list gNMI value as JSON: RFC 7951
// when ietf (64-bit integers as strings, identities qualified by their
// module), plain JSON otherwise. e is the leaf's schema (for its type).
func TypedValueJSON(tv *gpb.TypedValue, e *yang.Entry, ietf bool) ([]byte, error) {
	return appendTypedJSON(nil, tv, e, ietf)
}

func appendTypedJSON(b []byte, tv *gpb.TypedValue, e *yang.Entry, ietf bool) ([]byte, error) {
	kind := yang.Ynone
	if e != nil && e.Type != nil {
		kind = e.Type.Kind
	}
	switch x := tv.GetValue().(type) {
	case *gpb.TypedValue_StringVal:
		if ietf && kind == yang.Yidentityref && e.Type.IdentityBase != nil {
			if m := yang.RootNode(e.Type.IdentityBase); m != nil {
				return appendJSONString(b, m.Name+":"+x.StringVal), nil
			}
		}
		return appendJSONString(b, x.StringVal), nil
	case *gpb.TypedValue_UintVal:
		return appendUint(b, x.UintVal, ietf && kind == yang.Yuint64), nil
	case *gpb.TypedValue_IntVal:
		return appendInt(b, x.IntVal, ietf && kind == yang.Yint64), nil
	case *gpb.TypedValue_BoolVal:
		return strconv.AppendBool(b, x.BoolVal), nil
	case *gpb.TypedValue_DoubleVal:
		return appendMarshal(b, x.DoubleVal), nil
	case *gpb.TypedValue_FloatVal: //nolint:staticcheck
		return appendMarshal(b, x.FloatVal), nil
	case *gpb.TypedValue_BytesVal:
		return appendJSONString(b, base64.StdEncoding.EncodeToString(x.BytesVal)), nil
	case *gpb.TypedValue_LeaflistVal:
		b = append(b, '[')
		for i, el := range x.LeaflistVal.GetElement() {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendTypedJSON(b, el, e, ietf); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	return nil, fmt.Errorf("cannot render %T as JSON", tv.GetValue())
}

// appendUint writes an unsigned integer, quoted when quote (RFC 7951's
// rule for 64-bit types).
func appendUint(b []byte, n uint64, quote bool) []byte {
	if !quote {
		return strconv.AppendUint(b, n, 10)
	}
	b = append(b, '"')
	return append(strconv.AppendUint(b, n, 10), '"')
}

func appendInt(b []byte, n int64, quote bool) []byte {
	if !quote {
		return strconv.AppendInt(b, n, 10)
	}
	b = append(b, '"')
	return append(strconv.AppendInt(b, n, 10), '"')
}

func appendMarshal(b []byte, v any) []byte {
	j, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, j...)
}

// SetText sets leaf f of the struct parent from the text form of its value
// (NETCONF XML text; see ParseText), or appends it to leaf-list f. A union
// (an ACL protocol: a name or a number) takes a number when the text is one
// and the name otherwise.
func SetText(f *Field, parent reflect.Value, s string) error {
	fv := parent.Elem().Field(f.Index)
	t := fv.Type()
	if f.Kind == KindLeafList {
		t = t.Elem()
	} else if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Interface {
		var jv any = s
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			jv = float64(n)
		}
		if f.Kind == KindLeafList {
			return f.valueErr(errors.New("a leaf-list of unions cannot be set from text"))
		}
		return decodeLeaf(f, jv, fv, parent)
	}
	v, err := ParseText(t, s)
	if err != nil {
		if f.Secret {
			return f.valueErr(fmt.Errorf("value %s is not valid", Redacted))
		}
		return f.valueErr(err)
	}
	switch {
	case f.Kind == KindLeafList:
		fv.Set(reflect.Append(fv, v))
	case fv.Kind() == reflect.Pointer:
		p := reflect.New(t)
		p.Elem().Set(v)
		fv.Set(p)
	default:
		fv.Set(v)
	}
	return nil
}

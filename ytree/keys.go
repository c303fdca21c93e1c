package ytree

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
)

// ParseText converts the text form of a scalar value (a gNMI key value, the
// text of a NETCONF leaf) to Go type t: a string, an integer, a boolean, or
// a generated enumeration by name (module prefix optional).
func ParseText(t reflect.Type, s string) (reflect.Value, error) {
	v := reflect.New(t).Elem()
	if t.Implements(goEnumType) {
		n, ok := enumOf(t).byName[stripPrefix(s)]
		if !ok {
			return v, fmt.Errorf("%q is not a value of %s", Clip(s), t.Name())
		}
		v.SetInt(n)
		return v, nil
	}
	switch t.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		switch s {
		case "true":
			v.SetBool(true)
		case "false":
		default:
			return v, fmt.Errorf("%q is not true or false", Clip(s))
		}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, t.Bits())
		if err != nil {
			return v, intErr(s, t, err)
		}
		v.SetUint(n)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, t.Bits())
		if err != nil {
			return v, intErr(s, t, err)
		}
		v.SetInt(n)
	default:
		return v, fmt.Errorf("cannot parse %s from text", t)
	}
	return v, nil
}

// intErr says why s is not an integer of type t: not an integer at all
// ("100.9", "ten"), or one outside the type's range ("70000" for a
// uint16; "18446744073709551616" or "-1" for a uint32), with the range.
func intErr(s string, t reflect.Type, err error) error {
	unsigned := t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64
	outOfRange := errors.Is(err, strconv.ErrRange)
	if !outOfRange && unsigned && strings.HasPrefix(s, "-") {
		_, perr := strconv.ParseInt(s, 10, 64)
		outOfRange = perr == nil || errors.Is(perr, strconv.ErrRange)
	}
	if !outOfRange {
		return fmt.Errorf("%q is not a %s", Clip(s), t.Kind())
	}
	bits := t.Bits()
	lo, hi := "0", strconv.FormatUint(1<<bits-1, 10)
	if !unsigned {
		lo, hi = strconv.FormatInt(-1<<(bits-1), 10), strconv.FormatInt(1<<(bits-1)-1, 10)
	}
	return fmt.Errorf("%q is not a %s: out of range %s..%s", Clip(s), t.Kind(), lo, hi)
}

// clipLen is how much of a value an error message echoes.
const clipLen = 64

// Clip returns s as an error message may echo it: at most 64 bytes (cut at
// a rune boundary), followed by "..." when it was longer, so that a
// client's megabyte of text costs an error message 67 bytes.
func Clip(s string) string {
	if len(s) <= clipLen {
		return s
	}
	n := clipLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// FormatText renders a scalar value as text (the inverse of ParseText): v
// may be a pointer, an enumeration or a union interface holding one.
func FormatText(v reflect.Value) string {
	if v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if v.Type().Implements(goEnumType) {
		return enumOf(v.Type()).byValue[v.Int()]
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	}
	return fmt.Sprint(v.Interface())
}

// ParseKey converts the keys of a gNMI path element to the Go map key of
// list f: a scalar, an enumeration or a generated key struct. Every key of
// the list must be given, and no other.
func (f *Field) ParseKey(keys map[string]string) (reflect.Value, error) {
	if len(keys) != len(f.keyNames) {
		return reflect.Value{}, f.keysWanted()
	}
	if f.mapKey.Kind() != reflect.Struct {
		s, ok := keys[f.keyNames[0]]
		if !ok {
			return reflect.Value{}, f.keysWanted()
		}
		v, err := ParseText(f.mapKey, s)
		if err != nil {
			return reflect.Value{}, fmt.Errorf("key %s", err)
		}
		return v, nil
	}
	k := reflect.New(f.mapKey).Elem()
	for i, name := range f.keyNames {
		s, ok := keys[name]
		if !ok {
			return reflect.Value{}, f.keysWanted()
		}
		v, err := ParseText(f.mapKey.Field(i).Type, s)
		if err != nil {
			return reflect.Value{}, fmt.Errorf("key %s: %w", name, err)
		}
		k.Field(i).Set(v)
	}
	return k, nil
}

func (f *Field) keysWanted() error {
	if len(f.keyNames) == 1 {
		return fmt.Errorf("list %q is keyed by %q only", f.Name, f.keyNames[0])
	}
	return fmt.Errorf("list %q is keyed by [%s]", f.Name, strings.Join(f.keyNames, " "))
}

// KeyElem builds the path element of entry k of list f.
func (f *Field) KeyElem(k reflect.Value) *gpb.PathElem {
	return &gpb.PathElem{Name: f.Name, Key: f.KeyMap(k)}
}

// KeyMap renders map key k of list f as gNMI key values.
func (f *Field) KeyMap(k reflect.Value) map[string]string {
	if k.Kind() != reflect.Struct {
		return map[string]string{f.keyNames[0]: FormatText(k)}
	}
	out := make(map[string]string, len(f.keyNames))
	for i, name := range f.keyNames {
		out[name] = FormatText(k.Field(i))
	}
	return out
}

// KeyOf returns the map key of list f for an entry struct, from its key
// leaves.
func (f *Field) KeyOf(entry reflect.Value) (reflect.Value, error) {
	if f.mapKey.Kind() != reflect.Struct {
		return leafKey(f, entry, 0, f.mapKey)
	}
	k := reflect.New(f.mapKey).Elem()
	for i := range f.keyNames {
		v, err := leafKey(f, entry, i, f.mapKey.Field(i).Type)
		if err != nil {
			return reflect.Value{}, err
		}
		k.Field(i).Set(v)
	}
	return k, nil
}

func leafKey(f *Field, entry reflect.Value, i int, t reflect.Type) (reflect.Value, error) {
	kf := f.entryKeys[i]
	if kf == nil {
		return reflect.Value{}, fmt.Errorf("list %q: no key leaf %q", f.Name, f.keyNames[i])
	}
	kv := entry.Elem().Field(kf.Index)
	if kv.Kind() == reflect.Pointer {
		if kv.IsNil() {
			return reflect.Value{}, fmt.Errorf("list %q: entry without its key %q", f.Name, f.keyNames[i])
		}
		kv = kv.Elem()
	} else if kv.IsZero() {
		return reflect.Value{}, fmt.Errorf("list %q: entry without its key %q", f.Name, f.keyNames[i])
	}
	return kv.Convert(t), nil
}

// keyPart returns component i of map key k of list f.
func keyPart(k reflect.Value, i int) reflect.Value {
	if k.Kind() != reflect.Struct {
		return k
	}
	return k.Field(i)
}

// configOf returns the "config" container field of a list entry (OpenConfig:
// the entry's keys are leafrefs to config leaves of the same names), or an
// invalid Value if the entry type has none.
func configOf(entry reflect.Value, ti *Type) reflect.Value {
	if ti.config == nil {
		return reflect.Value{}
	}
	return entry.Elem().Field(ti.config.Index)
}

// FillKeys sets the key leaves of a list entry struct of list f from map key
// k where they are unset: the entry's own and those of its config container
// if it has one (with createConfig, it gets one).
func (f *Field) FillKeys(entry, k reflect.Value, createConfig bool) {
	setKeyLeaves(entry, f.entryKeys, k, false)
	cv := configOf(entry, f.Elem)
	if !cv.IsValid() {
		return
	}
	if cv.IsNil() {
		if !createConfig {
			return
		}
		cv.Set(reflect.New(f.Elem.config.Elem.Go))
	}
	setKeyLeaves(cv, f.configKeys, k, false)
}

// SetKeys overwrites the key leaves of an entry struct with map key k.
func (f *Field) SetKeys(entry, k reflect.Value) { setKeyLeaves(entry, f.entryKeys, k, true) }

// setKeyLeaves sets the leaves (one per key component, nil: none) of the
// struct v from map key k.
func setKeyLeaves(v reflect.Value, leaves []*Field, k reflect.Value, overwrite bool) {
	for i, lf := range leaves {
		if lf == nil {
			continue
		}
		kv := keyPart(k, i)
		fv := v.Elem().Field(lf.Index)
		if fv.Kind() == reflect.Pointer {
			if !fv.IsNil() && !overwrite {
				continue
			}
			p := reflect.New(fv.Type().Elem())
			p.Elem().Set(kv.Convert(fv.Type().Elem()))
			fv.Set(p)
			continue
		}
		if !fv.IsZero() && !overwrite {
			continue
		}
		fv.Set(kv.Convert(fv.Type()))
	}
}

// CheckEntryKeys compares the key leaves an entry struct has (its own and
// its config container's) with map key k; it names the first that
// disagrees.
func (f *Field) CheckEntryKeys(entry, k reflect.Value) error {
	check := func(v reflect.Value, leaves []*Field, where string) error {
		if v.IsNil() {
			return nil
		}
		for i, lf := range leaves {
			if lf == nil {
				continue
			}
			fv := v.Elem().Field(lf.Index)
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					continue
				}
				fv = fv.Elem()
			} else if fv.IsZero() {
				continue
			}
			if got, want := FormatText(fv), FormatText(keyPart(k, i)); got != want {
				return fmt.Errorf("%s %q is %s but the path says %s", where, f.keyNames[i], Clip(got), Clip(want))
			}
		}
		return nil
	}
	if err := check(entry, f.entryKeys, "key"); err != nil {
		return err
	}
	if cv := configOf(entry, f.Elem); cv.IsValid() {
		return check(cv, f.configKeys, "config")
	}
	return nil
}

// sortKeys orders map keys: numerically for numbers, by string, and for
// key structs field by field in the key's order.
func sortKeys(keys []reflect.Value) {
	if len(keys) < 2 {
		return
	}
	sort.Slice(keys, func(i, j int) bool { return lessKey(keys[i], keys[j]) })
}

func lessKey(a, b reflect.Value) bool {
	if a.Type().Implements(goEnumType) { // by name, as the text of the key
		return FormatText(a) < FormatText(b)
	}
	switch a.Kind() {
	case reflect.String:
		return a.String() < b.String()
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return a.Uint() < b.Uint()
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() < b.Int()
	case reflect.Bool:
		return !a.Bool() && b.Bool()
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			x, y := a.Field(i), b.Field(i)
			if lessKey(x, y) {
				return true
			}
			if lessKey(y, x) {
				return false
			}
		}
		return false
	}
	return fmt.Sprint(a.Interface()) < fmt.Sprint(b.Interface())
}

var goEnumType = reflect.TypeOf((*ygot.GoEnum)(nil)).Elem()

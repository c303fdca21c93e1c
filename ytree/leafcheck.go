package ytree

import (
	"fmt"
	"reflect"
	"regexp"
	"unicode/utf8"

	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/util"
	"github.com/openconfig/ygot/ytypes"
)

// leafCheck is a leaf's type restrictions, prepared once: ytypes.Validate
// re-derives them (and rewrites every regular expression) on every call,
// which dominates validating a big tree. Types it does not cover (unions,
// decimal64, ...) fall back to ytypes.Validate.
type leafCheck struct {
	kind     yang.TypeKind
	lengths  yang.YangRange
	ranges   yang.YangRange
	patterns []*regexp.Regexp
	fallback bool
}

func newLeafCheck(e *yang.Entry) *leafCheck {
	t := e.Type
	c := &leafCheck{}
	if t == nil {
		c.fallback = true
		return c
	}
	c.kind = t.Kind
	switch t.Kind {
	case yang.Ystring:
		c.lengths = t.Length
		pats, posix := util.SanitizedPattern(t)
		for _, p := range pats {
			var re *regexp.Regexp
			var err error
			if posix {
				re, err = regexp.CompilePOSIX(p)
			} else {
				re, err = regexp.Compile(p)
			}
			if err != nil {
				c.fallback = true
				return c
			}
			c.patterns = append(c.patterns, re)
		}
	case yang.Yuint8, yang.Yuint16, yang.Yuint32, yang.Yuint64,
		yang.Yint8, yang.Yint16, yang.Yint32, yang.Yint64:
		c.ranges = t.Range
	case yang.Ybool, yang.Yenum:
	default:
		c.fallback = true
	}
	return c
}

// Check validates a leaf value of f against its schema type: v is the
// struct field (a pointer, an enum, a union or a leaf-list slice). It
// returns ytypes-style errors; Problems renders them for a path.
func (f *Field) Check(v reflect.Value) []error { return f.check.check(f, v) }

// check validates one leaf value (a pointer, an enum, or a leaf-list slice).
func (c *leafCheck) check(f *Field, v reflect.Value) []error {
	if c.fallback {
		return ytypes.Validate(f.vEntry, v.Interface())
	}
	if v.Kind() == reflect.Slice {
		var errs []error
		if la := f.vEntry.ListAttr; la != nil && la.MaxElements != 0 && uint64(v.Len()) > la.MaxElements {
			errs = append(errs, fmt.Errorf("%d elements, at most %d allowed", v.Len(), la.MaxElements))
		}
		for i := 0; i < v.Len(); i++ {
			if err := c.one(v.Index(i)); err != nil {
				errs = append(errs, err)
			}
		}
		return errs
	}
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if err := c.one(v); err != nil {
		return []error{err}
	}
	return nil
}

// checkError is a failed leaf check: the message, and blind, the same
// reason without the value, for secrets.
type checkError struct{ msg, blind string }

func (e *checkError) Error() string { return e.msg }

func blindErr(format string, args ...any) error {
	s := fmt.Sprintf(format, args...)
	return &checkError{msg: s, blind: s}
}

func (c *leafCheck) one(v reflect.Value) error {
	switch c.kind {
	case yang.Ystring:
		s := v.String()
		// YANG strings are Unicode text (RFC 7950 §9.4): whatever the
		// encoding it arrived in, bytes that are not UTF-8 are no string.
		if !utf8.ValidString(s) {
			return blindErr("not valid UTF-8")
		}
		if len(c.lengths) > 0 {
			n := yang.FromUint(uint64(utf8.RuneCountInString(s)))
			if !inRange(c.lengths, n) {
				return blindErr("length %s is outside range %v", n, c.lengths)
			}
		}
		for _, re := range c.patterns {
			if !re.MatchString(s) {
				return &checkError{
					msg:   fmt.Sprintf("%q does not match regular expression pattern %q", Clip(s), re),
					blind: fmt.Sprintf("does not match regular expression pattern %q", re),
				}
			}
		}
	case yang.Yuint8, yang.Yuint16, yang.Yuint32, yang.Yuint64:
		if len(c.ranges) > 0 && !inRange(c.ranges, yang.FromUint(v.Uint())) {
			return fmt.Errorf("unsigned integer value %d is outside specified ranges", v.Uint())
		}
	case yang.Yint8, yang.Yint16, yang.Yint32, yang.Yint64:
		if len(c.ranges) > 0 && !inRange(c.ranges, yang.FromInt(v.Int())) {
			return fmt.Errorf("signed integer value %d is outside specified ranges", v.Int())
		}
	case yang.Yenum:
		if v.Int() == 0 {
			return fmt.Errorf("enumeration value is unset")
		}
	}
	return nil
}

func inRange(r yang.YangRange, n yang.Number) bool {
	for _, y := range r {
		if !n.Less(y.Min) && !y.Max.Less(n) {
			return true
		}
	}
	return false
}

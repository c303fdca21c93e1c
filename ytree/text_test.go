package ytree

import (
	"reflect"
	"strings"
	"testing"
)

// TestParseTextIntegers: an integer's text is an integer of the type's
// range, or an error that says which it is not; never a truncation, never
// a wrapped (negative) number.
func TestParseTextIntegers(t *testing.T) {
	u32 := reflect.TypeOf(uint32(0))
	for _, tc := range []struct {
		in, want string // want: the value, or a substring of the error
	}{
		{"100", "100"},
		{"100.9", `"100.9" is not a uint32`},
		{"1e3", `"1e3" is not a uint32`},
		{"18446744073709551616", `is not a uint32: out of range 0..4294967295`},
		{"4294967296", `is not a uint32: out of range 0..4294967295`},
		{"-1", `"-1" is not a uint32: out of range 0..4294967295`},
		{"-99999999999999999999", `out of range 0..4294967295`},
		{" 1", `is not a uint32`},
	} {
		v, err := ParseText(u32, tc.in)
		if err == nil {
			if got := FormatText(v); got != tc.want {
				t.Errorf("%q: %s, want %s", tc.in, got, tc.want)
			}
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "-1 ") && tc.in != "-1" {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
	if _, err := ParseText(reflect.TypeOf(int8(0)), "200"); err == nil || !strings.Contains(err.Error(), "out of range -128..127") {
		t.Errorf("int8 200: %v", err)
	}
}

// TestClip: errors echo at most 64 bytes of a value, cut at a rune.
func TestClip(t *testing.T) {
	if got := Clip("short"); got != "short" {
		t.Errorf("Clip(short) = %q", got)
	}
	long := strings.Repeat("é", 1000) // two bytes a rune
	got := Clip(long)
	if len(got) > 64+3 || !strings.HasSuffix(got, "...") || !strings.HasPrefix(long, strings.TrimSuffix(got, "...")) {
		t.Errorf("Clip(long) = %q", got)
	}
	_, err := ParseText(reflect.TypeOf(uint32(0)), strings.Repeat("9", 1<<20))
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("a megabyte of digits: error of %d bytes", len(err.Error()))
	}
}

package ytree

import (
	"reflect"
	"strings"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
)

// TestPreSharedKeyRules: a pre-shared key is one line of Unicode text
// (the YANG pattern of its type refuses control characters and line
// separators; the leaf checks refuse bytes that are not UTF-8, for every
// string), and the problem says why without showing the key.
func TestPreSharedKeyRules(t *testing.T) {
	keyField := field(t, "crypto", "isakmp", "keys", "key", "config", "key")
	for _, tc := range []struct {
		key, reason string
	}{
		{"good key 1234", ""},
		{"nul\x00inside", "does not match regular expression pattern"},
		{"two\nlines", "does not match regular expression pattern"},
		{"cr\rlf", "does not match regular expression pattern"},
		{"tab\tbed", "does not match regular expression pattern"},
		{"line\u2028separator", "does not match regular expression pattern"},
		{"bad\xffutf8", "not valid UTF-8"},
		{strings.Repeat("k", 129), "length 129 is outside range 1..128"},
	} {
		d := &gen.Device{}
		d.GetOrCreateCrypto().GetOrCreateIsakmp().GetOrCreateKeys().GetOrCreateKey("192.0.2.9").GetOrCreateConfig().Key = ygot.String(tc.key)
		d.Crypto.Isakmp.Keys.Key["192.0.2.9"].Config.Address = ygot.String("192.0.2.9")
		ps := Validate(d, true)
		if tc.reason == "" {
			if len(ps) > 0 {
				t.Errorf("%q: %v", tc.key, ps)
			}
			continue
		}
		if len(ps) != 1 || !strings.Contains(ps[0].Reason, tc.reason) || !strings.Contains(ps[0].Reason, Redacted) {
			t.Errorf("%q: problems %v, want one saying %q", tc.key, ps, tc.reason)
			continue
		}
		if strings.Contains(ps[0].String(), tc.key[:3]) && tc.key[:3] != "kkk" {
			t.Errorf("%q: the problem shows the key: %v", tc.key, ps[0])
		}
		if errs := keyField.Check(reflect.ValueOf(ygot.String(tc.key))); len(errs) == 0 {
			t.Errorf("%q: Field.Check accepts it", tc.key)
		}
	}
	// Every string leaf refuses bytes that are not UTF-8.
	d := &gen.Device{}
	d.GetOrCreateCrypto().GetOrCreateTransformSets().GetOrCreateTransformSet("ts").GetOrCreateConfig().Name = ygot.String("ts\xfe")
	if ps := Validate(d, true); len(ps) == 0 || !strings.Contains(ps[len(ps)-1].Reason, "UTF-8") {
		t.Errorf("invalid UTF-8 in a name: %v", ps)
	}
}

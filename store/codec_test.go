package store

import (
	"encoding/json"
	"reflect"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"

	"github.com/spiagent/spiagent/gen"
)

// TestCodecMatchesYgot: the package's JSON codec decodes exactly what
// ytypes.Unmarshal decodes, and what it emits ygot reads back unchanged.
func TestCodecMatchesYgot(t *testing.T) {
	big, err := EmitJSONWithSecrets(bigConfig(50), true)
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]byte{
		"seed/router-a": readExample(t, "seed/router-a.json"),
		"seed/router-b": readExample(t, "seed/router-b.json"),
		"lab/router-a":  readExample(t, "lab/router-a.json"),
		"big50":         big,
		"unions and 64-bit": []byte(`{"spiagent-crypto:crypto":{"access-lists":{"access-list":[{"name":"a","config":{"name":"a"},"entries":{"entry":[
			{"sequence":1,"config":{"sequence":1,"action":"permit","protocol":"tcp","source-port-min":1,"source-port-max":2}},
			{"sequence":2,"config":{"sequence":2,"action":"deny","protocol":47}}]}}]},
			"isakmp":{"config":{"invalid-spi-recovery":true,"nat-keepalive":30},"policies":{"policy":[{"priority":3,"config":{"priority":3,"encryption":"spiagent-types:aes-256","group":"group14"}}]}},
			"crypto-maps":{"crypto-map":[{"name":"m","config":{"name":"m"},"entries":{"entry":[{"sequence":5,"config":{"sequence":5,"pfs":"group19","sa-lifetime-kilobytes":4294967295,"peer":["192.0.2.1","192.0.2.2"]}}]}}]}}}`),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			mine, err := LoadJSON(in)
			if err != nil {
				t.Fatal(err)
			}
			var tree any
			if err := json.Unmarshal(in, &tree); err != nil {
				t.Fatal(err)
			}
			theirs := &gen.Device{}
			if err := ytypes.Unmarshal(gen.SchemaTree["Device"], theirs, tree); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(mine, theirs) {
				n, _ := ygot.Diff(theirs, mine)
				t.Fatalf("decoders differ: %v", n)
			}
			for _, ietf := range []bool{true, false} {
				out, err := EmitJSONWithSecrets(mine, ietf)
				if err != nil {
					t.Fatal(err)
				}
				var tree any
				if err := json.Unmarshal(out, &tree); err != nil {
					t.Fatalf("emitted invalid JSON: %v\n%s", err, out)
				}
				back := &gen.Device{}
				if err := ytypes.Unmarshal(gen.SchemaTree["Device"], back, tree); err != nil {
					t.Fatalf("ygot cannot read what we emit (ietf=%v): %v\n%s", ietf, err, out)
				}
				if !reflect.DeepEqual(back, mine) {
					n, _ := ygot.Diff(mine, back)
					t.Fatalf("round trip (ietf=%v) differs: %v", ietf, n)
				}
			}
			// and our output equals ygot's RFC 7951 JSON, as data
			ours, _ := EmitJSONWithSecrets(mine, true)
			ref, err := ygot.EmitJSON(mine, &ygot.EmitJSONConfig{Format: ygot.RFC7951, SkipValidation: true, RFC7951Config: &ygot.RFC7951JSONConfig{AppendModuleName: true}})
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			json.Unmarshal(ours, &a)
			json.Unmarshal([]byte(ref), &b)
			if d := cmp.Diff(normalize(b), normalize(a)); d != "" {
				t.Errorf("JSON differs from ygot.EmitJSON (-ygot +ours):\n%s", d)
			}
		})
	}
}

// normalize sorts the arrays of objects (YANG lists: their order is not data).
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			x[k] = normalize(c)
		}
	case []any:
		for i, c := range x {
			x[i] = normalize(c)
		}
		if len(x) > 0 {
			if _, ok := x[0].(map[string]any); ok {
				sort.Slice(x, func(i, j int) bool {
					a, _ := json.Marshal(x[i])
					b, _ := json.Marshal(x[j])
					return string(a) < string(b)
				})
			}
		}
	}
	return v
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct{ desc, in, want string }{
		{"string for uint", `{"spiagent-crypto:crypto":{"isakmp":{"config":{"nat-keepalive":"x"}}}}`, `leaf "nat-keepalive": want an integer of uint16`},
		{"overflow", `{"spiagent-crypto:crypto":{"isakmp":{"config":{"nat-keepalive":70000}}}}`, "want an integer of uint16"},
		{"fraction", `{"spiagent-crypto:crypto":{"isakmp":{"config":{"nat-keepalive":1.5}}}}`, "want an integer"},
		{"bad enum", `{"spiagent-crypto:crypto":{"isakmp":{"policies":{"policy":[{"priority":1,"config":{"hash":"crc"}}]}}}}`, `"crc" is not one of`},
		{"list not array", `{"spiagent-crypto:crypto":{"isakmp":{"policies":{"policy":{}}}}}`, "needs a JSON array"},
		{"entry without key", `{"spiagent-crypto:crypto":{"isakmp":{"policies":{"policy":[{"config":{}}]}}}}`, `without its key "priority"`},
		{"duplicate key", `{"spiagent-crypto:crypto":{"isakmp":{"policies":{"policy":[{"priority":1},{"priority":1}]}}}}`, "duplicate key"},
		{"bad union", `{"spiagent-crypto:crypto":{"access-lists":{"access-list":[{"name":"a","entries":{"entry":[{"sequence":1,"config":{"protocol":"smtp"}}]}}]}}}`, `leaf "protocol"`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := LoadJSON([]byte(tc.in))
			if err == nil || !contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0))
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

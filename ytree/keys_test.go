package ytree

import (
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
)

// field returns the schema child at a path of names from the root.
func field(t *testing.T, names ...string) *Field {
	t.Helper()
	ti := Root()
	var f *Field
	for _, n := range names {
		if f = ti.Field(n); f == nil {
			t.Fatalf("no field %s", n)
		}
		ti = f.Elem
	}
	return f
}

func TestParseKey(t *testing.T) {
	policies := field(t, "crypto", "isakmp", "policies", "policy")
	keys := field(t, "crypto", "isakmp", "keys", "key")
	sas := field(t, "crypto", "ipsec", "sas", "sa")
	tests := []struct {
		desc    string
		f       *Field
		keys    map[string]string
		want    any
		wantErr string
	}{
		{"uint", policies, map[string]string{"priority": "10"}, uint16(10), ""},
		{"string", keys, map[string]string{"address": "192.0.2.1"}, "192.0.2.1", ""},
		{"composite with enum", sas, map[string]string{"destination-address": "192.0.2.2", "protocol": "ah", "spi": "256"},
			gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_Key{DestinationAddress: "192.0.2.2", Protocol: gen.SpiagentTypes_IpsecProtocol_ah, Spi: 256}, ""},
		{"enum with module prefix", sas, map[string]string{"destination-address": "192.0.2.2", "protocol": "spiagent-types:esp", "spi": "1"},
			gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_Key{DestinationAddress: "192.0.2.2", Protocol: gen.SpiagentTypes_IpsecProtocol_esp, Spi: 1}, ""},
		{"not a number", policies, map[string]string{"priority": "one"}, nil, `key "one" is not a uint16`},
		{"out of range", policies, map[string]string{"priority": "70000"}, nil, `is not a uint16`},
		{"unknown enum", sas, map[string]string{"destination-address": "192.0.2.2", "protocol": "gre", "spi": "1"}, nil, `key protocol: "gre" is not a value of E_SpiagentTypes_IpsecProtocol`},
		{"wrong key", policies, map[string]string{"prio": "1"}, nil, `list "policy" is keyed by "priority" only`},
		{"missing key", sas, map[string]string{"destination-address": "192.0.2.2", "spi": "1"}, nil, `list "sa" is keyed by [destination-address protocol spi]`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			k, err := tc.f.ParseKey(tc.keys)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, k.Interface()); d != "" {
				t.Errorf("key (-want +got):\n%s", d)
			}
			// and back: the path element has the same keys
			if d := cmp.Diff(tc.f.KeyElem(k).GetKey(), normKeys(tc.keys)); d != "" {
				t.Errorf("KeyElem (-got +want):\n%s", d)
			}
		})
	}
}

// normKeys drops module prefixes from key values (the canonical text form).
func normKeys(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = stripPrefix(v)
	}
	return out
}

func TestPathStringEscapes(t *testing.T) {
	p := []*gpb.PathElem{{Name: "crypto"}, {Name: "access-lists"}, {Name: "access-list", Key: map[string]string{"name": `a]b\c`}},
		{Name: "sa", Key: map[string]string{"spi": "1", "protocol": "esp", "destination-address": "192.0.2.1"}}}
	want := `/crypto/access-lists/access-list[name=a\]b\\c]/sa[destination-address=192.0.2.1][protocol=esp][spi=1]`
	if got := PathString(p); got != want {
		t.Errorf("PathString = %s, want %s", got, want)
	}
	// ygot's parser reads an escaped "]" back.
	back, err := ygot.StringToStructuredPath(`/a/b[name=x\]y]`)
	if err != nil {
		t.Fatal(err)
	}
	if got := PathString(back.GetElem()); got != `/a/b[name=x\]y]` {
		t.Errorf("round trip: %s", got)
	}
	if PathString(nil) != "/" {
		t.Error("empty path is not /")
	}
}

// TestWriterCompositeKeys: the Writer writes and deletes entries of a list
// with a composite key (the IPsec SAs), creating them with their key
// leaves, and the diff bounded by its touched keys sees exactly that.
func TestWriterCompositeKeys(t *testing.T) {
	old := &gen.Device{}
	for spi := uint32(1); spi <= 50; spi++ {
		old.GetOrCreateCrypto().GetOrCreateIpsec().GetOrCreateSas().GetOrCreateSa("192.0.2.1", gen.SpiagentTypes_IpsecProtocol_esp, spi).
			GetOrCreateState().Packets = ygot.Uint64(uint64(spi))
	}
	w := NewWriter(old)
	leaf := elems(t, "/crypto/ipsec/sas/sa[destination-address=192.0.2.1][protocol=esp][spi=7]/state/packets")
	tg, err := w.Descend(leaf, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetLeaf(tg.Field, tg.Parent, &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: 700}}); err != nil {
		t.Fatal(err)
	}
	created := elems(t, "/crypto/ipsec/sas/sa[destination-address=198.51.100.1][protocol=ah][spi=9]/state/packets")
	if tg, err = w.Descend(created, true); err != nil {
		t.Fatal(err)
	}
	if err := SetLeaf(tg.Field, tg.Parent, &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: 1}}); err != nil {
		t.Fatal(err)
	}
	if tg, err = w.Descend(elems(t, "/crypto/ipsec/sas/sa[destination-address=192.0.2.1][protocol=esp][spi=8]"), false); err != nil || !w.Delete(tg) {
		t.Fatalf("delete: %v", err)
	}
	if _, err := w.Descend(elems(t, "/crypto/ipsec/sas/sa[destination-address=192.0.2.1][protocol=esp][spi=99]/state"), false); err != ErrNotFound {
		t.Errorf("descend into a missing entry: %v, want ErrNotFound", err)
	}
	nsa := w.Root().GetCrypto().GetIpsec().GetSas().GetSa("198.51.100.1", gen.SpiagentTypes_IpsecProtocol_ah, 9)
	if nsa.GetDestinationAddress() != "198.51.100.1" || nsa.GetProtocol() != gen.SpiagentTypes_IpsecProtocol_ah || nsa.GetSpi() != 9 {
		t.Errorf("created entry %+v: want its key leaves", nsa)
	}
	var got []string
	visited := 0
	d := Differ{Writer: w,
		Leaf: func(p []*gpb.PathElem, _ *Field, _, nv reflect.Value) {
			if nv.IsValid() {
				got = append(got, PathString(p))
			} else {
				got = append(got, "-"+PathString(p))
			}
		},
		Entry: func([]*gpb.PathElem, *Field, reflect.Value, reflect.Value, reflect.Value) { visited++ },
	}
	d.Diff(old, w.Root())
	want := []string{
		"/crypto/ipsec/sas/sa[destination-address=192.0.2.1][protocol=esp][spi=7]/state/packets",
		"/crypto/ipsec/sas/sa[destination-address=198.51.100.1][protocol=ah][spi=9]/destination-address",
		"/crypto/ipsec/sas/sa[destination-address=198.51.100.1][protocol=ah][spi=9]/protocol",
		"/crypto/ipsec/sas/sa[destination-address=198.51.100.1][protocol=ah][spi=9]/spi",
		"/crypto/ipsec/sas/sa[destination-address=198.51.100.1][protocol=ah][spi=9]/state/packets",
		"-/crypto/ipsec/sas/sa[destination-address=192.0.2.1][protocol=esp][spi=8]/state/packets",
		"-/crypto/ipsec/sas/sa[destination-address=192.0.2.1][protocol=esp][spi=8]/destination-address",
		"-/crypto/ipsec/sas/sa[destination-address=192.0.2.1][protocol=esp][spi=8]/protocol",
		"-/crypto/ipsec/sas/sa[destination-address=192.0.2.1][protocol=esp][spi=8]/spi",
	}
	sortStrings := cmp.Transformer("sort", func(in []string) []string {
		out := append([]string(nil), in...)
		for i := range out {
			for j := i; j > 0 && out[j] < out[j-1]; j-- {
				out[j], out[j-1] = out[j-1], out[j]
			}
		}
		return out
	})
	if d := cmp.Diff(want, got, sortStrings); d != "" {
		t.Errorf("diff (-want +got):\n%s", d)
	}
	if visited != 3 {
		t.Errorf("the diff visited %d entries, want the 3 touched of 51", visited)
	}
	if old.GetCrypto().GetIpsec().GetSas().GetSa("192.0.2.1", gen.SpiagentTypes_IpsecProtocol_esp, 7).GetState().GetPackets() != 7 {
		t.Error("the old tree was modified")
	}
}

// TestTypedValueMatchesYgot: the direct encoder gives what
// ygot.EncodeTypedValue gives for every leaf of a populated tree.
func TestTypedValueMatchesYgot(t *testing.T) {
	d := loadSeed(t)
	c := d.GetCrypto()
	st := c.GetOrCreateIpsec().GetOrCreateSas().GetOrCreateSa("192.0.2.2", gen.SpiagentTypes_IpsecProtocol_esp, 7).GetOrCreateState()
	st.Bytes, st.Direction, st.Mode = ygot.Uint64(1<<40), gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State_Direction_inbound, gen.SpiagentTypes_IpsecMode_tunnel
	e := c.GetAccessLists().GetOrCreateAccessList("150").GetOrCreateEntries().GetOrCreateEntry(20).GetOrCreateConfig()
	e.Protocol = gen.UnionUint8(47)
	n := 0
	err := Leaves(RootNode(d), func(l Leaf) error {
		want, err := ygot.EncodeTypedValue(l.Value.Interface(), gpb.Encoding_JSON)
		if err != nil {
			return err
		}
		if !cmp.Equal(want.String(), l.Val.String()) {
			t.Errorf("%s: ours %v, ygot %v", PathString(l.Path), l.Val, want)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 40 {
		t.Errorf("only %d leaves", n)
	}
}

func TestSetLeaf(t *testing.T) {
	cfg := field(t, "crypto", "isakmp", "policies", "policy", "config").Elem
	ts := field(t, "crypto", "crypto-maps", "crypto-map", "entries", "entry", "config").Elem
	acl := field(t, "crypto", "access-lists", "access-list", "entries", "entry", "config").Elem
	key := field(t, "crypto", "isakmp", "keys", "key", "config").Elem
	str := func(s string) *gpb.TypedValue { return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: s}} }
	u := func(n uint64) *gpb.TypedValue { return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: n}} }
	js := func(s string) *gpb.TypedValue {
		return &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: []byte(s)}}
	}
	tests := []struct {
		desc    string
		t       *Type
		leaf    string
		val     *gpb.TypedValue
		want    string // FormatText of the result
		wantErr string
	}{
		{"uint", cfg, "lifetime", u(600), "600", ""},
		{"int into uint", cfg, "lifetime", &gpb.TypedValue{Value: &gpb.TypedValue_IntVal{IntVal: 600}}, "600", ""},
		{"uint overflow", cfg, "priority", u(70000), "", `leaf "priority": want an integer of uint16, got unsigned integer 70000`},
		{"string for uint", cfg, "lifetime", str("forever"), "", `leaf "lifetime": want an integer of uint32, got string "forever"`},
		{"enum", cfg, "hash", str("md5"), "md5", ""},
		{"enum with prefix", cfg, "hash", str("spiagent-types:sha256"), "sha256", ""},
		{"bad enum", cfg, "encryption", str("rot13"), "", `"rot13" is not one of its enumeration's values`},
		{"json", cfg, "lifetime", js("900"), "900", ""},
		{"json string for uint", cfg, "lifetime", js(`"long"`), "", `want an integer of uint32`},
		{"leaf-list", ts, "peer", &gpb.TypedValue{Value: &gpb.TypedValue_LeaflistVal{LeaflistVal: &gpb.ScalarArray{Element: []*gpb.TypedValue{str("192.0.2.1"), str("192.0.2.2")}}}}, "", ""},
		{"leaf-list as scalar", ts, "transform-set", str("nope"), "", `leaf "transform-set": a leaf-list needs a list of values (leaflist_val or a JSON array), got string "nope"`},
		{"leaf-list as JSON string", ts, "transform-set", js(`"nope"`), "", `leaf-list "transform-set" needs a JSON array`},
		{"union enum", acl, "protocol", str("tcp"), "tcp", ""},
		{"union number", acl, "protocol", u(47), "47", ""},
		{"secret kept out of errors", key, "key", u(1234), "", `leaf "key": want a string, got <redacted>`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			v := tc.t.New()
			f := tc.t.Field(tc.leaf)
			err := SetLeaf(f, v, tc.val)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := FormatText(v.Elem().Field(f.Index)); tc.want != "" && got != tc.want {
				t.Errorf("value %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSetText(t *testing.T) {
	acl := field(t, "crypto", "access-lists", "access-list", "entries", "entry", "config").Elem
	cm := field(t, "crypto", "crypto-maps", "crypto-map", "entries", "entry", "config").Elem
	pol := field(t, "crypto", "isakmp", "policies", "policy", "config").Elem
	v := acl.New()
	for _, tc := range []struct{ leaf, text, want string }{
		{"protocol", "tcp", "tcp"}, {"protocol", "47", "47"}, {"source-port-min", "500", "500"}, {"action", "permit", "permit"},
	} {
		if err := SetText(acl.Field(tc.leaf), v, tc.text); err != nil {
			t.Fatalf("%s=%s: %v", tc.leaf, tc.text, err)
		}
		if got := FormatText(v.Elem().Field(acl.Field(tc.leaf).Index)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.leaf, got, tc.want)
		}
	}
	c := cm.New()
	for _, p := range []string{"192.0.2.1", "192.0.2.2"} {
		if err := SetText(cm.Field("peer"), c, p); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.Interface().(*gen.CryptoMapEntryConfig).Peer; len(got) != 2 || got[1] != "192.0.2.2" {
		t.Errorf("peers %v", got)
	}
	if err := SetText(pol.Field("lifetime"), pol.New(), "forever"); err == nil || !strings.Contains(err.Error(), `leaf "lifetime": "forever" is not a uint32`) {
		t.Errorf("bad number: %v", err)
	}
	if err := SetText(pol.Field("hash"), pol.New(), "crc"); err == nil || !strings.Contains(err.Error(), `"crc" is not a value of`) {
		t.Errorf("bad enum: %v", err)
	}
}

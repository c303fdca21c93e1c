package ytree

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
)

func loadSeed(t *testing.T) *gen.Device {
	t.Helper()
	b, err := os.ReadFile("../examples/lab/router-a.json")
	if err != nil {
		t.Fatal(err)
	}
	d := &gen.Device{}
	if err := gen.Unmarshal(b, d); err != nil {
		t.Fatal(err)
	}
	return d
}

func elems(t *testing.T, s string) []*gpb.PathElem {
	t.Helper()
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p.GetElem()
}

func TestMatch(t *testing.T) {
	d := loadSeed(t)
	tests := []struct {
		pattern string
		want    []string
	}{
		{"/crypto/interfaces/interface[name=wan0]/config/ipv4-address", []string{"/crypto/interfaces/interface[name=wan0]/config/ipv4-address"}},
		{"/crypto/interfaces/interface/config/ipv4-prefix-length", []string{
			"/crypto/interfaces/interface[name=lan0]/config/ipv4-prefix-length",
			"/crypto/interfaces/interface[name=wan0]/config/ipv4-prefix-length"}},
		{"/crypto/interfaces/interface[name=*]/name", []string{"/crypto/interfaces/interface[name=lan0]/name", "/crypto/interfaces/interface[name=wan0]/name"}},
		{"/crypto/*/transform-set/config/ah", []string{"/crypto/transform-sets/transform-set[name=auth2]/config/ah"}},
		{"/crypto/.../match-address", []string{"/crypto/crypto-maps/crypto-map[name=testtag1]/entries/entry[sequence=10]/config/match-address"}},
		{"/crypto/access-lists/...", []string{
			"/crypto/access-lists/access-list[name=150]/name",
			"/crypto/access-lists/access-list[name=150]/config/name",
			"/crypto/access-lists/access-list[name=150]/entries/entry[sequence=10]/sequence",
			"/crypto/access-lists/access-list[name=150]/entries/entry[sequence=10]/config/action",
			"/crypto/access-lists/access-list[name=150]/entries/entry[sequence=10]/config/destination",
			"/crypto/access-lists/access-list[name=150]/entries/entry[sequence=10]/config/protocol",
			"/crypto/access-lists/access-list[name=150]/entries/entry[sequence=10]/config/sequence",
			"/crypto/access-lists/access-list[name=150]/entries/entry[sequence=10]/config/source"}},
		{"/crypto/isakmp/policies/policy[priority=1]", []string{"/crypto/isakmp/policies/policy[priority=1]"}},
		{"/crypto/isakmp/policies/policy[priority=2]", nil},
		{"/crypto/isakmp/policies/policy[priority=x]", nil},
		{"/crypto/ipsec/sas", nil},
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			nodes, err := Match(d, elems(t, tc.pattern))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range nodes {
				got = append(got, PathString(n.Path))
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestCoversOverlaps(t *testing.T) {
	tests := []struct {
		pattern, path    string
		covers, overlaps bool
	}{
		{"/crypto/ipsec/sas", "/crypto/ipsec/sas/sa[spi=1]/state/packets", true, true},
		{"/crypto/ipsec/sas/sa[spi=*]/state/packets", "/crypto/ipsec/sas/sa[spi=1]/state/packets", true, true},
		{"/crypto/ipsec/sas/sa[spi=2]/state/packets", "/crypto/ipsec/sas/sa[spi=1]/state/packets", false, false},
		{"/crypto/ipsec/sas/sa/state/packets", "/crypto/ipsec/sas/sa[spi=1]", false, true},
		{"/crypto/.../packets", "/crypto/ipsec/sas/sa[spi=1]/state/packets", true, true},
		{"/crypto/.../packets", "/crypto/ipsec/sas/sa[spi=1]/state/bytes", false, true},
		{"/crypto/*/config", "/crypto/isakmp/config/dpd-interval", true, true},
		{"/crypto/isakmp", "/crypto/transform-sets/transform-set[name=a]", false, false},
	}
	for _, tc := range tests {
		if got := Covers(elems(t, tc.pattern), elems(t, tc.path)); got != tc.covers {
			t.Errorf("Covers(%s, %s) = %v", tc.pattern, tc.path, got)
		}
		if got := Overlaps(elems(t, tc.pattern), elems(t, tc.path)); got != tc.overlaps {
			t.Errorf("Overlaps(%s, %s) = %v", tc.pattern, tc.path, got)
		}
	}
}

// TestWriteJSONMatchesYgot: the direct emitter gives what ygot's
// ConstructIETFJSON / ConstructInternalJSON give.
func TestWriteJSONMatchesYgot(t *testing.T) {
	d := loadSeed(t)
	d.GetCrypto().GetOrCreateIpsec().GetOrCreateSas().GetOrCreateSa("192.0.2.2", gen.SpiagentTypes_IpsecProtocol_esp, 7).
		GetOrCreateState().Bytes = ygot.Uint64(1 << 40)
	d.GetCrypto().GetIsakmp().GetOrCreateConfig() // an empty container: omitted by both
	want, err := ygot.ConstructIETFJSON(d, &ygot.RFC7951JSONConfig{AppendModuleName: true})
	if err != nil {
		t.Fatal(err)
	}
	b := AppendJSON(nil, RootNode(d), JSONOptions{IETF: true})
	var got, w2 map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("bad JSON %s: %v", b, err)
	}
	wb, _ := json.Marshal(want)
	json.Unmarshal(wb, &w2)
	if d := cmp.Diff(w2, got); d != "" {
		t.Errorf("(-ygot +WriteJSON):\n%s", d)
	}
	// Plain JSON: the same shape (lists as arrays, unlike ygot's internal
	// format), no module names, 64-bit numbers as numbers.
	b = AppendJSON(nil, RootNode(d), JSONOptions{})
	for _, s := range []string{`{"crypto":{"access-lists":{"access-list":[{"config":{"name":"150"}`, `"bytes":1099511627776`} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("JSON lacks %s:\n%s", s, b)
		}
	}
}

func TestOverlay(t *testing.T) {
	cfg := loadSeed(t)
	st := &gen.Device{}
	st.GetOrCreateCrypto().GetOrCreateIsakmp().GetOrCreateKeys().GetOrCreateKey("192.0.2.2").GetOrCreateState().KeyConfigured = ygot.Bool(true)
	before, _ := ygot.DeepCopy(cfg)
	m := Overlay(cfg, st).(*gen.Device)
	k := m.GetCrypto().GetIsakmp().GetKeys().GetKey("192.0.2.2")
	if k.GetConfig().GetKey() != "1234" || !k.GetState().GetKeyConfigured() {
		t.Errorf("merged key entry %+v", k)
	}
	if m.GetCrypto().GetTransformSets() != cfg.GetCrypto().GetTransformSets() {
		t.Error("a subtree only one side has was copied instead of shared")
	}
	if d := cmp.Diff(before, ygot.GoStruct(cfg)); d != "" {
		t.Errorf("Overlay modified its input:\n%s", d)
	}
	if st.GetCrypto().GetIsakmp().GetKeys().GetKey("192.0.2.2").GetConfig() != nil {
		t.Error("Overlay modified the state tree")
	}
}

func TestDiff(t *testing.T) {
	old := loadSeed(t)
	w := NewWriter(old)
	root := w.Root()
	replace := func(path []*gpb.PathElem, v ygot.GoStruct) error {
		tg, err := w.Descend(path, true)
		if err != nil {
			return err
		}
		n := w.Own(v)
		if tg.IsEntry() {
			tg.Field.SetKeys(n, tg.Key)
		}
		w.Set(tg, n)
		return nil
	}
	// Writer-style edits: change a leaf, drop a leaf, drop a list entry,
	// add a list entry, change a leaf-list.
	if err := replace(elems(t, "/crypto/isakmp/policies/policy[priority=1]/config"), &gen.SpiagentCrypto_Crypto_Isakmp_Policies_Policy_Config{Priority: ygot.Uint16(1), Lifetime: ygot.Uint32(600)}); err != nil {
		t.Fatal(err)
	}
	if tg, err := w.Descend(elems(t, "/crypto/interfaces/interface[name=lan0]"), false); err != nil || !w.Delete(tg) {
		t.Fatal("delete lan0", err)
	}
	if err := replace(elems(t, "/crypto/transform-sets/transform-set[name=new]"), &gen.SpiagentCrypto_Crypto_TransformSets_TransformSet{Config: &gen.SpiagentCrypto_Crypto_TransformSets_TransformSet_Config{Name: ygot.String("new")}}); err != nil {
		t.Fatal(err)
	}
	e := root.GetCrypto().GetCryptoMaps().GetCryptoMap("testtag1").GetEntries().GetEntry(10)
	if err := replace(elems(t, "/crypto/crypto-maps/crypto-map[name=testtag1]/entries/entry[sequence=10]/config"), &gen.SpiagentCrypto_Crypto_CryptoMaps_CryptoMap_Entries_Entry_Config{
		Sequence: ygot.Uint32(10), Peer: []string{"192.0.2.2", "192.0.2.3"}, TransformSet: e.GetConfig().TransformSet, MatchAddress: e.GetConfig().MatchAddress}); err != nil {
		t.Fatal(err)
	}
	var got []string
	d := Differ{Writer: w,
		Leaf: func(p []*gpb.PathElem, _ *Field, _, nv reflect.Value) {
			if !nv.IsValid() {
				got = append(got, "-"+PathString(p))
				return
			}
			v, err := TypedValue(nv)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, PathString(p)+"="+v.String())
		},
		Removed: func(p []*gpb.PathElem, _ *Type) { got = append(got, "-"+PathString(p)) },
	}
	d.Diff(old, w.Root())
	want := []string{
		`/crypto/crypto-maps/crypto-map[name=testtag1]/entries/entry[sequence=10]/config/peer=leaflist_val:{element:{string_val:"192.0.2.2"} element:{string_val:"192.0.2.3"}}`,
		`-/crypto/crypto-maps/crypto-map[name=testtag1]/entries/entry[sequence=10]/config/type`,
		`-/crypto/interfaces/interface[name=lan0]`,
		`-/crypto/isakmp/policies/policy[priority=1]/config/authentication`,
		`/crypto/isakmp/policies/policy[priority=1]/config/lifetime=uint_val:600`,
		`/crypto/transform-sets/transform-set[name=new]/name=string_val:"new"`,
		`/crypto/transform-sets/transform-set[name=new]/config/name=string_val:"new"`,
	}
	norm := func(ss []string) []string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = strings.Join(strings.Fields(s), "")
		}
		return out
	}
	if d := cmp.Diff(norm(want), norm(got), cmp.Transformer("sort", func(in []string) []string {
		out := append([]string(nil), in...)
		sort.Strings(out)
		return out
	})); d != "" {
		t.Errorf("diff (-want +got):\n%s", d)
	}
	// Nothing changed: nothing reported.
	n := 0
	d = Differ{Leaf: func([]*gpb.PathElem, *Field, reflect.Value, reflect.Value) { n++ },
		Removed: func([]*gpb.PathElem, *Type) { n++ }}
	if d.Diff(old, old) || n != 0 {
		t.Errorf("%d changes between a tree and itself", n)
	}
}

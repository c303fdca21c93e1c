package validators

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

func seed(t *testing.T) *gen.Device {
	t.Helper()
	b, err := os.ReadFile("../../examples/seed/router-a.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := ytree.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func problemStrings(ps []ytree.Problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	sort.Strings(out)
	return out
}

// TestValidate: a whole configuration, every rule, each problem named by
// its path and, for a reference, the missing target in words.
func TestValidate(t *testing.T) {
	c := NewCrypto()
	if ps := c.Validate(seed(t)); len(ps) > 0 {
		t.Fatalf("the seed config has problems: %v", ps)
	}
	d := seed(t)
	cr := d.GetCrypto()
	e := cr.GetCryptoMaps().GetCryptoMap("testtag1").GetEntries().GetEntry(10).GetConfig()
	e.TransformSet = []string{"auth2", "nope"}
	e.Peer = append(e.Peer, "192.0.2.99")
	e.MatchAddress = ygot.String("151")
	cr.GetTransformSets().GetTransformSet("auth2").GetConfig().EspKeyBits = ygot.Uint16(128)
	cr.GetInterfaces().GetInterface("FastEthernet0/0").GetConfig().CryptoMap = ygot.String("nomap")
	cm := "/crypto/crypto-maps/crypto-map[name=testtag1]/entries/entry[sequence=10]/config"
	want := []string{
		cm + `/match-address: access list "151" does not exist`,
		cm + "/peer: no pre-shared key for peer 192.0.2.99 (crypto isakmp key ... address 192.0.2.99)",
		cm + `/transform-set: transform set "nope" does not exist`,
		`/crypto/interfaces/interface[name=FastEthernet0/0]/config/crypto-map: crypto map "nomap" does not exist`,
		"/crypto/transform-sets/transform-set[name=auth2]/config/esp-key-bits: esp-key-bits is only for esp-aes and esp-gcm",
	}
	sort.Strings(want)
	if d := cmp.Diff(want, problemStrings(c.Validate(d))); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
}

// TestCheckRemovals: removing something referenced is found through the
// reference counts and named where it dangles; undo restores the counts.
func TestCheckRemovals(t *testing.T) {
	c := NewCrypto()
	old := seed(t)
	c.Reset(old)
	w := ytree.NewWriter(old)
	w.Config = true
	p, _ := ygot.StringToStructuredPath("/crypto/transform-sets/transform-set[name=auth2]")
	tg, err := w.Descend(p.GetElem(), false)
	if err != nil || !w.Delete(tg) {
		t.Fatal(err)
	}
	var changes []ytree.EntryChange
	d := ytree.Differ{Writer: w, Leaf: func([]*gpb.PathElem, *ytree.Field, reflect.Value, reflect.Value) {},
		Entry: func(path []*gpb.PathElem, list *ytree.Field, _, ov, nv reflect.Value) {
			ec := ytree.EntryChange{Path: path, List: list}
			if ov.IsValid() {
				ec.Old = ov.Interface().(ygot.GoStruct)
			}
			if nv.IsValid() {
				ec.New = nv.Interface().(ygot.GoStruct)
			}
			changes = append(changes, ec)
		}}
	d.Diff(old, w.Root())
	ps, undo := c.Check(w.Root(), changes)
	if len(ps) != 1 || !strings.Contains(ps[0].String(), `entry[sequence=10]/config/transform-set: transform set "auth2" does not exist`) {
		t.Errorf("problems %v", ps)
	}
	undo()
	if msg := c.Drift(old); msg != "" {
		t.Error(msg)
	}
}

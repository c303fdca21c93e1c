package scale

import (
	"context"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/spiagent/spiagent/agent/validators"
	"github.com/spiagent/spiagent/store"
)

// TestConfigsValid: both routers' configurations are valid for the model
// and the store, and adding an entry to a running one is a valid update.
func TestConfigsValid(t *testing.T) {
	const n = 300
	for _, a := range []bool{true, false} {
		root, err := store.LoadJSON(RouterJSON(n, a))
		if err != nil {
			t.Fatalf("router A %v: %v", a, err)
		}
		if ps := store.Validate(root, validators.NewCrypto()); len(ps) > 0 {
			t.Fatalf("router A %v: %v", a, ps)
		}
		if got := len(root.GetCrypto().GetCryptoMaps().GetCryptoMap("hub").GetEntries().Entry); got != n {
			t.Fatalf("%d crypto-map entries, want %d", got, n)
		}
		st, err := store.Open(t.TempDir(), store.WithValidator(validators.NewCrypto()))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		ietf := func(b []byte) *gpb.TypedValue {
			return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: b}}
		}
		ctx := context.Background()
		if _, err := st.Commit(ctx, store.Tx{Ops: []store.Op{{Kind: store.OpReplace, Path: &gpb.Path{}, Val: ietf(RouterJSON(n, a))}}}); err != nil {
			t.Fatal(err)
		}
		crypto := &gpb.Path{Elem: []*gpb.PathElem{{Name: "crypto"}}}
		if _, err := st.Commit(ctx, store.Tx{Ops: []store.Op{{Kind: store.OpUpdate, Path: crypto, Val: ietf(AddEntryJSON(n, a))}}}); err != nil {
			t.Fatalf("add entry: %v", err)
		}
		if got := len(st.Running().Root.GetCrypto().GetCryptoMaps().GetCryptoMap("hub").GetEntries().Entry); got != n+1 {
			t.Errorf("%d entries after the add, want %d", got, n+1)
		}
	}
}

// TestInterfacesOnlyValid: the configuration the removal measurement
// pushes is valid and has no crypto map.
func TestInterfacesOnlyValid(t *testing.T) {
	for _, a := range []bool{true, false} {
		root, err := store.LoadJSON(InterfacesJSON(a))
		if err != nil {
			t.Fatalf("router A %v: %v", a, err)
		}
		if ps := store.Validate(root); len(ps) > 0 {
			t.Fatalf("router A %v: %v", a, ps)
		}
		if root.GetCrypto().GetCryptoMaps() != nil || len(root.GetCrypto().GetInterfaces().Interface) != 2 {
			t.Errorf("router A %v: want the two interfaces and no crypto map", a)
		}
	}
}

func TestPairsDistinct(t *testing.T) {
	seen := map[[2]string]bool{}
	for i := 0; i < MaxPairs; i++ {
		s, d := Pair(i)
		k := [2]string{s.String(), d.String()}
		if seen[k] {
			t.Fatalf("pair %d repeats %v", i, k)
		}
		seen[k] = true
		if s.As4()[3] < firstHost || s.As4()[3] >= firstHost+hostsPerSide || d.As4()[3] < firstHost || d.As4()[3] >= firstHost+hostsPerSide {
			t.Fatalf("pair %d out of the host range: %v", i, k)
		}
	}
}

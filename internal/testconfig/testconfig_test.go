package testconfig

import (
	"testing"

	"github.com/spiagent/spiagent/agent/validators"
	"github.com/spiagent/spiagent/store"
)

func TestBigJSONValidates(t *testing.T) {
	root, err := store.LoadJSON(BigJSON(300))
	if err != nil {
		t.Fatal(err)
	}
	if p := store.Validate(root, validators.NewCrypto()); len(p) > 0 {
		t.Fatalf("problems: %v", p)
	}
	if n := len(root.GetCrypto().GetCryptoMaps().GetCryptoMap("big").GetEntries().Entry); n != 300 {
		t.Fatalf("%d entries, want 300", n)
	}
}

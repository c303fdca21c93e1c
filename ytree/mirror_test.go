package ytree

import (
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/spiagent/spiagent/gen"
)

func mirrorPaths(old, new *gen.Device) (map[string]Mirror, []string) {
	got := map[string]Mirror{}
	var names []string
	Mirrors(old, new, func(m Mirror) {
		k := PathString(m.Path)
		if m.Gone {
			k = "-" + k
		}
		got[k] = m
		names = append(names, k)
	})
	sort.Strings(names)
	return got, names
}

// TestMirrors: the first walk reports every node with config and state
// (containers the config lacks too); later walks only the nodes whose
// config container changed, and entries that went away.
func TestMirrors(t *testing.T) {
	cfg := loadSeed(t)
	first, names := mirrorPaths(nil, cfg)
	for _, want := range []string{
		"/crypto/isakmp",
		"/crypto/isakmp/invalid-spi-recovery-limits",
		"/crypto/isakmp/policies/policy[priority=1]",
		"/crypto/isakmp/keys/key[address=192.0.2.2]",
		"/crypto/transform-sets/transform-set[name=auth2]",
		"/crypto/access-lists/access-list[name=150]",
		"/crypto/access-lists/access-list[name=150]/entries/entry[sequence=10]",
		"/crypto/crypto-maps/crypto-map[name=testtag1]",
		"/crypto/crypto-maps/crypto-map[name=testtag1]/entries/entry[sequence=10]",
		"/crypto/interfaces/interface[name=wan0]",
	} {
		if _, ok := first[want]; !ok {
			t.Errorf("first walk lacks %s; has %v", want, names)
		}
	}
	// The limits are not configured: their state shows the defaults.
	lim := first["/crypto/isakmp/invalid-spi-recovery-limits"]
	st := MirrorState(lim.State, lim.Config).Interface().(*gen.RecoveryLimitsState)
	if lim.Config.IsValid() || st.GetPerPeerRate() != 6 || st.GetGlobalRate() != 60 || st.GetDedupWindow() != 10 {
		t.Errorf("limits state %+v, want the YANG defaults", st)
	}
	// A policy: configured leaves copied, the rest defaulted.
	pol := first["/crypto/isakmp/policies/policy[priority=1]"]
	ps := MirrorState(pol.State, pol.Config).Interface().(*gen.SpiagentCrypto_Crypto_Isakmp_Policies_Policy_State)
	if ps.GetPriority() != 1 || ps.GetLifetime() != 180 || ps.Hash != gen.SpiagentTypes_IsakmpHash_sha || ps.Group != gen.SpiagentTypes_DhGroup_group1 {
		t.Errorf("policy state %+v", ps)
	}
	// The pre-shared key never reaches state.
	k := first["/crypto/isakmp/keys/key[address=192.0.2.2]"]
	if ks := MirrorState(k.State, k.Config).Interface().(*gen.IsakmpKeyState); ks.GetAddress() != "192.0.2.2" {
		t.Errorf("key state %+v", ks)
	}

	// A one-leaf change, a new entry and a removed one, made as the store
	// makes them (structural sharing).
	w := NewWriter(cfg)
	w.Config = true
	set := func(p string, v *gpb.TypedValue) {
		tg, err := w.Descend(elems(t, p), true)
		if err != nil {
			t.Fatal(err)
		}
		if err := SetLeaf(tg.Field, tg.Parent, v); err != nil {
			t.Fatal(err)
		}
	}
	set("/crypto/isakmp/policies/policy[priority=1]/config/lifetime", &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: 600}})
	set("/crypto/isakmp/policies/policy[priority=2]/config/hash", &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: "md5"}})
	tg, err := w.Descend(elems(t, "/crypto/interfaces/interface[name=lan0]"), false)
	if err != nil || !w.Delete(tg) {
		t.Fatal("delete lan0", err)
	}
	_, names = mirrorPaths(cfg, w.Root())
	want := []string{
		"-/crypto/interfaces/interface[name=lan0]",
		"/crypto/isakmp/policies/policy[priority=1]",
		"/crypto/isakmp/policies/policy[priority=2]",
	}
	if d := cmp.Diff(want, names); d != "" {
		t.Errorf("second walk (-want +got):\n%s", d)
	}
	// Nothing changed: nothing reported.
	if _, names = mirrorPaths(cfg, cfg); len(names) != 0 {
		t.Errorf("a walk of the same config reported %v", names)
	}
	// A container whose config went away shows its defaults again.
	w = NewWriter(cfg)
	w.Config = true
	tg, _ = w.Descend(elems(t, "/crypto/isakmp/config"), false)
	w.Delete(tg)
	got, names := mirrorPaths(cfg, w.Root())
	if m, ok := got["/crypto/isakmp"]; !ok || m.Config.IsValid() || len(names) != 1 {
		t.Errorf("removed isakmp config: %v", names)
	}
	is := MirrorState(got["/crypto/isakmp"].State, got["/crypto/isakmp"].Config).Interface().(*gen.IsakmpGlobalState)
	if is.InvalidSpiRecovery == nil || *is.InvalidSpiRecovery != false {
		t.Errorf("isakmp state %+v: want invalid-spi-recovery false (the default)", is)
	}
}

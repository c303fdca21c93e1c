package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/agent/validators"
	"github.com/spiagent/spiagent/gen"
)

func mustPath(t testing.TB, s string) *gpb.Path {
	t.Helper()
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		t.Fatalf("path %q: %v", s, err)
	}
	return p
}

func uintV(n uint64) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: n}}
}
func strV(s string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: s}}
}
func ietfV(s string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(s)}}
}
func jsonV(s string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: []byte(s)}}
}
func listV(ss ...string) *gpb.TypedValue {
	var el []*gpb.TypedValue
	for _, s := range ss {
		el = append(el, strV(s))
	}
	return &gpb.TypedValue{Value: &gpb.TypedValue_LeaflistVal{LeaflistVal: &gpb.ScalarArray{Element: el}}}
}

func upd(t testing.TB, p string, v *gpb.TypedValue) Op {
	return Op{Kind: OpUpdate, Path: mustPath(t, p), Val: v}
}
func rep(t testing.TB, p string, v *gpb.TypedValue) Op {
	return Op{Kind: OpReplace, Path: mustPath(t, p), Val: v}
}
func del(t testing.TB, p string) Op { return Op{Kind: OpDelete, Path: mustPath(t, p)} }

func readExample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", name))
	if err != nil {
		t.Fatalf("read example: %v", err)
	}
	return b
}

// seedStore opens a store in a temp dir holding router-a's config (commit 1).
func seedStore(t testing.TB, opts ...Option) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(dir, append(testOptions(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), Tx{Ops: []Op{{Kind: OpReplace, Path: &gpb.Path{}, Val: ietfV(string(readExample(t, "seed/router-a.json")))}}, User: "seed"}); err != nil {
		t.Fatalf("seed commit: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
}

func mustJSON(t testing.TB, d *gen.Device) string {
	t.Helper()
	b, err := EmitJSONWithSecrets(d, true)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func fileBytes(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// bigConfig builds a config with n crypto-map entries (one crypto map), n
// keys, n access lists of one entry each, one transform set and interface.
func bigConfig(n int) *gen.Device {
	d := &gen.Device{}
	c := d.GetOrCreateCrypto()
	ts := c.GetOrCreateTransformSets().GetOrCreateTransformSet("TS")
	ts.GetOrCreateConfig().Name = ygot.String("TS")
	ts.Config.EspEncryption = gen.SpiagentTypes_EspEncryption_esp_aes
	ts.Config.EspKeyBits = ygot.Uint16(256)
	ts.Config.EspIntegrity = gen.SpiagentTypes_EspIntegrity_esp_sha256_hmac
	pol := c.GetOrCreateIsakmp().GetOrCreatePolicies().GetOrCreatePolicy(1)
	pol.GetOrCreateConfig().Priority = ygot.Uint16(1)
	pol.Config.Lifetime = ygot.Uint32(180)
	cm := c.GetOrCreateCryptoMaps().GetOrCreateCryptoMap("VPN")
	cm.GetOrCreateConfig().Name = ygot.String("VPN")
	keys := c.Isakmp.GetOrCreateKeys()
	acls := c.GetOrCreateAccessLists()
	for i := 1; i <= n; i++ {
		peer := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		k := keys.GetOrCreateKey(peer)
		k.GetOrCreateConfig().Address = ygot.String(peer)
		k.Config.Key = ygot.String(fmt.Sprintf("key-%d", i))
		name := fmt.Sprintf("acl-%d", i)
		acl := acls.GetOrCreateAccessList(name)
		acl.GetOrCreateConfig().Name = ygot.String(name)
		ae := acl.GetOrCreateEntries().GetOrCreateEntry(10)
		ae.GetOrCreateConfig().Sequence = ygot.Uint32(10)
		ae.Config.Action = gen.SpiagentCrypto_Crypto_AccessLists_AccessList_Entries_Entry_Config_Action_permit
		ae.Config.Source = ygot.String("192.0.2.0/24")
		ae.Config.Destination = ygot.String(fmt.Sprintf("198.51.%d.0/24", i&255))
		e := cm.GetOrCreateEntries().GetOrCreateEntry(uint32(i))
		e.GetOrCreateConfig().Sequence = ygot.Uint32(uint32(i))
		e.Config.Peer = []string{peer}
		e.Config.TransformSet = []string{"TS"}
		e.Config.MatchAddress = ygot.String(name)
		e.Config.SaLifetimeSeconds = ygot.Uint32(3600)
	}
	ifc := c.GetOrCreateInterfaces().GetOrCreateInterface("eth0")
	ifc.GetOrCreateConfig().Name = ygot.String("eth0")
	ifc.Config.Ipv4Address = ygot.String("203.0.113.1")
	ifc.Config.Ipv4PrefixLength = ygot.Uint8(24)
	ifc.Config.CryptoMap = ygot.String("VPN")
	return d
}

// crypto returns the agent's crypto rules, the validator every store of
// the agent has (the store itself knows only YANG).
func crypto() Validator { return validators.NewCrypto() }

// testOptions are the options of the stores the tests open: a quiet logger
// and the agent's crypto validator.
func testOptions() []Option {
	return []Option{WithLogger(quietLogger()), WithValidator(crypto())}
}

// checkRefs fails if the reference counts of the store's crypto validator
// differ from a recount.
func checkRefs(t testing.TB, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.validators {
		if d, ok := v.(interface{ Drift(*gen.Device) string }); ok {
			if msg := d.Drift(s.Running().Root); msg != "" {
				t.Error(msg)
			}
		}
	}
}

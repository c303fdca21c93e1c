package intent

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ipsec"
)

func load(t *testing.T, name string) *gen.Device {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	d := &gen.Device{}
	if err := gen.Unmarshal(b, d); err != nil {
		t.Fatalf("unmarshal %s: %v", name, err)
	}
	return d
}

var netipEqual = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestSeedRouterA(t *testing.T) {
	in, err := FromConfig(load(t, "../../examples/seed/router-a.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Intent{
		Global: Global{
			InvalidSPIRecovery: true, NATTraversal: true, NATKeepalive: 20 * time.Second,
			DPDRetry: 2 * time.Second,
			Limits:   Limits{PerPeerPerMinute: 6, PerPeerBurst: 3, GlobalPerMinute: 60, DedupWindow: 10 * time.Second},
		},
		// crypto isakmp policy 1 / authentication pre-share / lifetime 180:
		// IOS defaults fill in DES, SHA-1 and group 1.
		Policies: []Policy{{Priority: 1, Encryption: alg.DES, Hash: alg.SHA1, Group: alg.MODP768, Lifetime: 180 * time.Second}},
		Keys:     map[netip.Addr]alg.Key{addr("10.2.2.2"): alg.Key("1234")},
		Interfaces: []Interface{
			{Name: "FastEthernet0/0", Prefix: pfx("10.1.1.1/8"), CryptoMap: "testtag1"},
			{Name: "FastEthernet0/1", Prefix: pfx("10.0.0.1/8")},
		},
		Tunnels: []Tunnel{{
			Map: "testtag1", Seq: 10, Interface: "FastEthernet0/0", Local: addr("10.1.1.1"),
			Peers: []netip.Addr{addr("10.2.2.2")},
			Transforms: []Transform{{
				Name: "auth2", AH: alg.HMACSHA1, ESP: alg.DES,
				ESPInteg: alg.HMACSHA1, Mode: alg.Tunnel,
				IOSString: "ah-sha-hmac esp-des esp-sha-hmac",
			}},
			ACL: "150",
			Rules: []Rule{{Seq: 10, Permit: true, Selector: ipsec.Selector{
				Src: pfx("10.0.0.1/32"), Dst: pfx("10.0.2.2/32")}}},
			Lifetime: 3600 * time.Second, LifeKB: 4608000,
		}},
	}
	if diff := cmp.Diff(want, in, netipEqual...); diff != "" {
		t.Errorf("intent (-want +got):\n%s", diff)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	in, err := FromConfig(load(t, "../../examples/lab/router-b.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(in), fmt.Sprintf("%v", in.Keys), fmt.Sprintf("%+v", *in), fmt.Sprintf("%#v", in.Keys)} {
		if strings.Contains(s, "1234") {
			t.Errorf("key leaked in %q", s)
		}
	}
}

func TestTransforms(t *testing.T) {
	u16 := func(v uint16) *uint16 { return &v }
	for _, tc := range []struct {
		desc    string
		cfg     gen.SpiagentCrypto_Crypto_TransformSets_TransformSet_Config
		want    string
		cipher  alg.Cipher // with its key size
		wantErr string
	}{
		{desc: "seed bundle", cfg: gen.SpiagentCrypto_Crypto_TransformSets_TransformSet_Config{
			Ah: gen.SpiagentTypes_AhTransform_ah_sha_hmac, EspEncryption: gen.SpiagentTypes_EspEncryption_esp_des,
			EspIntegrity: gen.SpiagentTypes_EspIntegrity_esp_sha_hmac}, want: "ah-sha-hmac esp-des esp-sha-hmac", cipher: alg.DES},
		{desc: "aes 256 sha256", cfg: gen.SpiagentCrypto_Crypto_TransformSets_TransformSet_Config{
			EspEncryption: gen.SpiagentTypes_EspEncryption_esp_aes, EspKeyBits: u16(256),
			EspIntegrity: gen.SpiagentTypes_EspIntegrity_esp_sha256_hmac}, want: "esp-aes 256 esp-sha256-hmac", cipher: alg.AES256},
		{desc: "gcm default 128", cfg: gen.SpiagentCrypto_Crypto_TransformSets_TransformSet_Config{
			EspEncryption: gen.SpiagentTypes_EspEncryption_esp_gcm}, want: "esp-gcm 128", cipher: alg.AESGCM128},
		{desc: "empty", cfg: gen.SpiagentCrypto_Crypto_TransformSets_TransformSet_Config{}, wantErr: "neither AH nor ESP"},
		// Moved from the agent's TestChildPoliciesFromTunnels: an unsupported
		// key size is a clear error, not a silent downgrade.
		{desc: "gcm 192", cfg: gen.SpiagentCrypto_Crypto_TransformSets_TransformSet_Config{
			EspEncryption: gen.SpiagentTypes_EspEncryption_esp_gcm, EspKeyBits: u16(192)}, wantErr: "unsupported ESP cipher"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			name := "t"
			tc.cfg.Name = &name
			got, err := TransformFromConfig(&tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.IOSString != tc.want || got.ESP != tc.cipher {
				t.Errorf("got %q %v, want %q %v", got.IOSString, got.ESP, tc.want, tc.cipher)
			}
		})
	}
}

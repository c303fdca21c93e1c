package gnmi

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/gen"
)

func TestCapabilities(t *testing.T) {
	e := newEnv(t, envOpts{})
	got, err := e.client().Capabilities(ro(), &gpb.CapabilityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &gpb.CapabilityResponse{
		SupportedModels: []*gpb.ModelData{
			{Name: "spiagent-crypto", Organization: "spiagent", Version: "2026-11-27"},
			{Name: "spiagent-types", Organization: "spiagent", Version: "2026-11-27"},
		},
		SupportedEncodings: []gpb.Encoding{gpb.Encoding_JSON, gpb.Encoding_JSON_IETF, gpb.Encoding_PROTO},
		GNMIVersion:        "0.10.0",
	}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Errorf("Capabilities (-want +got):\n%s", d)
	}
	// gen/ carries no revision: the one the server reports must be the
	// latest revision statement of each module.
	for _, m := range []string{"spiagent-crypto", "spiagent-types"} {
		b, err := os.ReadFile("../../yang/" + m + ".yang")
		if err != nil {
			t.Fatal(err)
		}
		rev := regexp.MustCompile(`(?m)^\s*revision\s+"?(\d{4}-\d{2}-\d{2})`).FindSubmatch(b)
		if rev == nil || string(rev[1]) != modelRevision(m) {
			t.Errorf("%s: yang revision %q, server reports %q", m, rev, modelRevision(m))
		}
	}
}

// addState puts an IPsec SA, IKE SA, invalid-SPI counters and an
// applied-config state container into the state tree.
func addState(t testing.TB, tel *telemetry.Tree) {
	t.Helper()
	err := tel.Update(func(tx *telemetry.Tx) error {
		if err := tx.PutIPsecSA(&gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa{State: &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State{
			DestinationAddress: ygot.String("192.0.2.2"), SourceAddress: ygot.String("192.0.2.1"),
			Protocol: gen.SpiagentTypes_IpsecProtocol_esp, Spi: ygot.Uint32(0x1001),
			Direction: gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State_Direction_outbound,
			Peer:      ygot.String("192.0.2.2"), CryptoMap: ygot.String("testtag1"), Packets: ygot.Uint64(7),
			Transform: ygot.String("ah-sha-hmac esp-des esp-sha-hmac"),
		}}); err != nil {
			return err
		}
		if err := tx.PutIKESA(&gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa{State: &gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State{
			ConnId: ygot.Uint32(1), LocalAddress: ygot.String("192.0.2.1"), RemoteAddress: ygot.String("192.0.2.2"),
			Status: gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State_Status_QM_IDLE,
		}}); err != nil {
			return err
		}
		if err := tx.Replace(telemetry.InvalidSPIStatePath(), &gen.SpiagentCrypto_Crypto_InvalidSpi_State{Received: ygot.Uint64(3)}); err != nil {
			return err
		}
		keyState := &gpb.Path{Elem: []*gpb.PathElem{{Name: "crypto"}, {Name: "isakmp"}, {Name: "keys"},
			{Name: "key", Key: map[string]string{"address": "192.0.2.2"}}, {Name: "state"}}}
		return tx.Replace(keyState, &gen.SpiagentCrypto_Crypto_Isakmp_Keys_Key_State{Address: ygot.String("192.0.2.2"), KeyConfigured: ygot.Bool(true)})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// updatesText renders a GetResponse as "path: value" lines.
func updatesText(resp *gpb.GetResponse) string {
	var b strings.Builder
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			p, _ := ygot.PathToString(u.GetPath())
			v := u.GetVal()
			var s string
			switch x := v.GetValue().(type) {
			case *gpb.TypedValue_JsonVal:
				s = "json " + string(x.JsonVal)
			case *gpb.TypedValue_JsonIetfVal:
				s = "ietf " + string(x.JsonIetfVal)
			default:
				s = valText(v)
			}
			b.WriteString(p + ": " + s + "\n")
		}
	}
	return b.String()
}

func TestGet(t *testing.T) {
	e := newEnv(t, envOpts{})
	addState(t, e.tel)
	c := e.client()
	const key = `/crypto/isakmp/keys/key[address=192.0.2.2]`
	tests := []struct {
		desc     string
		req      *gpb.GetRequest
		wantCode codes.Code
		wantErr  string
		want     string // updatesText
		contains []string
	}{
		{desc: "leaf JSON (gnmic default)",
			req:  &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/policies/policy[priority=1]/config/lifetime")}, Encoding: gpb.Encoding_JSON},
			want: "/crypto/isakmp/policies/policy[priority=1]/config/lifetime: json 180\n"},
		{desc: "leaf PROTO",
			req:  &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/policies/policy[priority=1]/config/lifetime")}, Encoding: gpb.Encoding_PROTO},
			want: "/crypto/isakmp/policies/policy[priority=1]/config/lifetime: uint_val:180\n"},
		{desc: "container JSON_IETF",
			req:  &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/transform-sets/transform-set[name=auth2]/config")}, Encoding: gpb.Encoding_JSON_IETF},
			want: `/crypto/transform-sets/transform-set[name=auth2]/config: ietf {"spiagent-crypto:ah":"ah-sha-hmac","spiagent-crypto:esp-encryption":"esp-des","spiagent-crypto:esp-integrity":"esp-sha-hmac","spiagent-crypto:name":"auth2"}` + "\n"},
		{desc: "prefix and relative path, origin",
			req:  &gpb.GetRequest{Prefix: &gpb.Path{Origin: "spiagent-crypto", Elem: path(t, "/crypto/interfaces").Elem}, Path: []*gpb.Path{path(t, "interface[name=*]/config/ipv4-address")}, Encoding: gpb.Encoding_JSON},
			want: "/crypto/interfaces/interface[name=lan0]/config/ipv4-address: json \"198.51.100.1\"\n/crypto/interfaces/interface[name=wan0]/config/ipv4-address: json \"192.0.2.1\"\n"},
		{desc: "missing key is a wildcard, module-qualified name",
			req:  &gpb.GetRequest{Path: []*gpb.Path{{Elem: []*gpb.PathElem{{Name: "spiagent-crypto:crypto"}, {Name: "interfaces"}, {Name: "interface"}, {Name: "config"}, {Name: "crypto-map"}}}}, Encoding: gpb.Encoding_JSON},
			want: "/crypto/interfaces/interface[name=wan0]/config/crypto-map: json \"testtag1\"\n"},
		{desc: "... wildcard",
			req:  &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/.../ipv4-prefix-length")}, Encoding: gpb.Encoding_JSON},
			want: "/crypto/interfaces/interface[name=lan0]/config/ipv4-prefix-length: json 24\n/crypto/interfaces/interface[name=wan0]/config/ipv4-prefix-length: json 24\n"},
		{desc: "* element wildcard",
			req:  &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/*/transform-set/config/name")}, Encoding: gpb.Encoding_PROTO},
			want: "/crypto/transform-sets/transform-set[name=auth2]/config/name: string_val:\"auth2\"\n"},
		{desc: "deprecated element field",
			req:  &gpb.GetRequest{Path: []*gpb.Path{{Element: []string{"crypto", "isakmp", "config", "invalid-spi-recovery"}}}, Encoding: gpb.Encoding_JSON},
			want: "/crypto/isakmp/config/invalid-spi-recovery: json true\n"},
		{desc: "state only",
			req:  &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/ipsec/sas/sa/state/packets")}, Type: gpb.GetRequest_STATE, Encoding: gpb.Encoding_JSON_IETF},
			want: "/crypto/ipsec/sas/sa[destination-address=192.0.2.2][protocol=esp][spi=4097]/state/packets: ietf \"7\"\n"},
		{desc: "config type does not see state",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/ipsec/sas")}, Type: gpb.GetRequest_CONFIG, Encoding: gpb.Encoding_JSON},
			wantCode: codes.NotFound, wantErr: "/crypto/ipsec/sas: no config data"},
		{desc: "state type does not see config",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/transform-sets")}, Type: gpb.GetRequest_STATE, Encoding: gpb.Encoding_JSON},
			wantCode: codes.NotFound, wantErr: "no state data"},
		{desc: "operational drops applied-config copies",
			req:  &gpb.GetRequest{Path: []*gpb.Path{path(t, key)}, Type: gpb.GetRequest_OPERATIONAL, Encoding: gpb.Encoding_JSON},
			want: "/crypto/isakmp/keys/key[address=192.0.2.2]/state/key-configured: json true\n"},
		{desc: "ALL merges config and state of a list entry",
			req:  &gpb.GetRequest{Path: []*gpb.Path{path(t, key)}, Encoding: gpb.Encoding_JSON},
			want: `/crypto/isakmp/keys/key[address=192.0.2.2]: json {"address":"192.0.2.2","config":{"address":"192.0.2.2","key":"<redacted>"},"state":{"address":"192.0.2.2","key-configured":true}}` + "\n"},
		{desc: "key leaf redacted in PROTO",
			req:  &gpb.GetRequest{Path: []*gpb.Path{path(t, key+"/config/key")}, Encoding: gpb.Encoding_PROTO},
			want: "/crypto/isakmp/keys/key[address=192.0.2.2]/config/key: string_val:\"<redacted>\"\n"},
		{desc: "whole tree redacted",
			req:      &gpb.GetRequest{Encoding: gpb.Encoding_JSON_IETF},
			contains: []string{`{"spiagent-crypto:crypto":{`, `"key":"<redacted>"`, `"packets":"7"`, `"status":"QM_IDLE"`}},
		{desc: "several paths, one notification each",
			req:  &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/invalid-spi-recovery-limits/config"), path(t, "/crypto/invalid-spi/state/received")}, Encoding: gpb.Encoding_JSON},
			want: "/crypto/invalid-spi/state/received: json 3\n", wantCode: codes.NotFound, wantErr: "/crypto/isakmp/invalid-spi-recovery-limits/config: no"},
		{desc: "unknown element",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/nonsense")}, Encoding: gpb.Encoding_JSON},
			wantCode: codes.InvalidArgument, wantErr: `path /crypto/isakmp/nonsense: no schema node "nonsense" under /crypto/isakmp`},
		{desc: "wrong key name",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/keys/key[peer=1.2.3.4]")}, Encoding: gpb.Encoding_JSON},
			wantCode: codes.InvalidArgument, wantErr: "list key has keys [address], not [peer]"},
		{desc: "key value of the wrong type",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/policies/policy[priority=high]/config")}, Encoding: gpb.Encoding_JSON},
			wantCode: codes.InvalidArgument, wantErr: `path /crypto/isakmp/policies/policy[priority=high]/config: policy: key priority="high"`},
		{desc: "key value out of range",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/policies/policy[priority=70000]")}, Encoding: gpb.Encoding_JSON},
			wantCode: codes.InvalidArgument, wantErr: `key priority="70000"`},
		{desc: "unknown enum in a key",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/ipsec/sas/sa[destination-address=192.0.2.2][protocol=gre][spi=1]")}, Encoding: gpb.Encoding_JSON},
			wantCode: codes.InvalidArgument, wantErr: `key protocol="gre"`},
		{desc: "key on a container",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp[x=1]")}, Encoding: gpb.Encoding_JSON},
			wantCode: codes.InvalidArgument, wantErr: "isakmp is not a list"},
		{desc: "unknown origin",
			req:      &gpb.GetRequest{Path: []*gpb.Path{{Origin: "openconfig", Elem: path(t, "/crypto").Elem}}, Encoding: gpb.Encoding_JSON},
			wantCode: codes.InvalidArgument, wantErr: `path openconfig:/crypto: unknown origin "openconfig"`},
		{desc: "unknown module prefix",
			req:      &gpb.GetRequest{Path: []*gpb.Path{{Elem: []*gpb.PathElem{{Name: "oc:crypto"}}}}, Encoding: gpb.Encoding_JSON},
			wantCode: codes.InvalidArgument, wantErr: `unknown module "oc"`},
		{desc: "absent list entry",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/keys/key[address=203.0.113.99]")}, Encoding: gpb.Encoding_JSON},
			wantCode: codes.NotFound, wantErr: "key[address=203.0.113.99]"},
		{desc: "ASCII encoding",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto")}, Encoding: gpb.Encoding_ASCII},
			wantCode: codes.Unimplemented, wantErr: "encoding ASCII is not supported"},
		{desc: "BYTES encoding",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto")}, Encoding: gpb.Encoding_BYTES},
			wantCode: codes.Unimplemented, wantErr: "encoding BYTES"},
		{desc: "history extension",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto")}, Extension: []*gnmi_ext.Extension{{Ext: &gnmi_ext.Extension_History{History: &gnmi_ext.History{}}}}},
			wantCode: codes.Unimplemented, wantErr: "history extension"},
		{desc: "unknown model",
			req:      &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto")}, UseModels: []*gpb.ModelData{{Name: "openconfig-interfaces"}}},
			wantCode: codes.InvalidArgument, wantErr: "unknown model"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			resp, err := c.Get(ro(), tc.req)
			if checkErr(t, err, tc.wantCode, tc.wantErr) {
				return
			}
			got := updatesText(resp)
			if strings.Contains(got, seedKey) {
				t.Errorf("the pre-shared key leaked:\n%s", got)
			}
			for _, s := range tc.contains {
				if !strings.Contains(got, s) {
					t.Errorf("response lacks %s:\n%s", s, got)
				}
			}
			if tc.contains == nil {
				if d := cmp.Diff(tc.want, got); d != "" {
					t.Errorf("Get (-want +got):\n%s", d)
				}
			}
		})
	}
}

// valText renders a scalar TypedValue as "kind:value".
func valText(v *gpb.TypedValue) string {
	switch x := v.GetValue().(type) {
	case *gpb.TypedValue_StringVal:
		return fmt.Sprintf("string_val:%q", x.StringVal)
	case *gpb.TypedValue_UintVal:
		return fmt.Sprintf("uint_val:%d", x.UintVal)
	case *gpb.TypedValue_IntVal:
		return fmt.Sprintf("int_val:%d", x.IntVal)
	case *gpb.TypedValue_BoolVal:
		return fmt.Sprintf("bool_val:%v", x.BoolVal)
	case *gpb.TypedValue_JsonVal:
		return "json " + string(x.JsonVal)
	case *gpb.TypedValue_JsonIetfVal:
		return "ietf " + string(x.JsonIetfVal)
	case *gpb.TypedValue_LeaflistVal:
		var parts []string
		for _, e := range x.LeaflistVal.GetElement() {
			parts = append(parts, valText(e))
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprintf("%v", v)
}

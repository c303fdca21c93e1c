package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/gnmi"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/agent/validators"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/store"
)

type recOps struct {
	mu    sync.Mutex
	calls []gnmi.ClearRequest
}

func (r *recOps) ClearSA(_ context.Context, req gnmi.ClearRequest) (gnmi.ClearResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, req)
	return gnmi.ClearResult{IPsecSAsCleared: 4, IKESAsCleared: 1}, nil
}

// agent starts an in-process gNMI server over TLS with router-a's config,
// one IKE SA and an inbound/outbound IPsec SA pair; it returns the address
// and the certificate file.
func agent(t *testing.T) (addr, cert string, ops *recOps) {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	st, err := store.Open(filepath.Join(dir, "data"), store.WithLogger(log), store.WithValidator(validators.NewCrypto()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	seed, err := os.ReadFile("../../examples/lab/router-a.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(context.Background(), store.Tx{Ops: []store.Op{{Kind: store.OpReplace, Path: &gpb.Path{},
		Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: seed}}}}}); err != nil {
		t.Fatal(err)
	}
	tel := telemetry.New()
	sa := func(dst, src string, spi uint32, dir gen.E_SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State_Direction, pkts uint64, left uint32) *gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa {
		return &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa{State: &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State{
			DestinationAddress: ygot.String(dst), SourceAddress: ygot.String(src), Protocol: gen.SpiagentTypes_IpsecProtocol_esp,
			Spi: ygot.Uint32(spi), Direction: dir, Peer: ygot.String("192.0.2.2"), CryptoMap: ygot.String("testtag1"),
			CryptoMapSequence: ygot.Uint32(10), Transform: ygot.String("esp-des esp-sha-hmac"), Packets: ygot.Uint64(pkts),
			LifetimeRemainingSeconds: ygot.Uint32(left), ReplayErrors: ygot.Uint64(1),
		}}
	}
	if err := tel.Update(func(tx *telemetry.Tx) error {
		if err := tx.PutIPsecSA(sa("192.0.2.1", "192.0.2.2", 0xC0FFEE01, gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State_Direction_inbound, 12, 3000)); err != nil {
			return err
		}
		if err := tx.PutIPsecSA(sa("192.0.2.2", "192.0.2.1", 0x0BADF00D, gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State_Direction_outbound, 15, 2990)); err != nil {
			return err
		}
		return tx.PutIKESA(&gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa{State: &gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State{
			ConnId: ygot.Uint32(1001), LocalAddress: ygot.String("192.0.2.1"), RemoteAddress: ygot.String("192.0.2.2"),
			Status: gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State_Status_QM_IDLE, Role: gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State_Role_initiator,
			Encryption: gen.SpiagentTypes_IsakmpEncryption_des, Hash: gen.SpiagentTypes_IsakmpHash_sha, Group: gen.SpiagentTypes_DhGroup_group1,
			LifetimeRemaining: ygot.Uint32(170),
		}})
	}); err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	if err := auth.AddUser(users, "admin", auth.RoleReadWrite, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	u, err := auth.OpenUsers(users)
	if err != nil {
		t.Fatal(err)
	}
	c, err := auth.LoadServerCert("", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := auth.ServerTLSConfig(c, "")
	if err != nil {
		t.Fatal(err)
	}
	ops = &recOps{}
	srv, err := gnmi.New(gnmi.Config{Store: st, State: tel, Users: u, TLS: tlsCfg, Ops: ops, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, lis); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return lis.Addr().String(), c.CertFile, ops
}

func TestSpictl(t *testing.T) {
	addr, cert, ops := agent(t)
	creds := []string{"-a", addr, "-u", "admin", "-p", "pw", "--tls-ca", cert}
	tests := []struct {
		desc     string
		args     []string
		wantCode int
		want     string   // exact stdout, if set
		contains []string // substrings of stdout
		stderr   string
	}{
		{desc: "show crypto isakmp sa", args: append(creds, "show", "crypto", "isakmp", "sa"), want: "" +
			"IPv4 Crypto ISAKMP SA\n" +
			"dst        src        state    conn-id  role       encr  hash  group   lifetime-left\n" +
			"192.0.2.2  192.0.2.1  QM_IDLE  1001     initiator  des   sha   group1  170s\n"},
		{desc: "show crypto ipsec sa", args: append(creds, "show", "crypto", "ipsec", "sa"), want: "" +
			"peer       crypto map   proto  spi in      spi out     transform             pkts decaps  pkts encaps  errors           lifetime left\n" +
			"192.0.2.2  testtag1 10  esp    0xC0FFEE01  0x0BADF00D  esp-des esp-sha-hmac  12           15           auth 0 replay 2  2990s\n"},
		{desc: "show running-config, redacted", args: append(creds, "show", "running-config"),
			contains: []string{`"spiagent-crypto:crypto": {`, `"key": "<redacted>"`, `"lifetime": 180`}},
		{desc: "clear crypto sa peer", args: append(creds, "clear", "crypto", "sa", "peer", "192.0.2.2"), want: "cleared 4 IPsec SA(s), 1 IKE SA(s)\n"},
		{desc: "clear crypto sa map", args: append(creds, "clear", "crypto", "sa", "map", "testtag1"), want: "cleared 4 IPsec SA(s), 1 IKE SA(s)\n"},
		{desc: "clear crypto isakmp", args: append(creds, "clear", "crypto", "isakmp"), want: "cleared 4 IPsec SA(s), 1 IKE SA(s)\n"},
		{desc: "clear crypto sa peer no-notify", args: append(creds, "clear", "crypto", "sa", "peer", "192.0.2.2", "no-notify"), want: "cleared 4 IPsec SA(s), 1 IKE SA(s)\n"},
		{desc: "skip-verify", args: []string{"-a", addr, "-u", "admin", "-p", "pw", "--skip-verify", "show", "crypto", "isakmp", "sa"}, contains: []string{"QM_IDLE"}},
		{desc: "untrusted certificate", args: []string{"-a", addr, "-u", "admin", "-p", "pw", "show", "crypto", "isakmp", "sa"}, wantCode: 1, stderr: "certificate"},
		{desc: "wrong password", args: []string{"-a", addr, "-u", "admin", "-p", "x", "--skip-verify", "show", "run"}, wantCode: 1, stderr: "authentication failed: bad username or password"},
		{desc: "bad peer", args: append(creds, "clear", "crypto", "sa", "peer", "nope"), wantCode: 1, stderr: `"nope" is not an IPv4 address`},
		{desc: "unknown command", args: append(creds, "show", "version"), wantCode: 2, stderr: `unknown command "show version"`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tc.args, &out, &errOut)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.wantCode, errOut.String())
			}
			if tc.want != "" {
				if d := cmp.Diff(tc.want, out.String()); d != "" {
					t.Errorf("stdout (-want +got):\n%s", d)
				}
			}
			for _, s := range tc.contains {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			if !strings.Contains(errOut.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tc.stderr)
			}
			if strings.Contains(out.String(), "1234") {
				t.Error("the pre-shared key leaked")
			}
		})
	}
	want := []gnmi.ClearRequest{{Peer: "192.0.2.2"}, {CryptoMap: "testtag1"}, {ISAKMP: true}, {Peer: "192.0.2.2", NoNotify: true}}
	if d := cmp.Diff(want, ops.calls); d != "" {
		t.Errorf("clear calls (-want +got):\n%s", d)
	}
}

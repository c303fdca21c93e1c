package gnmi

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"path/filepath"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/telemetry"
)

func TestAuth(t *testing.T) {
	tlsEnv := newEnv(t, envOpts{})
	noUsers := newEnv(t, envOpts{noUsers: true})
	labPlain := newEnv(t, envOpts{noUsers: true, plaintext: true, lab: true})
	labTLS := newEnv(t, envOpts{noUsers: true, lab: true})
	plainNoLab := newEnv(t, envOpts{noUsers: true, plaintext: true})
	plainUsers := newEnv(t, envOpts{plaintext: true, lab: true})
	basic := func(u, p string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u+":"+p)))
	}
	getReq := &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/config")}}
	setReq := func() *gpb.SetRequest {
		return &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, "/crypto/isakmp/config/dpd-interval"), Val: uintVal(60)}}}
	}
	tests := []struct {
		desc     string
		e        *env
		ctx      context.Context
		set      bool
		wantCode codes.Code
		wantErr  string
	}{
		{"read-only Get", tlsEnv, ro(), false, codes.OK, ""},
		{"read-only Set", tlsEnv, ro(), true, codes.PermissionDenied, `user "bob" has role read-only: Set needs read-write`},
		{"read-write Set", tlsEnv, rw(), true, codes.OK, ""},
		{"wrong password", tlsEnv, as(rwUser, "wrong"), false, codes.Unauthenticated, "bad username or password"},
		{"unknown user", tlsEnv, as("mallory", rwPass), false, codes.Unauthenticated, "bad username or password"},
		{"no credentials", tlsEnv, context.Background(), false, codes.Unauthenticated, "missing credentials"},
		{"repeated metadata: first value counts", tlsEnv, metadata.AppendToOutgoingContext(rw(), "username", "x", "password", "y"), true, codes.OK, ""},
		{"basic auth over TLS", tlsEnv, basic(rwUser, rwPass), true, codes.OK, ""},
		{"basic auth, wrong password", tlsEnv, basic(rwUser, "x"), false, codes.Unauthenticated, "bad username or password"},
		{"no users file: no access", noUsers, rw(), false, codes.Unauthenticated, "no users are configured"},
		{"lab mode, plaintext loopback, no users: in", labPlain, context.Background(), true, codes.OK, ""},
		{"lab mode over TLS does not open access", labTLS, context.Background(), false, codes.Unauthenticated, "no users are configured"},
		{"plaintext without lab mode: no access", plainNoLab, context.Background(), false, codes.Unauthenticated, "no users are configured"},
		{"lab mode with users still checks them", plainUsers, context.Background(), false, codes.Unauthenticated, "missing credentials"},
		{"basic auth refused in plaintext", plainUsers, basic(rwUser, rwPass), false, codes.Unauthenticated, "missing credentials"},
		{"plaintext with users", plainUsers, ro(), false, codes.OK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c := tc.e.client()
			var err error
			if tc.set {
				_, err = c.Set(tc.ctx, setReq())
			} else {
				_, err = c.Get(tc.ctx, getReq)
			}
			checkErr(t, err, tc.wantCode, tc.wantErr)
			if tc.wantCode == codes.OK {
				return
			}
			// Subscribe and Capabilities are guarded too.
			if _, err := c.Capabilities(tc.ctx, &gpb.CapabilityRequest{}); tc.wantCode == codes.Unauthenticated && err == nil {
				t.Error("Capabilities let the caller in")
			}
		})
	}
	if !strings.Contains(tlsEnv.log.String(), "gNMI authentication failed") {
		t.Error("failed logins are not logged")
	}
	if strings.Contains(tlsEnv.log.String(), "wrong") {
		t.Error("a password was logged")
	}
}

func TestTLS(t *testing.T) {
	e := newEnv(t, envOpts{})
	// A client that does not trust the self-signed certificate fails.
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := gpb.NewGNMIClient(cc).Capabilities(ro(), &gpb.CapabilityRequest{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate accepted: %v", err)
	}
	// The fingerprint is that of the certificate served.
	conn, err := tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := auth.Fingerprint(conn.ConnectionState().PeerCertificates[0].Raw); got != e.cert.Fingerprint {
		t.Errorf("served certificate %s, logged %s", got, e.cert.Fingerprint)
	}
}

func TestClientCertRequired(t *testing.T) {
	dir := t.TempDir()
	// The client CA: a second self-signed certificate, used as the client's
	// own certificate.
	caCert, caKey := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := auth.GenerateSelfSigned(caCert, caKey); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{cfg: func(c *Config) {
		cfg, err := auth.ServerTLSConfig(mustCert(t, c), caCert)
		if err != nil {
			t.Fatal(err)
		}
		c.TLS = cfg
	}})
	noCert := e.client()
	if _, err := noCert.Capabilities(ro(), &gpb.CapabilityRequest{}); err == nil {
		t.Fatal("a client without a certificate got in")
	}
	clientCert, err := tls.LoadX509KeyPair(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: e.pool, ServerName: "localhost", Certificates: []tls.Certificate{clientCert}})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := gpb.NewGNMIClient(cc).Capabilities(ro(), &gpb.CapabilityRequest{}); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
}

// mustCert returns the server certificate that newEnv created in the
// config's TLS settings.
func mustCert(t *testing.T, c *Config) *auth.ServerCert {
	t.Helper()
	return &auth.ServerCert{Cert: c.TLS.Certificates[0]}
}

func TestServeRefusesPlaintextOnPublicAddress(t *testing.T) {
	e := newEnv(t, envOpts{})
	srv, err := New(Config{Store: e.st, State: telemetry.New()})
	if err != nil {
		t.Fatal(err)
	}
	// A listener whose address is not loopback (never accepted from).
	lis := fakeListener{addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9339}}
	err = srv.Serve(context.Background(), lis)
	if err == nil || !strings.Contains(err.Error(), "refusing plaintext gNMI on 192.0.2.1:9339") {
		t.Fatalf("Serve = %v", err)
	}
}

type fakeListener struct{ addr net.Addr }

func (f fakeListener) Accept() (net.Conn, error) { select {} }
func (f fakeListener) Close() error              { return nil }
func (f fakeListener) Addr() net.Addr            { return f.addr }

package gnmi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/internal/testusers"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/agent/validators"
	"github.com/spiagent/spiagent/store"
)

// Users every test environment has.
const (
	rwUser, rwPass = "alice", "alice-pw"
	roUser, roPass = "bob", "bob-pw"
	seedKey        = "1234" // router-a's pre-shared key: must never be read back
)

var users = &testusers.Set{RW: rwUser, RWPass: rwPass, RO: roUser, ROPass: roPass}

// usersFile writes the shared users file (hashing once per test binary).
func usersFile(t testing.TB, dir string) string { return users.File(t, dir) }

// recordingOps is an Operations that records its calls.
type recordingOps struct {
	mu    sync.Mutex
	calls []ClearRequest
	err   error
}

func (r *recordingOps) ClearSA(ctx context.Context, req ClearRequest) (ClearResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, req)
	if r.err != nil {
		return ClearResult{}, r.err
	}
	return ClearResult{IPsecSAsCleared: 2, IKESAsCleared: 1}, nil
}

func (r *recordingOps) Calls() []ClearRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ClearRequest(nil), r.calls...)
}

type envOpts struct {
	noUsers   bool
	plaintext bool
	lab       bool
	queue     int
	fresh     bool // an empty datastore (commit 0), not seeded
	cfg       func(*Config)
}

// env is a running server on loopback with a seeded store.
type env struct {
	t     testing.TB
	dir   string
	st    *store.Store
	tel   *telemetry.Tree
	srv   *Server
	addr  string
	pool  *x509.CertPool
	ops   *recordingOps
	log   *syncBuffer
	tls   bool
	cert  *auth.ServerCert
	users string
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	dir := t.TempDir()
	logBuf := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := store.Open(filepath.Join(dir, "data"), store.WithLogger(log), store.WithValidator(validators.NewCrypto()))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile("../../examples/lab/router-a.json")
	if err != nil {
		t.Fatal(err)
	}
	if !o.fresh {
		if _, err := st.Commit(context.Background(), store.Tx{User: "seed", Ops: []store.Op{{Kind: store.OpReplace, Path: &gpb.Path{}, Val: ietfVal(string(seed))}}}); err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
	e := &env{t: t, dir: dir, st: st, tel: telemetry.New(), ops: &recordingOps{}, log: logBuf}
	cfg := Config{Store: st, State: e.tel, Ops: e.ops, Log: log, Lab: o.lab, SubscriberQueue: o.queue, MinSampleInterval: 10 * time.Millisecond}
	if !o.noUsers {
		e.users = usersFile(t, dir)
		if cfg.Users, err = auth.OpenUsers(e.users); err != nil {
			t.Fatal(err)
		}
	} else {
		if cfg.Users, err = auth.OpenUsers(filepath.Join(dir, "no-users")); err != nil {
			t.Fatal(err)
		}
	}
	if !o.plaintext {
		e.cert, err = auth.LoadServerCert("", "", dir)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.TLS, err = auth.ServerTLSConfig(e.cert, ""); err != nil {
			t.Fatal(err)
		}
		e.pool = x509.NewCertPool()
		pemBytes, _ := os.ReadFile(e.cert.CertFile)
		e.pool.AppendCertsFromPEM(pemBytes)
		e.tls = true
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	e.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		st.Close()
	})
	return e
}

func ietfVal(s string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(s)}}
}
func jsonVal(s string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: []byte(s)}}
}
func uintVal(n uint64) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: n}}
}
func strVal(s string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: s}}
}

func path(t testing.TB, s string) *gpb.Path {
	t.Helper()
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		t.Fatalf("path %q: %v", s, err)
	}
	return p
}

// conn dials the server with extra dial options.
func (e *env) conn(opts ...grpc.DialOption) *grpc.ClientConn {
	e.t.Helper()
	creds := insecure.NewCredentials()
	if e.tls {
		creds = credentials.NewTLS(&tls.Config{RootCAs: e.pool, ServerName: "localhost"})
	}
	cc, err := grpc.NewClient(e.addr, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

func (e *env) client() gpb.GNMIClient { return gpb.NewGNMIClient(e.conn()) }

// as returns a context carrying gnmic-style credentials.
func as(user, pass string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "username", user, "password", pass)
}

func rw() context.Context { return as(rwUser, rwPass) }
func ro() context.Context { return as(roUser, roPass) }

// checkErr compares an error's code and message with what a case wants.
func checkErr(t testing.TB, err error, code codes.Code, sub string) bool {
	t.Helper()
	if code == codes.OK {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return false
	}
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), sub) {
		t.Fatalf("error = %v (%v), want %v containing %q", err, st.Code(), code, sub)
	}
	if strings.Contains(st.Message(), seedKey) && strings.Contains(st.Message(), "key") {
		t.Errorf("error message may leak a key: %s", st.Message())
	}
	return true
}

// jsonEq compares JSON documents.
func jsonEq(t testing.TB, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("bad JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad wanted JSON %s: %v", want, err)
	}
	if d := cmp.Diff(w, g); d != "" {
		t.Errorf("JSON (-want +got):\n%s\ngot: %s", d, got)
	}
}

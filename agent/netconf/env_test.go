package netconf

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"golang.org/x/crypto/ssh"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/gnmi"
	"github.com/spiagent/spiagent/agent/internal/testusers"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/agent/validators"
	"github.com/spiagent/spiagent/store"
)

const (
	rwUser, rwPass = "alice", "alice-secret"
	roUser, roPass = "bob", "bob-secret"
	cryptoNS       = "urn:spiagent:yang:spiagent-crypto"
)

var users = &testusers.Set{RW: rwUser, RWPass: rwPass, RO: roUser, ROPass: roPass}

// usersFile writes the shared users file (hashing once per test binary).
func usersFile(t testing.TB, dir string) string { return users.File(t, dir) }

// recordingOps records clear-crypto-sa calls.
type recordingOps struct {
	mu    sync.Mutex
	calls []gnmi.ClearRequest
}

func (r *recordingOps) ClearSA(_ context.Context, req gnmi.ClearRequest) (gnmi.ClearResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, req)
	return gnmi.ClearResult{IPsecSAsCleared: 2, IKESAsCleared: 1}, nil
}

type env struct {
	t    testing.TB
	dir  string
	st   *store.Store
	tel  *telemetry.Tree
	ops  *recordingOps
	srv  *Server
	addr string
	stop func() error // cancels Serve and waits for it (idempotent)
}

func ietfVal(s string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(s)}}
}

// newEnv starts a server on loopback over a store seeded with the lab's
// router A config.
func newEnv(t testing.TB, tweak func(*Config)) *env {
	t.Helper()
	seed, err := os.ReadFile("../../examples/lab/router-a.json")
	if err != nil {
		t.Fatal(err)
	}
	return newEnvWith(t, seed, tweak)
}

// newEnvWith is newEnv with the store seeded with a JSON_IETF config.
func newEnvWith(t testing.TB, seed []byte, tweak func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	st, err := store.Open(filepath.Join(dir, "data"), store.WithLogger(log), store.WithValidator(validators.NewCrypto()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Commit(context.Background(), store.Tx{User: "seed", Ops: []store.Op{{Kind: store.OpReplace, Path: &gpb.Path{}, Val: ietfVal(string(seed))}}}); err != nil {
		t.Fatalf("seed: %v", err)
	}
	users, err := auth.OpenUsers(usersFile(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := LoadHostKey(filepath.Join(dir, HostKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, st: st, tel: telemetry.New(), ops: &recordingOps{}}
	cfg := Config{Store: st, State: e.tel, Users: users, HostKey: key, Ops: e.ops, Log: log}
	if tweak != nil {
		tweak(&cfg)
	}
	if e.srv, err = New(cfg); err != nil {
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
	var once sync.Once
	var serveErr error
	e.stop = func() error {
		once.Do(func() { cancel(); serveErr = <-done })
		return serveErr
	}
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// client is a minimal NETCONF client over golang.org/x/crypto/ssh.
type client struct {
	t         testing.TB
	conn      *ssh.Client
	fr        *framer
	nextID    int
	sessionID string
	caps      []string
}

func (e *env) dial(user, pass string, base11 bool) *client {
	e.t.Helper()
	c, err := e.tryDial(user, pass, base11)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) tryDial(user, pass string, base11 bool) (*client, error) {
	conn, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.Password(pass)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return e.start(conn, base11)
}

// start starts a NETCONF session on an SSH connection and exchanges hellos.
func (e *env) start(conn *ssh.Client, base11 bool) (*client, error) {
	e.t.Cleanup(func() { conn.Close() })
	sess, err := conn.NewSession()
	if err != nil {
		return nil, err
	}
	w, err := sess.StdinPipe()
	if err != nil {
		return nil, err
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := sess.RequestSubsystem("netconf"); err != nil {
		return nil, fmt.Errorf("subsystem: %w", err)
	}
	c := &client{t: e.t, conn: conn, fr: newFramer(r, w, 256<<20)}
	hello, err := c.fr.read()
	if err != nil {
		return nil, fmt.Errorf("read hello: %w", err)
	}
	x, err := parseXML(hello)
	if err != nil {
		return nil, err
	}
	c.sessionID = x.kid(baseNS, "session-id").text()
	for _, k := range x.kid(baseNS, "capabilities").Kids {
		c.caps = append(c.caps, k.text())
	}
	caps := "<capability>" + capBase10 + "</capability>"
	if base11 {
		caps += "<capability>" + capBase11 + "</capability>"
	}
	if err := c.fr.write([]byte(`<hello xmlns="` + baseNS + `"><capabilities>` + caps + `</capabilities></hello>`)); err != nil {
		return nil, err
	}
	c.fr.chunked = base11
	return c, nil
}

// rpc sends an operation and returns the parsed reply.
func (c *client) rpc(op string) *elem {
	c.t.Helper()
	c.nextID++
	return c.raw(fmt.Sprintf(`<rpc message-id="%d" xmlns="%s">%s</rpc>`, c.nextID, baseNS, op))
}

// raw sends a message as is and returns the parsed reply.
func (c *client) raw(msg string) *elem {
	c.t.Helper()
	b, err := c.rawBytes(msg)
	if err != nil {
		c.t.Fatal(err)
	}
	x, err := parseXML(b)
	if err != nil {
		c.t.Fatalf("reply %q: %v", b, err)
	}
	return x
}

func (c *client) rawBytes(msg string) ([]byte, error) {
	if err := c.fr.write([]byte(msg)); err != nil {
		return nil, err
	}
	return c.fr.read()
}

// isOK checks for <ok/>.
func isOK(t testing.TB, r *elem) {
	t.Helper()
	if r.kid(baseNS, "ok") == nil {
		t.Fatalf("reply is not <ok/>: %s", dump(r))
	}
}

// rpcErr returns the reply's first rpc-error's fields by name.
func rpcErr(t testing.TB, r *elem) map[string]string {
	t.Helper()
	e := r.kid(baseNS, "rpc-error")
	if e == nil {
		t.Fatalf("reply has no rpc-error: %s", dump(r))
	}
	out := map[string]string{}
	for _, k := range e.Kids {
		out[k.Name.Local] = k.text()
		if k.Name.Local == "error-info" {
			for _, i := range k.Kids {
				out["info:"+i.Name.Local] = i.text()
			}
		}
	}
	return out
}

func wantErr(t testing.TB, r *elem, typ, tag, pathSub string) map[string]string {
	t.Helper()
	m := rpcErr(t, r)
	if m["error-type"] != typ || m["error-tag"] != tag || m["error-severity"] != "error" {
		t.Fatalf("error = %v, want type %s tag %s", m, typ, tag)
	}
	if !strings.Contains(m["error-path"], pathSub) {
		t.Fatalf("error-path = %q, want it to contain %q (%v)", m["error-path"], pathSub, m)
	}
	if m["error-message"] == "" {
		t.Fatalf("no error-message: %v", m)
	}
	return m
}

// dump renders an element tree for failure messages.
func dump(x *elem) string {
	var b strings.Builder
	var walk func(*elem)
	walk = func(e *elem) {
		b.WriteString("<" + e.Name.Local + ">")
		if len(e.Kids) == 0 {
			b.WriteString(e.text())
		}
		for _, k := range e.Kids {
			walk(k)
		}
		b.WriteString("</" + e.Name.Local + ">")
	}
	walk(x)
	return b.String()
}

// find follows a path of local names (first match at each step).
func find(x *elem, names ...string) *elem {
	for _, n := range names {
		var next *elem
		for _, k := range x.Kids {
			if k.Name.Local == n {
				next = k
				break
			}
		}
		if next == nil {
			return nil
		}
		x = next
	}
	return x
}

// findAll returns the children of x named name.
func findAll(x *elem, name string) []*elem {
	var out []*elem
	for _, k := range x.Kids {
		if k.Name.Local == name {
			out = append(out, k)
		}
	}
	return out
}

// framings runs f for base:1.0 and base:1.1.
func framings(t *testing.T, f func(t *testing.T, base11 bool)) {
	for _, b11 := range []bool{false, true} {
		name := "base1.0"
		if b11 {
			name = "base1.1"
		}
		t.Run(name, func(t *testing.T) { f(t, b11) })
	}
}

package gnmi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/connlimit"
	"github.com/spiagent/spiagent/store"
)

// rawRPC is a gRPC client over HTTP/2 by hand, to control what is sent of a
// request body and when.
type rawRPC struct {
	e  *env
	tr *http2.Transport
}

// newRawRPC returns a client of e dialling from the loopback address from.
func newRawRPC(e *env, from string) *rawRPC {
	tr := &http2.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			d := tls.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}, Config: &tls.Config{RootCAs: e.pool, ServerName: "localhost", NextProtos: []string{"h2"}}}
			return d.DialContext(ctx, network, addr)
		},
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &rawRPC{e: e, tr: tr}
}

// call starts method with the metadata md and body, and returns the status
// of the response's headers (a refusal is a trailers-only response) or,
// for a response with a body, of its trailers.
func (r *rawRPC) call(ctx context.Context, method string, md map[string]string, body io.Reader) (codes.Code, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+r.e.addr+method, body)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	for k, v := range md {
		req.Header.Set(k, v)
	}
	resp, err := r.tr.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	h := resp.Header
	if h.Get("grpc-status") == "" {
		_, _ = io.Copy(io.Discard, resp.Body)
		h = resp.Trailer
	}
	code, err := strconv.Atoi(h.Get("grpc-status"))
	if err != nil {
		return 0, "", fmt.Errorf("no grpc-status in %v", h)
	}
	return codes.Code(code), h.Get("grpc-message"), nil
}

// prefix is a gRPC message prefix announcing n bytes.
func prefix(n int) []byte {
	b := make([]byte, 5)
	binary.BigEndian.PutUint32(b[1:], uint32(n))
	return b
}

// TestAuthBeforeBody: a request without good credentials, and a read-only
// user's Set, are refused from their headers: the answer comes while the
// client has sent a few bytes of a 16 MiB message and holds back the rest.
func TestAuthBeforeBody(t *testing.T) {
	e := newEnv(t, envOpts{})
	tests := []struct {
		desc   string
		method string
		md     map[string]string
		code   codes.Code
		msg    string
	}{
		{"no credentials", gpb.GNMI_Set_FullMethodName, nil, codes.Unauthenticated, "missing credentials"},
		{"wrong password", gpb.GNMI_Set_FullMethodName, map[string]string{"username": rwUser, "password": "wrong"}, codes.Unauthenticated, "bad username or password"},
		{"read-only Set", gpb.GNMI_Set_FullMethodName, map[string]string{"username": roUser, "password": roPass}, codes.PermissionDenied, "Set needs read-write"},
		{"wrong password, Get", gpb.GNMI_Get_FullMethodName, map[string]string{"username": roUser, "password": "x"}, codes.Unauthenticated, "bad username or password"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			pr, pw := io.Pipe()
			defer pw.Close()
			go func() {
				_, _ = pw.Write(prefix(16 << 20))
				_, _ = pw.Write(make([]byte, 1024))
				// ... and nothing more until the test ends.
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			code, msg, err := newRawRPC(e, "127.0.0.1").call(ctx, tc.method, tc.md, pr)
			if err != nil {
				t.Fatalf("no answer while the body was held back (the server waits for the message): %v", err)
			}
			if code != tc.code || !strings.Contains(msg, tc.msg) {
				t.Fatalf("status %v %q, want %v %q", code, msg, tc.code, tc.msg)
			}
		})
	}
	if !strings.Contains(e.log.String(), "gNMI permission denied") || !strings.Contains(e.log.String(), "user="+roUser) {
		t.Errorf("the read-only Set's PermissionDenied was not logged with its user:\n%s", e.log.String())
	}
}

// rss is the resident set size of this process.
func rss(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// peakRSS samples the RSS until stop is closed and returns the largest.
func peakRSS(t testing.TB, stop <-chan struct{}) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		peak := rss(t)
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				out <- max(peak, rss(t))
				return
			case <-tk.C:
				peak = max(peak, rss(t))
			}
		}
	}()
	return out
}

// preAuthRSSBound is the RSS growth allowed while 16 unauthenticated
// clients each send a 16 MiB Set (256 MiB in flight): the server reads
// none of it.
const preAuthRSSBound = 64 << 20

// TestPreAuthMemoryBounded: unauthenticated clients sending large Set
// requests do not make the server buffer them.
func TestPreAuthMemoryBounded(t *testing.T) {
	e := newEnv(t, envOpts{})
	const clients, size = 16, 16 << 20
	payload := make([]byte, size) // shared by the clients: the test's own memory stays flat
	base := rss(t)
	stop := make(chan struct{})
	peak := peakRSS(t, stop)
	var wg sync.WaitGroup
	errs := make(chan error, clients*2)
	for i := range clients {
		wg.Go(func() {
			c := newRawRPC(e, fmt.Sprintf("127.0.5.%d", i+1))
			for range 2 {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				code, _, err := c.call(ctx, gpb.GNMI_Set_FullMethodName, map[string]string{"username": rwUser, "password": fmt.Sprintf("guess-%d", i)},
					io.MultiReader(bytes.NewReader(prefix(size)), bytes.NewReader(payload)))
				cancel()
				if err == nil && code != codes.Unauthenticated {
					err = fmt.Errorf("status %v, want Unauthenticated", code)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	growth := <-peak - base
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("RSS growth %d MiB while %d unauthenticated clients sent %d MiB", growth>>20, clients, clients*2*size>>20)
	if growth > preAuthRSSBound {
		t.Fatalf("RSS grew by %d MiB, bound %d MiB: unauthenticated requests were buffered", growth>>20, preAuthRSSBound>>20)
	}
}

// TestMaxRecvMsgSize: an authenticated writer's message over the limit
// (32 MiB by default, and configurable) is refused with ResourceExhausted
// from its announced length.
func TestMaxRecvMsgSize(t *testing.T) {
	big := func(n int) *gpb.SetRequest {
		return &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, "/crypto/isakmp/config/dpd-interval"), Val: jsonVal(strings.Repeat(" ", n) + "60")}}}
	}
	e := newEnv(t, envOpts{})
	_, err := e.client().Set(rw(), big(33<<20))
	checkErr(t, err, codes.ResourceExhausted, "larger than max")
	small := newEnv(t, envOpts{cfg: func(c *Config) { c.MaxRecvMsgSize = 1 << 20 }})
	_, err = small.client().Set(rw(), big(2<<20))
	checkErr(t, err, codes.ResourceExhausted, "larger than max")
	// The default leaves room for the largest benchmark config.
	if DefaultMaxRecvMsgSize < 3*10_000_000 {
		t.Errorf("DefaultMaxRecvMsgSize %d is below 3× the 9.9 MB BigJSON(50000) config", DefaultMaxRecvMsgSize)
	}
}

// idleH2 opens a TLS connection from the address from, sends the HTTP/2
// preface and SETTINGS (a gRPC client that never sends an RPC), and
// returns a channel closed when the server closes the connection.
func idleH2(e *env, from string, h2 bool) (<-chan struct{}, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", e.addr)
	if err != nil {
		return nil, err
	}
	closed := make(chan struct{})
	var c net.Conn = nc
	if h2 {
		tc := tls.Client(nc, &tls.Config{RootCAs: e.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
		_ = tc.SetDeadline(time.Now().Add(20 * time.Second))
		if err := tc.Handshake(); err == nil {
			_, _ = tc.Write(append([]byte(http2.ClientPreface), 0, 0, 0, 4, 0, 0, 0, 0, 0)) // empty SETTINGS
			_ = tc.SetDeadline(time.Time{})
		}
		c = tc
	}
	e.t.Cleanup(func() { nc.Close() })
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, c)
	}()
	return closed, nil
}

// TestIdleUnauthenticatedConnections: 2,000 connections that never
// authenticate (half of them TLS with the HTTP/2 preface, as an idle gRPC
// client) from 40 addresses: the admin's Get still answers, and every one
// of them is closed within the auth timeout.
func TestIdleUnauthenticatedConnections(t *testing.T) {
	const sources, perSource = 40, 50
	authTimeout := 3 * time.Second
	e := newEnv(t, envOpts{cfg: func(c *Config) {
		c.Conns = connlimit.Limits{MaxConns: 256, MaxPerSource: 32, AuthTimeout: authTimeout}
	}})
	var closed []<-chan struct{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for s := range sources {
		wg.Go(func() {
			for i := range perSource {
				ch, err := idleH2(e, fmt.Sprintf("127.0.6.%d", s+1), i%2 == 0)
				if err != nil {
					continue // refused at once: fine
				}
				mu.Lock()
				closed = append(closed, ch)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// The bound is held by never-authenticated connections now.
	if st := e.srv.edge.Load().Stats(); st.Open < 200 {
		t.Logf("only %d connections open when the admin came (the machine is slow)", st.Open)
	}
	ctx, cancel := context.WithTimeout(rw(), 10*time.Second)
	defer cancel()
	if _, err := e.client().Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/config")}}); err != nil {
		t.Fatalf("the admin's Get while 2,000 idle connections came: %v", err)
	}
	deadline := time.After(authTimeout + 20*time.Second)
	for i, ch := range closed {
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("connection %d of %d still open after the auth timeout (%+v)", i, len(closed), e.srv.edge.Load().Stats())
		}
	}
	st := e.srv.edge.Load().Stats()
	t.Logf("%d connections: %+v", len(closed), st)
	if st.Open > 1 {
		t.Errorf("%d connections open, want only the admin's", st.Open)
	}
}

// TestLoginBackoff: wrong passwords from one address put it in backoff
// (even the right password is refused there), the admin at another address
// gets in, and the failures are logged rate-limited.
func TestLoginBackoff(t *testing.T) {
	e := newEnv(t, envOpts{})
	attacker := e.connFrom("127.0.7.1")
	getReq := &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/config")}}
	for i := range 40 {
		_, err := gpb.NewGNMIClient(attacker).Get(as(rwUser, fmt.Sprintf("guess-%d", i)), getReq)
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	_, err := gpb.NewGNMIClient(attacker).Get(rw(), getReq)
	checkErr(t, err, codes.Unauthenticated, "too many failed logins")
	if _, err := e.client().Get(rw(), getReq); err != nil {
		t.Fatalf("the admin from another address: %v", err)
	}
	log := e.log.String()
	if n := strings.Count(log, `msg="gNMI authentication failed"`) + strings.Count(log, `msg="gNMI login refused`); n > 10 {
		t.Errorf("%d log lines for 41 refused logins, want at most 10 (rate-limited)", n)
	}
}

// connFrom dials the server from a loopback source address.
func (e *env) connFrom(from string) *grpc.ClientConn {
	return e.conn(grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		return d.DialContext(ctx, "tcp", addr)
	}))
}

// TestRevokedUserRPCsEnd: deleting a user ends its open subscriptions
// (STREAM and POLL) with Unauthenticated; a user demoted to read-only keeps
// its subscription (reading needs no more).
func TestRevokedUserRPCsEnd(t *testing.T) {
	e := newEnv(t, envOpts{})
	sub := func(ctx context.Context, mode gpb.SubscriptionList_Mode) gpb.GNMI_SubscribeClient {
		t.Helper()
		st, err := e.client().Subscribe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
			Mode: mode, Encoding: gpb.Encoding_JSON_IETF,
			Subscription: []*gpb.Subscription{{Path: path(t, "/crypto/isakmp/config"), Mode: gpb.SubscriptionMode_ON_CHANGE}},
		}}}); err != nil {
			t.Fatal(err)
		}
		// Until the initial sync is over.
		for {
			r, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if r.GetSyncResponse() {
				return st
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bobStream := sub(metadataCtx(ctx, roUser, roPass), gpb.SubscriptionList_STREAM)
	bobPoll := sub(metadataCtx(ctx, roUser, roPass), gpb.SubscriptionList_POLL)
	aliceStream := sub(metadataCtx(ctx, rwUser, rwPass), gpb.SubscriptionList_STREAM)

	if err := auth.DelUser(e.users, roUser); err != nil {
		t.Fatal(err)
	}
	if err := auth.AddUser(e.users, rwUser, auth.RoleReadOnly, []byte(rwPass)); err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]gpb.GNMI_SubscribeClient{"STREAM": bobStream, "POLL": bobPoll} {
		var err error
		for err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), `user "bob" was removed`) {
			t.Errorf("bob's %s subscription ended with %v", name, err)
		}
	}
	// alice's subscription is still served: a change reaches it.
	if _, err := e.st.Commit(context.Background(), storeTx(t, "/crypto/isakmp/config/dpd-interval", 42)); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := aliceStream.Recv()
		if err != nil {
			t.Fatalf("alice's subscription (still read-only) ended: %v", err)
		}
		if len(r.GetUpdate().GetUpdate()) > 0 {
			break
		}
	}
	if !strings.Contains(e.log.String(), "gNMI RPC ended: user revoked") {
		t.Error("the ended RPCs were not logged")
	}
}

// TestLabRecordsLab: in lab mode the name a client claims is not recorded.
func TestLabRecordsLab(t *testing.T) {
	e := newEnv(t, envOpts{noUsers: true, plaintext: true, lab: true})
	_, err := e.client().Set(as("mallory", "x"), &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, "/crypto/isakmp/config/dpd-interval"), Val: uintVal(61)}}})
	if err != nil {
		t.Fatal(err)
	}
	h := e.st.History()
	if got := h[len(h)-1].User; got != "lab" {
		t.Fatalf("commit recorded as user %q, want lab", got)
	}
}

// flakyListener fails Accept with errs, then serves the real listener.
type flakyListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

// TestAcceptErrorsDoNotStopServe: errors from the listener (as at the file
// limit, or one that does not say it is temporary) do not stop the server.
func TestAcceptErrorsDoNotStopServe(t *testing.T) {
	e := newEnv(t, envOpts{})
	srv, err := New(Config{Store: e.st, State: e.tel, Users: e.srv.cfg.Users, TLS: e.srv.cfg.TLS, Log: e.srv.cfg.Log})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := &flakyListener{Listener: inner, errs: []error{
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errEMFILE)},
		&net.OpError{Op: "accept", Net: "tcp", Err: errConnAborted},
		fmt.Errorf("accept: something unexpected"),
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	e2 := *e
	e2.addr = inner.Addr().String()
	gctx, gcancel := context.WithTimeout(rw(), 15*time.Second)
	defer gcancel()
	if _, err := e2.client().Get(gctx, &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/config")}}); err != nil {
		select {
		case err := <-done:
			done <- nil // for the deferred wait
			t.Fatalf("Serve returned after accept errors: %v", err)
		default:
		}
		t.Fatalf("Get after accept errors: %v", err)
	}
}

var (
	errEMFILE      = syscall.EMFILE
	errConnAborted = syscall.ECONNABORTED
)

func metadataCtx(ctx context.Context, user, pass string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "username", user, "password", pass)
}

// storeTx sets one uint leaf.
func storeTx(t testing.TB, p string, v uint64) store.Tx {
	return store.Tx{User: "test", Ops: []store.Op{{Kind: store.OpUpdate, Path: path(t, p), Val: uintVal(v)}}}
}

// TestMaxStreamsPerConnection: a connection runs at most MaxStreams RPCs at
// once; the next waits (in the client) until one ends.
func TestMaxStreamsPerConnection(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *Config) { c.MaxStreams = 2 }})
	c := gpb.NewGNMIClient(e.conn())
	ctx, cancel := context.WithTimeout(rw(), 30*time.Second)
	defer cancel()
	start := func(ctx context.Context) <-chan error {
		synced := make(chan error, 1)
		go func() {
			st, err := c.Subscribe(ctx)
			if err == nil {
				err = st.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
					Mode: gpb.SubscriptionList_STREAM, Encoding: gpb.Encoding_JSON_IETF,
					Subscription: []*gpb.Subscription{{Path: path(t, "/crypto/isakmp/config"), Mode: gpb.SubscriptionMode_ON_CHANGE}},
				}}})
			}
			for err == nil {
				var r *gpb.SubscribeResponse
				if r, err = st.Recv(); r.GetSyncResponse() {
					break
				}
			}
			synced <- err
		}()
		return synced
	}
	firstCtx, endFirst := context.WithCancel(ctx)
	for _, ch := range []<-chan error{start(firstCtx), start(ctx)} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	third := start(ctx)
	select {
	case err := <-third:
		t.Fatalf("a third stream ran on the connection beside two (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	endFirst()
	if err := <-third; err != nil {
		t.Fatalf("the third stream after one ended: %v", err)
	}
}

// TestIdleConnectionClosed: a connection with no RPC for IdleTimeout is
// closed by the server (GOAWAY); the client reconnects for its next RPC.
func TestIdleConnectionClosed(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *Config) { c.IdleTimeout = 300 * time.Millisecond }})
	cc := e.conn()
	getReq := &gpb.GetRequest{Path: []*gpb.Path{path(t, "/crypto/isakmp/config")}}
	if _, err := gpb.NewGNMIClient(cc).Get(rw(), getReq); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for s := cc.GetState(); s != connectivity.Idle; s = cc.GetState() {
		if !cc.WaitForStateChange(ctx, s) {
			t.Fatalf("the idle connection is still %v", cc.GetState())
		}
	}
	if _, err := gpb.NewGNMIClient(cc).Get(rw(), getReq); err != nil {
		t.Fatalf("the next RPC: %v", err)
	}
}

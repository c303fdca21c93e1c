package connlimit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// server accepts on a Listener and hands the connections to the test.
type server struct {
	l     *Listener
	conns chan *Conn
	log   *syncBuffer
}

func newServer(t *testing.T, lim Limits) *server {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	buf := &syncBuffer{}
	s := &server{l: Wrap(inner, lim, "test", slog.New(slog.NewTextHandler(buf, nil))), conns: make(chan *Conn, 1000), log: buf}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := s.l.Accept()
			if err != nil {
				return
			}
			s.conns <- c.(*Conn)
		}
	}()
	t.Cleanup(func() {
		s.l.Close()
		<-done
	})
	return s
}

// dial connects from a loopback source address (127.0.0.x: Linux routes
// all of 127/8 to lo) and returns the client side once the server side is
// accepted, or refused (nil).
func (s *server) dial(t *testing.T, from string) (net.Conn, *Conn) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	before := s.l.Stats().Refused
	c, err := d.Dial("tcp", s.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	deadline := time.After(10 * time.Second)
	for {
		select {
		case sc := <-s.conns:
			if sc.RemoteAddr().String() != c.LocalAddr().String() {
				t.Fatalf("accepted %v, dialled from %v", sc.RemoteAddr(), c.LocalAddr())
			}
			return c, sc
		case <-time.After(5 * time.Millisecond):
			if s.l.Stats().Refused > before {
				return c, nil
			}
		case <-deadline:
			t.Fatal("connection neither accepted nor refused")
		}
	}
}

// closedByServer reports whether the server closed the client's connection.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	t.Fatalf("read: %v", err)
	return false
}

func TestPerSourceEvictsOwnPending(t *testing.T) {
	s := newServer(t, Limits{MaxPerSource: 2})
	a1, s1 := s.dial(t, "127.0.0.2")
	_, s2 := s.dial(t, "127.0.0.2")
	other, _ := s.dial(t, "127.0.0.3")
	s2.Authenticated()
	// A third from 127.0.0.2 evicts that source's oldest never-authenticated
	// connection (s1), not the authenticated one, nor another source's.
	_, s3 := s.dial(t, "127.0.0.2")
	if s3 == nil {
		t.Fatal("third connection refused with a pending one to evict")
	}
	if !closedByServer(t, a1) {
		t.Fatal("the oldest pending connection of the source was not evicted")
	}
	_ = s1
	s3.Authenticated()
	// Now both of 127.0.0.2's connections are authenticated: refused.
	if c, sc := s.dial(t, "127.0.0.2"); sc != nil || !closedByServer(t, c) {
		t.Fatal("a connection over the per-source bound was admitted")
	}
	_ = other
	if st := s.l.Stats(); st.Open != 3 || st.Evicted != 1 || st.Refused != 1 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(s.log.String(), "test connection refused: too many connections from this source") {
		t.Errorf("refusal not logged:\n%s", s.log.String())
	}
}

// TestTotalEvictsNeverAuthenticated: with the total bound held by
// never-authenticated connections from many sources, a newcomer (the admin)
// gets in by evicting the oldest; authenticated connections are never
// evicted.
func TestTotalEvictsNeverAuthenticated(t *testing.T) {
	s := newServer(t, Limits{MaxConns: 10, MaxPerSource: 5})
	_, authed := s.dial(t, "127.0.1.1")
	authed.Authenticated()
	var first net.Conn
	for i := range 9 {
		c, sc := s.dial(t, fmt.Sprintf("127.0.2.%d", i+1))
		if sc == nil {
			t.Fatalf("attacker %d refused below the bound", i)
		}
		if i == 0 {
			first = c
		}
	}
	_, admin := s.dial(t, "127.0.0.1")
	if admin == nil {
		t.Fatal("the admin was refused while never-authenticated connections held the bound")
	}
	if !closedByServer(t, first) {
		t.Fatal("the oldest never-authenticated connection was not evicted")
	}
	admin.Authenticated()
	// Fill with authenticated ones: then newcomers are refused, nobody evicted.
	for i := range 8 {
		_, sc := s.dial(t, fmt.Sprintf("127.0.3.%d", i+1))
		if sc == nil {
			t.Fatal("refused while pending connections could be evicted")
		}
		sc.Authenticated()
	}
	if c, sc := s.dial(t, "127.0.4.1"); sc != nil || !closedByServer(t, c) {
		t.Fatal("admitted over the bound with every connection authenticated")
	}
	if st := s.l.Stats(); st.Open != 10 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAuthTimeout(t *testing.T) {
	s := newServer(t, Limits{AuthTimeout: 200 * time.Millisecond})
	idle, _ := s.dial(t, "127.0.0.2")
	ok, sc := s.dial(t, "127.0.0.3")
	sc.Authenticated()
	if !closedByServer(t, idle) {
		t.Fatal("a never-authenticated connection outlived AuthTimeout")
	}
	_ = ok.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := ok.Read(make([]byte, 1)); err == nil || !errors.Is(err, syscall.ETIMEDOUT) && !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the authenticated connection was closed: %v", err)
	}
	if st := s.l.Stats(); st.Expired != 1 || st.Open != 1 {
		t.Fatalf("stats %+v", st)
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

// TestAcceptErrorsRetried: EMFILE, ENFILE, ECONNABORTED and even errors
// that do not say they are temporary do not end Accept; closing does.
func TestAcceptErrorsRetried(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	for range 4 {
		errs = append(errs, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE})
	}
	errs = append(errs, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.ENFILE},
		&net.OpError{Op: "accept", Net: "tcp", Err: syscall.ECONNABORTED}, errors.New("something else"))
	buf := &syncBuffer{}
	l := Wrap(&flakyListener{Listener: inner, errs: errs}, Limits{}, "test", slog.New(slog.NewTextHandler(buf, nil)))
	defer l.Close()
	go func() {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err == nil {
			defer c.Close()
			time.Sleep(5 * time.Second)
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept gave up: %v", err)
	}
	c.Close()
	if n := l.Stats().Retried; n != uint64(len(errs)) {
		t.Errorf("%d errors retried, want %d", n, len(errs))
	}
	logged := strings.Count(buf.String(), "test accept failed: retrying")
	if logged == 0 || logged > 5 {
		t.Errorf("%d accept-error lines, want 1 to 5 (rate-limited):\n%s", logged, buf.String())
	}
	// Close ends Accept.
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

// scripted is a listener whose Accept results the test feeds.
type scripted struct {
	results chan acceptResult
	done    chan struct{}
}

type acceptResult struct {
	c   net.Conn
	err error
}

func (s *scripted) Accept() (net.Conn, error) {
	select {
	case r := <-s.results:
		return r.c, r.err
	case <-s.done:
		return nil, net.ErrClosed
	}
}
func (s *scripted) Close() error   { close(s.done); return nil }
func (s *scripted) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestOutOfFilesEvicts: running out of file descriptors closes the oldest
// never-authenticated connection, so that the next accept can succeed.
func TestOutOfFilesEvicts(t *testing.T) {
	sc := &scripted{results: make(chan acceptResult, 4), done: make(chan struct{})}
	l := Wrap(sc, Limits{}, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer l.Close()
	idleServer, idleClient := net.Pipe()
	authServer, authClient := net.Pipe()
	defer idleClient.Close()
	defer authClient.Close()
	sc.results <- acceptResult{c: idleServer}
	sc.results <- acceptResult{c: authServer}
	sc.results <- acceptResult{err: &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}}
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	b.(*Conn).Authenticated()
	next, nextClient := net.Pipe()
	defer nextClient.Close()
	sc.results <- acceptResult{c: next}
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	// The idle one was closed; the authenticated one was not.
	_ = idleClient.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idleClient.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("the never-authenticated connection is still open: %v", err)
	}
	_ = authClient.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := authClient.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the authenticated connection was closed: %v", err)
	}
	if st := l.Stats(); st.Evicted != 1 || st.Retried != 1 || st.Open != 2 {
		t.Fatalf("stats %+v", st)
	}
	_ = a
}

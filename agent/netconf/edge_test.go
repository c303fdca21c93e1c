package netconf

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/connlimit"
)

// dialFrom opens an SSH connection from the loopback address from (Linux
// routes all of 127/8 to lo) and logs in.
func (e *env) dialFrom(from, user, pass string) (*ssh.Client, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", e.addr)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(nc, e.addr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.Password(pass)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// idleTCP connects from the address from and sends nothing, or only the
// SSH version line; the channel is closed when the server closes it.
func (e *env) idleTCP(from string, version bool) (<-chan struct{}, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", e.addr)
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { nc.Close() })
	if version {
		_, _ = nc.Write([]byte("SSH-2.0-idle\r\n"))
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, nc)
	}()
	return closed, nil
}

// TestIdleConnectionsDoNotLockOut (issue 12, item 4): TCP connections that
// never log in, from many addresses, and a read-only user's logged-in SSH
// connections that never open a channel, do not keep the admin out, and
// are all closed by their deadlines.
func TestIdleConnectionsDoNotLockOut(t *testing.T) {
	const deadline = 2 * time.Second
	e := newEnv(t, func(c *Config) {
		c.Conns = connlimit.Limits{MaxConns: 16, MaxPerSource: 4, AuthTimeout: deadline}
		c.ChannelTimeout = deadline
	})
	var closed []<-chan struct{}
	// 60 idle TCP connections from 20 addresses (more than main's 40).
	for i := range 60 {
		ch, err := e.idleTCP(fmt.Sprintf("127.0.10.%d", i%20+1), i%2 == 0)
		if err != nil {
			t.Fatal(err)
		}
		closed = append(closed, ch)
	}
	// A read-only user holding logged-in connections without a session.
	loggedIn := 0
	for range 3 {
		c, err := e.dialFrom("127.0.11.1", roUser, roPass)
		if err != nil {
			continue // evicted before its login finished: fine
		}
		loggedIn++
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		closed = append(closed, done)
	}
	// The admin gets a session.
	start := time.Now()
	conn, err := e.dialFrom("127.0.0.1", rwUser, rwPass)
	if err != nil {
		t.Fatalf("the admin cannot log in while idle connections are held: %v", err)
	}
	c, err := e.start(conn, true)
	if err != nil {
		t.Fatalf("the admin's session: %v", err)
	}
	isOK(t, c.rpc(`<lock><target><running/></target></lock>`))
	t.Logf("admin in after %v", time.Since(start))
	if loggedIn == 0 {
		t.Fatal("the read-only user could not log in: its channel-less connections were not tried")
	}
	timeout := time.After(deadline + 20*time.Second)
	for i, ch := range closed {
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("connection %d of %d still open after its deadline (%+v)", i, len(closed), e.srv.edge.Load().Stats())
		}
	}
	// The admin's session outlives them.
	isOK(t, c.rpc(`<unlock><target><running/></target></unlock>`))
	t.Logf("%+v", e.srv.edge.Load().Stats())
}

// memNow is the Go heap in use and the RSS of this process.
func memNow(t testing.TB) (heap, rss int64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb << 10
		}
	}
	return int64(ms.HeapAlloc), rss
}

// hugeChunkBound is what 16 sessions announcing a 40 MiB chunk each (640
// MiB announced) and trickling 16 KiB may cost: their bytes, bufio and SSH
// buffers, nowhere near the announced sizes.
const hugeChunkBound = 48 << 20

// TestHugeChunkHeaderTrickle (issue 12, item 3): a chunk header announcing
// 40 MiB allocates nothing until the bytes arrive.
func TestHugeChunkHeaderTrickle(t *testing.T) {
	e := newEnv(t, nil)
	var clients []*client
	for i := range 16 {
		conn, err := e.dialFrom(fmt.Sprintf("127.0.12.%d", i/4+1), rwUser, rwPass)
		if err != nil {
			t.Fatal(err)
		}
		c, err := e.start(conn, true)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	runtime.GC()
	heap0, rss0 := memNow(t)
	for _, c := range clients {
		if _, err := c.fr.w.Write([]byte("\n#41943040\n" + strings.Repeat("<", 16<<10))); err != nil {
			t.Fatal(err)
		}
	}
	// The server has read what was sent when the sessions hold budget for
	// it; sample the memory while they wait for the rest.
	var peakHeap, peakRSS int64
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		h, r := memNow(t)
		peakHeap, peakRSS = max(peakHeap, h-heap0), max(peakRSS, r-rss0)
	}
	t.Logf("16 sessions announcing 40 MiB each: heap +%d KiB, RSS +%d KiB", peakHeap>>10, peakRSS>>10)
	if peakHeap > hugeChunkBound || peakRSS > hugeChunkBound {
		t.Fatalf("heap +%d MiB, RSS +%d MiB: bound %d MiB (the announced sizes were allocated)", peakHeap>>20, peakRSS>>20, hugeChunkBound>>20)
	}
	// The trickling sessions are still served once their messages complete.
	c := clients[0]
	msg := fmt.Sprintf(`<rpc message-id="1" xmlns="%s"><get-config><source><running/></source></get-config></rpc>`, baseNS)
	_, _ = c.fr.w.Write([]byte(strings.Repeat(" ", 41943040-16<<10-len(msg))))
	_, _ = c.fr.w.Write([]byte(msg + "\n##\n"))
	b, err := c.fr.read()
	if err != nil || !bytes.Contains(b, []byte("malformed")) && !bytes.Contains(b, []byte("<data")) {
		t.Fatalf("reply after the big chunk: %.200s %v", b, err)
	}
}

// TestMessageBudgetAcrossSessions: when the incoming messages of all
// sessions would go over MaxBuffered, the session that goes over is ended
// with resource-denied; the session holding the memory is not hurt.
func TestMessageBudgetAcrossSessions(t *testing.T) {
	const maxMsg = 600 << 10
	e := newEnv(t, func(c *Config) { c.MaxMessage = maxMsg; c.MaxBuffered = 1 << 20 })
	a := e.dial(rwUser, rwPass, true)
	b := e.dial(rwUser, rwPass, true)
	get := fmt.Sprintf(`<rpc message-id="7" xmlns="%s"><get-config><source><running/></source></get-config></rpc>`, baseNS)
	pad := 500<<10 - len(get)
	// a sends most of a 500 KiB message and holds it.
	if _, err := a.fr.w.Write([]byte(fmt.Sprintf("\n#%d\n%s", 500<<10, strings.Repeat(" ", pad)))); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); e.srv.budget.used.Load() < int64(pad); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the server holds %d bytes of a's message", e.srv.budget.used.Load())
		}
	}
	// b's 590 KiB message (below MaxMessage) does not fit beside it; the
	// server answers before b has sent it all.
	go func() {
		_ = b.fr.write([]byte(fmt.Sprintf(`<rpc message-id="1" xmlns="%s"><get>%s</get></rpc>`, baseNS, strings.Repeat(" ", 590<<10))))
	}()
	reply, err := b.fr.read()
	if err != nil || !bytes.Contains(reply, []byte("resource-denied")) || !bytes.Contains(reply, []byte("across all sessions")) {
		t.Fatalf("b's reply %.300q, %v: want resource-denied", reply, err)
	}
	if _, err := b.rawBytes(fmt.Sprintf(`<rpc message-id="2" xmlns="%s"><get/></rpc>`, baseNS)); err == nil {
		t.Fatal("b's session survived going over the budget")
	}
	// a finishes its message and is answered.
	if _, err := a.fr.w.Write([]byte(get + "\n##\n")); err != nil {
		t.Fatal(err)
	}
	r, err := a.fr.read()
	if err != nil || !bytes.Contains(r, []byte("<data")) {
		t.Fatalf("a's reply %.200q, %v", r, err)
	}
	a.rpc(`<get-config><source><running/></source></get-config>`)
	for end := time.Now().Add(10 * time.Second); e.srv.budget.used.Load() > 64<<10; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d bytes of budget still held after the messages were handled", e.srv.budget.used.Load())
		}
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

// TestAcceptErrorsDoNotStopServe (issue 12, item 5): errors from Accept,
// as at the file limit, are retried; the server keeps serving.
func TestAcceptErrorsDoNotStopServe(t *testing.T) {
	e := newEnv(t, nil)
	srv, err := New(e.srv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := &flakyListener{Listener: inner, errs: []error{
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)},
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)},
		&net.OpError{Op: "accept", Net: "tcp", Err: syscall.ECONNABORTED},
		errors.New("accept: something unexpected"),
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
	conn, err := e2.dialFrom("127.0.0.1", rwUser, rwPass)
	var c *client
	if err == nil {
		c, err = e2.start(conn, true)
	}
	if err != nil {
		select {
		case err := <-done:
			done <- nil // for the deferred wait
			t.Fatalf("Serve returned after accept errors: %v", err)
		default:
		}
		t.Fatalf("no session after accept errors: %v", err)
	}
	isOK(t, c.rpc(`<lock><target><running/></target></lock>`))
}

// TestLoginBackoff (issue 12, item 8): wrong passwords from one address
// put it in backoff, where even the right password is refused; the admin
// at another address logs in.
func TestLoginBackoff(t *testing.T) {
	e := newEnv(t, nil)
	for i := range auth.DefaultSourceFree + 1 {
		if c, err := e.dialFrom("127.0.13.1", rwUser, fmt.Sprintf("guess-%d", i)); err == nil {
			c.Close()
			t.Fatal("a wrong password logged in")
		}
	}
	if c, err := e.dialFrom("127.0.13.1", rwUser, rwPass); err == nil {
		c.Close()
		t.Fatal("the guessing address logged in during its backoff")
	}
	c, err := e.dialFrom("127.0.0.1", rwUser, rwPass)
	if err != nil {
		t.Fatalf("the admin from another address: %v", err)
	}
	c.Close()
}

// TestRevokedUserSessionEnds (issue 12, item 8): deleting a user from the
// users file ends its session with an access-denied rpc-error.
func TestRevokedUserSessionEnds(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.dial(roUser, roPass, true)
	alice := e.dial(rwUser, rwPass, true)
	if err := auth.DelUser(e.dir+"/users", roUser); err != nil {
		t.Fatal(err)
	}
	type result struct {
		b   []byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		b, err := bob.fr.read()
		got <- result{b, err}
	}()
	select {
	case r := <-got:
		if r.err != nil || !bytes.Contains(r.b, []byte("access-denied")) || !bytes.Contains(r.b, []byte(`user &#34;bob&#34; was removed`)) && !bytes.Contains(r.b, []byte(`user "bob" was removed`)) {
			t.Fatalf("bob got %q, %v; want an access-denied rpc-error saying he was removed", r.b, r.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("bob's session still open after he was removed")
	}
	if _, err := bob.fr.read(); err == nil {
		t.Fatal("bob's session continues")
	}
	isOK(t, alice.rpc(`<lock><target><running/></target></lock>`))
}

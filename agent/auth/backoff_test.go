package auth

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time        { return c.t }
func (c *clock) add(d time.Duration)   { c.t = c.t.Add(d) }
func src(s string) netip.Prefix        { return SourceOf(netip.MustParseAddr(s)) }
func newTestBackoff(c *clock) *Backoff { b := NewBackoff(BackoffConfig{}); b.now = c.now; return b }
func tcp(s string) net.Addr            { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
func retry(err error) (time.Duration, bool) {
	var be *BackoffError
	if errors.As(err, &be) {
		return be.Retry, true
	}
	return 0, false
}

// fail makes n failed attempts of user from s.
func fail(t *testing.T, b *Backoff, s netip.Prefix, user string, known bool, n int) {
	t.Helper()
	for i := range n {
		if err := b.admit(s, user, known); err != nil {
			t.Fatalf("attempt %d refused: %v", i+1, err)
		}
		b.done(s, user, known, false)
	}
}

func TestSourceBackoff(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	b := newTestBackoff(c)
	a := src("203.0.113.7")
	fail(t, b, a, "nobody", false, DefaultSourceFree)
	// Free failures used up: the next failure starts the doubling wait.
	fail(t, b, a, "nobody", false, 1)
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		err := b.admit(a, "nobody", false)
		if d, ok := retry(err); !ok || d != want {
			t.Fatalf("admit = %v, want a wait of %v", err, want)
		}
		c.add(want)
		fail(t, b, a, "nobody", false, 1)
	}
	// The wait stops doubling at Max.
	for range 20 {
		c.add(DefaultBackoffMax)
		fail(t, b, a, "nobody", false, 1)
	}
	if d, _ := retry(b.admit(a, "nobody", false)); d != DefaultBackoffMax {
		t.Fatalf("wait %v, want the maximum %v", d, DefaultBackoffMax)
	}
	// Another address is not affected; the same IPv6 /64 is one source.
	if err := b.admit(src("203.0.113.8"), "nobody", false); err != nil {
		t.Fatalf("another source delayed: %v", err)
	}
	if SourceOf(netip.MustParseAddr("2001:db8::1")) != SourceOf(netip.MustParseAddr("2001:db8::ffff:1")) {
		t.Error("two addresses of one /64 are two sources")
	}
	if SourceOf(netip.MustParseAddr("::ffff:203.0.113.7")) != a {
		t.Error("an IPv4-mapped address is not its IPv4 source")
	}
	// Forgotten after Forget; a success clears the source.
	c.add(DefaultForget)
	if err := b.admit(a, "nobody", false); err != nil {
		t.Fatalf("failures not forgotten: %v", err)
	}
	b.done(a, "nobody", false, true)
	if err := b.admit(a, "nobody", false); err != nil {
		t.Fatalf("after a success: %v", err)
	}
}

// TestUserBackoffSparesCleanSources: many sources guessing one user's
// password slow each other down, but a source with no failures of its own
// (the admin's) is never delayed.
func TestUserBackoffSparesCleanSources(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	b := newTestBackoff(c)
	for i := range 2 * DefaultUserFree {
		fail(t, b, src(fmt.Sprintf("198.51.100.%d", i+1)), "admin", true, 1)
	}
	// A source that failed once is now subject to the user's backoff.
	if d, ok := retry(b.admit(src("198.51.100.1"), "admin", true)); !ok || d <= 0 {
		t.Fatalf("a failing source was not delayed by the user's backoff (%v)", d)
	}
	// The admin's own address, with no failures, is never delayed.
	for range 3 {
		admin := src("192.0.2.10")
		if err := b.admit(admin, "admin", true); err != nil {
			t.Fatalf("the admin's clean source was delayed: %v", err)
		}
		b.done(admin, "admin", true, true)
	}
	// Once the wait is over, one attempt gets through, and the next waits
	// for the following period.
	c.add(DefaultBackoffMax)
	if err := b.admit(src("198.51.100.2"), "admin", true); err != nil {
		t.Fatalf("after the wait: %v", err)
	}
	if _, ok := retry(b.admit(src("198.51.100.3"), "admin", true)); !ok {
		t.Fatal("a second attempt in the same period got through")
	}
	// Unknown user names are not counted per user (the table stays bounded).
	for i := range 100 {
		fail(t, b, src(fmt.Sprintf("192.0.2.%d", 100+i)), fmt.Sprintf("u%d", i), false, 1)
	}
	if len(b.users) != 1 {
		t.Fatalf("%d users tracked, want only the existing one", len(b.users))
	}
}

func TestInFlightPerSource(t *testing.T) {
	b := newTestBackoff(&clock{t: time.Unix(1e9, 0)})
	a := src("203.0.113.9")
	for range DefaultMaxInFlight {
		if err := b.admit(a, "x", false); err != nil {
			t.Fatal(err)
		}
	}
	err := b.admit(a, "x", false)
	var be *BackoffError
	if !errors.As(err, &be) || !be.Busy {
		t.Fatalf("admit = %v, want busy", err)
	}
	b.done(a, "x", false, true)
	if err := b.admit(a, "x", false); err != nil {
		t.Fatalf("after one check ended: %v", err)
	}
}

func TestSourceTableBounded(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	b := NewBackoff(BackoffConfig{MaxSources: 64})
	b.now = c.now
	for i := range 1000 {
		c.add(time.Millisecond)
		fail(t, b, src(fmt.Sprintf("10.0.%d.%d", i/256, i%256)), "x", false, 1)
	}
	if len(b.sources) > 64 {
		t.Fatalf("%d sources remembered, limit 64", len(b.sources))
	}
}

// TestLoginRefusesWithoutBcrypt: a source in backoff is refused even with
// the right password, at once; another source logs in.
func TestLoginRefusesWithoutBcrypt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := AddUser(path, "admin", RoleReadWrite, []byte("right")); err != nil {
		t.Fatal(err)
	}
	u, err := OpenUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	attacker := tcp("127.0.0.2:40000")
	for range DefaultSourceFree + 1 {
		if _, err := u.Login(attacker, "admin", "wrong"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("Login = %v", err)
		}
	}
	start := time.Now()
	for range 100 {
		if _, err := u.Login(attacker, "admin", "guess"); !errors.Is(err, ErrBackoff) {
			t.Fatalf("Login in backoff = %v, want ErrBackoff", err)
		}
	}
	// 100 bcrypt verifications would take seconds; refusals take nothing.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("100 refused logins took %v: bcrypt was spent", d)
	}
	if role, err := u.Login(tcp("127.0.0.1:40000"), "admin", "right"); err != nil || role != RoleReadWrite {
		t.Fatalf("admin from a clean source: %v %v", role, err)
	}
}

// TestConcurrentIdenticalLoginsShareACheck: a client opening several
// streams at once with one password is not refused as busy.
func TestConcurrentIdenticalLoginsShareACheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := AddUser(path, "admin", RoleReadWrite, []byte("right")); err != nil {
		t.Fatal(err)
	}
	u, err := OpenUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := u.Login(tcp("127.0.0.1:1"), "admin", "right")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent login: %v", err)
		}
	}
}

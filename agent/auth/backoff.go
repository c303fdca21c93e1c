package auth

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Backoff slows password guessing down, for both northbound servers at
// once (they share one Users, hence one Backoff):
//
//   - per source (an IPv4 address, or an IPv6 /64): after SourceFree failed
//     logins, each further failure makes the source wait Base, 2×Base, 4×Base
//     ... up to Max before its next attempt;
//   - per user (only users that exist): after UserFree failures against the
//     user from all sources together, the same doubling wait applies to the
//     user, one attempt per wait, but only for sources that have failed
//     themselves recently. A source with no recent failures is never delayed
//     by failures elsewhere, so an attacker guessing the admin's password
//     from other addresses cannot lock the admin out;
//   - at most MaxInFlight different password checks run at once per source
//     (the same user and password asked for concurrently share one check).
//
// A source or user in backoff is refused at once, without spending a bcrypt
// verification. Failures are forgotten Forget after the last one; a success
// clears the source's failures.
type Backoff struct {
	cfg BackoffConfig
	now func() time.Time

	mu      sync.Mutex
	sources map[netip.Prefix]*failures
	users   map[string]*failures
}

// BackoffConfig configures a Backoff; zero fields take the defaults.
type BackoffConfig struct {
	SourceFree  int           // failures a source may make before it waits (5)
	UserFree    int           // failures against one user, from all sources, before the user waits (20)
	Base        time.Duration // the first wait, doubled per further failure (1s)
	Max         time.Duration // the longest wait (1m)
	Forget      time.Duration // failures older than this are forgotten (15m)
	MaxInFlight int           // concurrent password checks per source (2)
	MaxSources  int           // sources remembered (65536)
}

// Defaults of BackoffConfig.
const (
	DefaultSourceFree  = 5
	DefaultUserFree    = 20
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = time.Minute
	DefaultForget      = 15 * time.Minute
	DefaultMaxInFlight = 2
	DefaultMaxSources  = 1 << 16
)

func (c BackoffConfig) withDefaults() BackoffConfig {
	if c.SourceFree <= 0 {
		c.SourceFree = DefaultSourceFree
	}
	if c.UserFree <= 0 {
		c.UserFree = DefaultUserFree
	}
	if c.Base <= 0 {
		c.Base = DefaultBackoffBase
	}
	if c.Max <= 0 {
		c.Max = DefaultBackoffMax
	}
	if c.Max < c.Base {
		c.Max = c.Base
	}
	if c.Forget <= 0 {
		c.Forget = DefaultForget
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxSources <= 0 {
		c.MaxSources = DefaultMaxSources
	}
	return c
}

// failures is the record of a source or a user.
type failures struct {
	n        int       // failures since the last success, not yet forgotten
	last     time.Time // the last failure
	until    time.Time // no attempt before this
	inFlight int       // password checks running (sources only)
}

// ErrBackoff is wrapped by the error of a login refused because of earlier
// failures (see BackoffError).
var ErrBackoff = errors.New("auth: too many failed logins")

// BackoffError is a login refused without checking the password.
type BackoffError struct {
	Retry time.Duration // when an attempt may be made again (0: when a running check ends)
	Busy  bool          // refused because of concurrent checks, not failures
}

func (e *BackoffError) Error() string {
	if e.Busy {
		return "auth: too many concurrent logins from this address: retry when one has ended"
	}
	return fmt.Sprintf("auth: too many failed logins: retry in %s", e.Retry.Round(time.Second))
}

func (e *BackoffError) Unwrap() error { return ErrBackoff }

// NewBackoff returns a Backoff with cfg (zero fields take the defaults).
func NewBackoff(cfg BackoffConfig) *Backoff {
	return &Backoff{cfg: cfg.withDefaults(), now: time.Now, sources: map[netip.Prefix]*failures{}, users: map[string]*failures{}}
}

// Source is the unit the backoff counts per: an IPv4 address, or the /64 of
// an IPv6 address (one host usually has a whole /64). Anything else (a Unix
// socket) is one shared source, the zero Prefix.
func Source(a net.Addr) netip.Prefix {
	var ip netip.Addr
	switch x := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(x.IP)
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(x.IP)
	default:
		if a == nil {
			return netip.Prefix{}
		}
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Prefix{}
		}
		ip = ap.Addr()
	}
	return SourceOf(ip)
}

// SourceOf is Source for an IP address.
func SourceOf(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		return netip.PrefixFrom(ip, 32)
	case ip.Is6():
		p, _ := ip.WithZone("").Prefix(64)
		return p
	}
	return netip.Prefix{}
}

// wait is the backoff after n failures of which free were free.
func (b *Backoff) wait(n, free int) time.Duration {
	if n <= free {
		return 0
	}
	d := b.cfg.Base
	for i := free + 1; i < n && d < b.cfg.Max; i++ {
		d *= 2
	}
	return min(d, b.cfg.Max)
}

// live returns the record if it is not forgotten yet.
func (b *Backoff) live(f *failures, now time.Time) bool {
	return f != nil && (f.inFlight > 0 || now.Sub(f.last) < b.cfg.Forget)
}

// admit decides whether src may try user's password now; known says whether
// user exists. On success the caller must call done once the check is over.
func (b *Backoff) admit(src netip.Prefix, user string, known bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	s := b.sources[src]
	if s != nil && !b.live(s, now) {
		delete(b.sources, src)
		s = nil
	}
	if s != nil && now.Before(s.until) {
		return &BackoffError{Retry: s.until.Sub(now)}
	}
	if s != nil && s.inFlight >= b.cfg.MaxInFlight {
		return &BackoffError{Busy: true}
	}
	// The user's backoff applies to sources that have failed themselves.
	if u := b.users[user]; known && u != nil && s != nil && s.n > 0 {
		if !b.live(u, now) {
			delete(b.users, user)
		} else if u.n > b.cfg.UserFree {
			if now.Before(u.until) {
				return &BackoffError{Retry: u.until.Sub(now)}
			}
			// One attempt per wait: the next waits for this one's outcome.
			u.until = now.Add(b.wait(u.n, b.cfg.UserFree))
		}
	}
	if s == nil {
		s = b.newSourceLocked(src, now)
	}
	s.inFlight++
	return nil
}

// newSourceLocked records a new source, making room if the table is full:
// forgotten entries first, then the oldest eighth.
func (b *Backoff) newSourceLocked(src netip.Prefix, now time.Time) *failures {
	if len(b.sources) >= b.cfg.MaxSources {
		b.sweepLocked(now)
	}
	if len(b.sources) >= b.cfg.MaxSources {
		var cutoff time.Time
		// The last failure times of the entries, to drop the oldest eighth.
		times := make([]time.Time, 0, len(b.sources))
		for _, f := range b.sources {
			times = append(times, f.last)
		}
		cutoff = nthOldest(times, len(times)/8)
		for k, f := range b.sources {
			if f.inFlight == 0 && !f.last.After(cutoff) {
				delete(b.sources, k)
			}
		}
	}
	s := &failures{last: now.Add(-b.cfg.Forget)}
	b.sources[src] = s
	return s
}

// nthOldest returns the k-th smallest time (selection, average O(n)).
func nthOldest(ts []time.Time, k int) time.Time {
	for len(ts) > 1 {
		p := ts[len(ts)/2]
		var lo, hi []time.Time
		eq := 0
		for _, t := range ts {
			switch {
			case t.Before(p):
				lo = append(lo, t)
			case t.After(p):
				hi = append(hi, t)
			default:
				eq++
			}
		}
		switch {
		case k < len(lo):
			ts = lo
		case k < len(lo)+eq:
			return p
		default:
			k -= len(lo) + eq
			ts = hi
		}
	}
	return ts[0]
}

// sweepLocked forgets what is old.
func (b *Backoff) sweepLocked(now time.Time) {
	for k, f := range b.sources {
		if !b.live(f, now) {
			delete(b.sources, k)
		}
	}
	for k, f := range b.users {
		if !b.live(f, now) {
			delete(b.users, k)
		}
	}
}

// done records the outcome of an admitted check.
func (b *Backoff) done(src netip.Prefix, user string, known, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	s := b.sources[src]
	if s == nil { // made room for others meanwhile
		s = b.newSourceLocked(src, now)
	} else {
		s.inFlight--
	}
	if ok {
		s.n, s.until = 0, time.Time{}
		return
	}
	s.n++
	s.last = now
	if w := b.wait(s.n, b.cfg.SourceFree); w > 0 {
		s.until = now.Add(w)
	}
	if !known {
		return
	}
	u := b.users[user]
	if u == nil || !b.live(u, now) {
		u = &failures{}
		b.users[user] = u
	}
	u.n++
	u.last = now
	if w := b.wait(u.n, b.cfg.UserFree); w > 0 && u.until.Before(now.Add(w)) {
		u.until = now.Add(w)
	}
}

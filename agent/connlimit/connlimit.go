// Package connlimit guards the listener of a northbound server (gNMI,
// NETCONF) against clients that hold connections without logging in:
//
//   - connections are bounded in total and per source (auth.Source: an IPv4
//     address, an IPv6 /64);
//   - a connection that has not authenticated within AuthTimeout of being
//     accepted is closed (the server says when a connection authenticates);
//   - when a bound is reached, the oldest never-authenticated connection
//     (of that source, for the per-source bound) is closed to make room; an
//     authenticated connection is never evicted, and if there is no
//     never-authenticated one to evict, the new connection is closed at
//     once. So an attacker holding connections without credentials cannot
//     keep an admin out;
//   - Accept retries errors (EMFILE, ENFILE, ECONNABORTED, ...) with a
//     backoff of up to a second, logging them rate-limited; running out of
//     file descriptors also evicts the oldest never-authenticated connection.
//     It returns only once the listener is closed, so the server never
//     stops while the agent runs.
//
// It knows nothing of the protocols: the servers mark connections
// authenticated (Conn.Authenticated, or Listener.Authenticated by address
// for gRPC, which wraps connections in TLS). It imports agent/auth (for
// what a source is) and internal/ratelog, nothing else of ours.
package connlimit

import (
	"container/list"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/internal/ratelog"
)

// Limits bounds a listener's connections. Zero fields are unbounded
// (servers fill in their own defaults).
type Limits struct {
	MaxConns     int           // open connections in total
	MaxPerSource int           // open connections from one source
	AuthTimeout  time.Duration // close a connection not authenticated this long after accept
}

// Accept's retry backoff.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// Stats counts what a Listener did.
type Stats struct {
	Open    int    // connections open now
	Pending int    // of which never authenticated
	Refused uint64 // closed at accept: a bound reached, nothing to evict
	Evicted uint64 // never-authenticated connections closed to make room
	Expired uint64 // closed for not authenticating within AuthTimeout
	Retried uint64 // Accept errors retried
}

// Listener is a net.Listener that enforces Limits; its connections are
// *Conn.
type Listener struct {
	inner net.Listener
	lim   Limits
	name  string
	rl    *ratelog.Limiter
	done  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	open    int
	pending *list.List // of *Conn never authenticated, oldest first
	bySrc   map[netip.Prefix]int
	byAddr  map[addrKey]*Conn

	refused, evicted, expired, retried atomic.Uint64
}

type addrKey struct{ local, remote string }

func keyOf(local, remote net.Addr) addrKey {
	k := addrKey{}
	if local != nil {
		k.local = local.String()
	}
	if remote != nil {
		k.remote = remote.String()
	}
	return k
}

// Wrap returns a Listener over inner. name ("gNMI", "NETCONF") starts its
// log lines, which are rate-limited.
func Wrap(inner net.Listener, lim Limits, name string, log *slog.Logger) *Listener {
	return &Listener{
		inner: inner, lim: lim, name: name, rl: ratelog.New(log, 0, 0), done: make(chan struct{}),
		pending: list.New(), bySrc: map[netip.Prefix]int{}, byAddr: map[addrKey]*Conn{},
	}
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close closes the inner listener; Accept returns net.ErrClosed.
// Connections already accepted stay open.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.inner.Close()
}

// Stats returns the counters.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	s := Stats{Open: l.open, Pending: l.pending.Len()}
	l.mu.Unlock()
	s.Refused, s.Evicted, s.Expired, s.Retried = l.refused.Load(), l.evicted.Load(), l.expired.Load(), l.retried.Load()
	return s
}

// Accept returns the next admitted connection. Errors of the inner
// listener are retried with backoff; only a closed listener ends it.
func (l *Listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		nc, err := l.inner.Accept()
		if err != nil {
			if l.closed() || errors.Is(err, net.ErrClosed) {
				return nil, net.ErrClosed
			}
			l.retried.Add(1)
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				if v := l.evict(netip.Prefix{}, false); v != nil {
					v.Conn.Close()
				}
			}
			delay = min(max(2*delay, minAcceptBackoff), maxAcceptBackoff)
			l.rl.Warn(l.name+" accept failed: retrying", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-l.done:
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		if c := l.admit(nc); c != nil {
			return c, nil
		}
	}
}

func (l *Listener) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// admit registers a new connection, evicting a never-authenticated one if a
// bound is reached, or closes it if there is none to evict.
func (l *Listener) admit(nc net.Conn) *Conn {
	c := &Conn{Conn: nc, l: l, src: auth.Source(nc.RemoteAddr()), key: keyOf(nc.LocalAddr(), nc.RemoteAddr()), accepted: time.Now()}
	var victims []*Conn
	l.mu.Lock()
	if l.lim.MaxPerSource > 0 && l.bySrc[c.src] >= l.lim.MaxPerSource {
		v := l.evictLocked(c.src, true)
		if v == nil {
			n := l.bySrc[c.src]
			l.mu.Unlock()
			l.refuse(nc, "too many connections from this source", "open_from_source", n, "max_per_source", l.lim.MaxPerSource)
			return nil
		}
		victims = append(victims, v)
	}
	if l.lim.MaxConns > 0 && l.open >= l.lim.MaxConns {
		v := l.evictLocked(netip.Prefix{}, false)
		if v == nil {
			l.mu.Unlock()
			for _, v := range victims {
				v.Conn.Close()
			}
			l.refuse(nc, "too many connections, all authenticated", "open", l.lim.MaxConns, "max", l.lim.MaxConns)
			return nil
		}
		victims = append(victims, v)
	}
	l.open++
	l.bySrc[c.src]++
	l.byAddr[c.key] = c
	c.elem = l.pending.PushBack(c)
	if l.lim.AuthTimeout > 0 {
		c.timer = time.AfterFunc(l.lim.AuthTimeout, c.expire)
	}
	l.mu.Unlock()
	for _, v := range victims {
		l.rl.Info(l.name+" connection evicted: never authenticated, room needed", "remote", v.RemoteAddr().String(), "age", time.Since(v.accepted).Round(time.Millisecond))
		v.Conn.Close()
	}
	return c
}

func (l *Listener) refuse(nc net.Conn, why string, args ...any) {
	l.refused.Add(1)
	l.rl.Warn(l.name+" connection refused: "+why, append([]any{"remote", nc.RemoteAddr().String()}, args...)...)
	nc.Close()
}

// evict forgets the oldest never-authenticated connection (of src if
// bySrc) and returns it for the caller to close; nil if there is none.
func (l *Listener) evict(src netip.Prefix, bySrc bool) *Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.evictLocked(src, bySrc)
}

func (l *Listener) evictLocked(src netip.Prefix, bySrc bool) *Conn {
	for e := l.pending.Front(); e != nil; e = e.Next() {
		c := e.Value.(*Conn)
		if bySrc && c.src != src {
			continue
		}
		l.forgetLocked(c)
		l.evicted.Add(1)
		return c
	}
	return nil
}

// forgetLocked removes c from the accounting (once).
func (l *Listener) forgetLocked(c *Conn) {
	if c.gone {
		return
	}
	c.gone = true
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.elem != nil {
		l.pending.Remove(c.elem)
		c.elem = nil
	}
	l.open--
	if l.bySrc[c.src]--; l.bySrc[c.src] <= 0 {
		delete(l.bySrc, c.src)
	}
	if l.byAddr[c.key] == c {
		delete(l.byAddr, c.key)
	}
}

// Authenticated marks the connection between local and remote (as gRPC's
// peer information names them) authenticated, and says whether it found it.
func (l *Listener) Authenticated(local, remote net.Addr) bool {
	l.mu.Lock()
	c := l.byAddr[keyOf(local, remote)]
	if c != nil {
		l.authenticatedLocked(c)
	}
	l.mu.Unlock()
	return c != nil
}

func (l *Listener) authenticatedLocked(c *Conn) {
	if c.elem != nil {
		l.pending.Remove(c.elem)
		c.elem = nil
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.authed = true
}

// Conn is an admitted connection.
type Conn struct {
	net.Conn
	l        *Listener
	src      netip.Prefix
	key      addrKey
	accepted time.Time
	once     sync.Once

	// Guarded by l.mu.
	elem   *list.Element // in l.pending while never authenticated
	timer  *time.Timer
	authed bool
	gone   bool // forgotten: closed, evicted or expired
}

// Authenticated marks the connection authenticated: it is no longer closed
// by AuthTimeout or evicted.
func (c *Conn) Authenticated() {
	c.l.mu.Lock()
	if !c.gone {
		c.l.authenticatedLocked(c)
	}
	c.l.mu.Unlock()
}

// Close closes the connection and frees its place.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.forgetLocked(c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// expire closes the connection if it has not authenticated.
func (c *Conn) expire() {
	c.l.mu.Lock()
	if c.authed || c.gone {
		c.l.mu.Unlock()
		return
	}
	c.l.forgetLocked(c)
	c.l.mu.Unlock()
	c.l.expired.Add(1)
	c.l.rl.Info(c.l.name+" connection closed: not authenticated in time", "remote", c.RemoteAddr().String(), "auth_timeout", c.l.lim.AuthTimeout)
	c.Conn.Close()
}

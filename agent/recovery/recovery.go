// Package recovery decides what to do about an invalid SPI, as Cisco's
// Invalid Security Parameter Index Recovery does: count and log every one,
// and, only when the feature is on, the source has a configured pre-shared
// key, the per-source and global rate limits allow, and the same (source, SPI)
// was not handled within the dedup window, ask IKE to notify the source.
//
// The feature can be abused for denial of service (every notification may
// cost a Main Mode with Diffie-Hellman), hence the layered limits. Sources
// without a key never cause IKE traffic, whatever the rate. State is bounded:
// the per-source buckets and the dedup table have fixed capacities and are
// swept of idle entries, so a flood of random sources or SPIs cannot grow
// memory.
//
// It knows nothing of IKE, the dataplane or the model: the agent feeds it
// events and acts on its decisions.
package recovery

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Outcome is what was decided for one invalid SPI. The names match the
// model's last-event outcome enumeration.
type Outcome uint8

// Outcomes.
const (
	Notify           Outcome = iota + 1 // set up IKE and send INVALID-SPI
	RateLimited                         // per-source or global limit exceeded
	Deduplicated                        // same source and SPI within the dedup window
	NoKey                               // no pre-shared key for the source
	RecoveryDisabled                    // invalid-spi-recovery is off
)

func (o Outcome) String() string {
	switch o {
	case Notify:
		return "notified"
	case RateLimited:
		return "rate-limited"
	case Deduplicated:
		return "deduplicated"
	case NoKey:
		return "no-key"
	case RecoveryDisabled:
		return "recovery-disabled"
	}
	return fmt.Sprintf("outcome-%d", uint8(o))
}

// Config is the feature's configuration.
type Config struct {
	Enabled          bool
	PerPeerPerMinute uint32
	PerPeerBurst     uint32
	GlobalPerMinute  uint32
	DedupWindow      time.Duration
}

// Event is one packet with an unknown SPI.
type Event struct {
	Time     time.Time
	Src, Dst netip.Addr
	Proto    uint8 // 50 or 51
	SPI      uint32
}

// Capacity bounds (implementation constants).
const (
	maxBuckets = 4096 // per-source token buckets
	maxDedup   = 8192 // (source, SPI) entries
	// logEvery limits the %CRYPTO-4-RECVD_PKT_INV_SPI log line: at most one
	// line per source per logEvery, like IOS's rate-limited syslog.
	logEvery = time.Second
	// logBurst bounds log lines for all sources together, per second.
	logBurst = 20
	// sweepEvery bounds how often a full bucket table is swept.
	sweepEvery = time.Second
)

type bucket struct {
	tokens  float64
	last    time.Time
	lastLog time.Time
}

type dedupKey struct {
	src netip.Addr
	spi uint32
}

// Limiter makes the decisions. It is safe for concurrent use.
type Limiter struct {
	mu      sync.Mutex
	cfg     Config
	hasKey  func(netip.Addr) bool
	buckets map[netip.Addr]*bucket
	global  bucket
	logs    bucket // global log-line budget
	swept   time.Time
	dedup   map[dedupKey]time.Time
	log     *slog.Logger
	stats   Stats
	lastEv  Event
	lastOut Outcome
}

// Stats counts outcomes.
type Stats struct {
	Received, Notified, RateLimited, Deduplicated, NoKey, RecoveryDisabled uint64
	LogSuppressed                                                          uint64
}

// New returns a Limiter. hasKey reports whether a pre-shared key is
// configured for an address.
func New(cfg Config, hasKey func(netip.Addr) bool, log *slog.Logger) *Limiter {
	if log == nil {
		log = slog.Default()
	}
	return &Limiter{
		cfg:     cfg,
		hasKey:  hasKey,
		buckets: make(map[netip.Addr]*bucket),
		dedup:   make(map[dedupKey]time.Time),
		log:     log,
	}
}

// SetConfig replaces the configuration (a commit changed it).
func (l *Limiter) SetConfig(cfg Config, hasKey func(netip.Addr) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg = cfg
	l.hasKey = hasKey
}

// Decide counts one invalid SPI, logs it (rate-limited per source) and says
// whether to notify its source.
func (l *Limiter) Decide(ev Event) Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Received++
	now := ev.Time
	b := l.bucketFor(ev.Src, now)
	l.logLine(b, ev, now)
	out := l.decide(b, ev, now)
	switch out {
	case Notify:
		l.stats.Notified++
	case RateLimited:
		l.stats.RateLimited++
	case Deduplicated:
		l.stats.Deduplicated++
	case NoKey:
		l.stats.NoKey++
	case RecoveryDisabled:
		l.stats.RecoveryDisabled++
	}
	l.lastEv, l.lastOut = ev, out
	return out
}

func (l *Limiter) decide(b *bucket, ev Event, now time.Time) Outcome {
	if !l.cfg.Enabled {
		return RecoveryDisabled
	}
	if l.hasKey == nil || !l.hasKey(ev.Src) {
		return NoKey
	}
	k := dedupKey{ev.Src, ev.SPI}
	if t, ok := l.dedup[k]; ok && now.Sub(t) < l.cfg.DedupWindow {
		return Deduplicated
	}
	perPeerRate := float64(l.cfg.PerPeerPerMinute) / 60
	globalRate := float64(l.cfg.GlobalPerMinute) / 60
	refill(b, now, perPeerRate, float64(l.cfg.PerPeerBurst))
	refill(&l.global, now, globalRate, float64(max(l.cfg.GlobalPerMinute/6, 1)))
	if b.tokens < 1 || l.global.tokens < 1 {
		return RateLimited
	}
	b.tokens--
	l.global.tokens--
	l.remember(k, now)
	return Notify
}

// refill adds tokens for the time since the bucket was last used.
func refill(b *bucket, now time.Time, perSecond, burst float64) {
	if b.last.IsZero() {
		b.tokens, b.last = burst, now
		return
	}
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = min(burst, b.tokens+d*perSecond)
		b.last = now
	}
}

// bucketFor returns the source's bucket, evicting idle ones when full.
func (l *Limiter) bucketFor(src netip.Addr, now time.Time) *bucket {
	if b, ok := l.buckets[src]; ok {
		return b
	}
	if len(l.buckets) >= maxBuckets && now.Sub(l.swept) >= sweepEvery {
		l.swept = now
		l.sweepBuckets(now)
	}
	b := &bucket{}
	if len(l.buckets) < maxBuckets {
		l.buckets[src] = b
	}
	// When still full (a flood of distinct sources, all recent), the new
	// source gets a fresh, untracked bucket: it is still limited by the
	// global bucket, and memory stays bounded.
	return b
}

// sweepBuckets drops buckets idle long enough to have refilled completely.
func (l *Limiter) sweepBuckets(now time.Time) {
	idle := time.Minute
	if l.cfg.PerPeerPerMinute > 0 {
		idle = time.Duration(float64(l.cfg.PerPeerBurst) / float64(l.cfg.PerPeerPerMinute) * float64(time.Minute))
	}
	idle = max(idle, 2*logEvery)
	for k, b := range l.buckets {
		if now.Sub(b.last) > idle && now.Sub(b.lastLog) > idle {
			delete(l.buckets, k)
		}
	}
}

func (l *Limiter) remember(k dedupKey, now time.Time) {
	if len(l.dedup) >= maxDedup {
		for dk, t := range l.dedup {
			if now.Sub(t) >= l.cfg.DedupWindow {
				delete(l.dedup, dk)
			}
		}
		if len(l.dedup) >= maxDedup {
			// Everything is recent: forget an arbitrary entry. The
			// rate limits still hold.
			for dk := range l.dedup {
				delete(l.dedup, dk)
				break
			}
		}
	}
	l.dedup[k] = now
}

// logLine writes the router-style message, at most once per source per
// logEvery; suppressed lines are counted.
func (l *Limiter) logLine(b *bucket, ev Event, now time.Time) {
	refill(&l.logs, now, logBurst, logBurst)
	if (!b.lastLog.IsZero() && now.Sub(b.lastLog) < logEvery) || l.logs.tokens < 1 {
		l.stats.LogSuppressed++
		return
	}
	l.logs.tokens--
	b.lastLog = now
	l.log.Warn(fmt.Sprintf("%%CRYPTO-4-RECVD_PKT_INV_SPI: decaps: rec'd IPSEC packet has invalid spi for destaddr=%s, prot=%d, spi=0x%X(%d), srcaddr=%s",
		ev.Dst, ev.Proto, ev.SPI, ev.SPI, ev.Src),
		"src", ev.Src, "dst", ev.Dst, "proto", ev.Proto, "spi", fmt.Sprintf("0x%08x", ev.SPI))
}

// Stats returns the counters.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Last returns the most recent event and its outcome (zero if none).
func (l *Limiter) Last() (Event, Outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastEv, l.lastOut
}

// Size reports how many per-source and dedup entries are held (for tests and
// telemetry of the bound).
func (l *Limiter) Size() (buckets, dedup int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets), len(l.dedup)
}

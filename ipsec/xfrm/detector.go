package xfrm

import (
	"net/netip"
	"sync"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// DetectorConfig bounds the userspace half of invalid-SPI detection. Zero
// fields take the defaults in parentheses.
type DetectorConfig struct {
	// Dedup: the same (source, destination, protocol, SPI) is reported at
	// most once per Dedup (10 s).
	Dedup time.Duration
	// Rate and Burst: per-source token bucket, events per second (1) and
	// bucket size (5).
	Rate  float64
	Burst int
	// MaxSources and MaxKeys bound the tables (4096 each). When a table is
	// full of live entries, new sources or keys are suppressed and counted.
	MaxSources int
	MaxKeys    int
	// Now is the clock (time.Now); tests inject a fake one.
	Now func() time.Time
}

func (c DetectorConfig) withDefaults() DetectorConfig {
	if c.Dedup <= 0 {
		c.Dedup = 10 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 1
	}
	if c.Burst <= 0 {
		c.Burst = 5
	}
	if c.MaxSources <= 0 {
		c.MaxSources = 4096
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = 4096
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// DetectorStats counts what the detector saw and why it stayed quiet.
type DetectorStats struct {
	Seen           uint64 // packets offered to Observe
	Reported       uint64 // events raised
	SuppressedDup  uint64 // same key within the dedup window
	SuppressedRate uint64 // the source's bucket was empty
	SuppressedFull uint64 // a table was full of live entries
	Sources, Keys  int    // current table sizes
}

type dedupKey struct {
	src, dst netip.Addr
	proto    alg.Protocol
	spi      uint32
}

type bucket struct {
	tokens float64
	last   time.Time
}

// Detector turns unknown-SPI packets into rate-limited, deduplicated
// ipsec.EventInvalidSPI events, with bounded memory. It is safe for
// concurrent use and does not allocate per packet once its tables have grown.
type Detector struct {
	mu        sync.Mutex
	cfg       DetectorConfig
	sources   map[netip.Addr]bucket
	keys      map[dedupKey]time.Time // last report
	lastSweep time.Time
	stats     DetectorStats
}

// NewDetector returns a detector with cfg's bounds.
func NewDetector(cfg DetectorConfig) *Detector {
	cfg = cfg.withDefaults()
	return &Detector{
		cfg:     cfg,
		sources: make(map[netip.Addr]bucket),
		keys:    make(map[dedupKey]time.Time),
	}
}

// Observe offers one unknown-SPI packet. It returns the event to raise, or
// false when the packet is suppressed (duplicate, rate-limited, tables full).
func (d *Detector) Observe(src netip.Addr, sport uint16, dst netip.Addr, proto alg.Protocol, spi uint32) (ipsec.Event, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.cfg.Now()
	d.stats.Seen++
	k := dedupKey{src: src, dst: dst, proto: proto, spi: spi}
	if t, ok := d.keys[k]; ok && now.Sub(t) < d.cfg.Dedup {
		d.stats.SuppressedDup++
		return ipsec.Event{}, false
	}
	b, ok := d.sources[src]
	if !ok {
		if len(d.sources) >= d.cfg.MaxSources && !d.sweep(now, true) {
			d.stats.SuppressedFull++
			return ipsec.Event{}, false
		}
		b = bucket{tokens: float64(d.cfg.Burst), last: now}
	}
	b.tokens += now.Sub(b.last).Seconds() * d.cfg.Rate
	if b.tokens > float64(d.cfg.Burst) {
		b.tokens = float64(d.cfg.Burst)
	}
	b.last = now
	if b.tokens < 1 {
		d.sources[src] = b
		d.stats.SuppressedRate++
		return ipsec.Event{}, false
	}
	if _, ok := d.keys[k]; !ok && len(d.keys) >= d.cfg.MaxKeys && !d.sweep(now, false) {
		d.stats.SuppressedFull++
		return ipsec.Event{}, false
	}
	b.tokens--
	d.sources[src] = b
	d.keys[k] = now
	d.stats.Reported++
	return ipsec.Event{
		Kind:    ipsec.EventInvalidSPI,
		Time:    now,
		SA:      ipsec.SAKey{Dst: dst, Proto: proto, SPI: spi},
		Src:     src,
		SrcPort: sport,
	}, true
}

// sweep drops idle entries: sources whose bucket is full again and keys
// past the dedup window. It runs at most once per second of clock time so a
// flood of new sources cannot make every packet O(table). It reports whether
// the table it was called for (sources or keys) now has room.
func (d *Detector) sweep(now time.Time, forSources bool) bool {
	if now.Sub(d.lastSweep) < time.Second && !d.lastSweep.IsZero() {
		return false
	}
	d.lastSweep = now
	refill := time.Duration(float64(d.cfg.Burst) / d.cfg.Rate * float64(time.Second))
	for s, b := range d.sources {
		if now.Sub(b.last) >= refill {
			delete(d.sources, s)
		}
	}
	for k, t := range d.keys {
		if now.Sub(t) >= d.cfg.Dedup {
			delete(d.keys, k)
		}
	}
	if forSources {
		return len(d.sources) < d.cfg.MaxSources
	}
	return len(d.keys) < d.cfg.MaxKeys
}

// Stats returns a snapshot of the counters.
func (d *Detector) Stats() DetectorStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Sources, s.Keys = len(d.sources), len(d.keys)
	return s
}

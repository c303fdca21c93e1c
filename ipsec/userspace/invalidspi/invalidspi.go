// Package invalidspi decides which packets with an unknown SPI become
// invalid-SPI events. It dedups repeats of the same (source, protocol, SPI)
// in a fixed-size table and rate-limits what is left per source and in
// total with GCRA token buckets (like wireguard-go's ratelimiter), so that
// a flood of random SPIs from random sources costs a few nanoseconds per
// packet, allocates nothing, and holds a constant amount of memory. Every
// packet that does not become an event is counted.
//
// It knows nothing of packets or SAs: the dataplane calls Observe with what
// it parsed. The clock is injectable.
package invalidspi

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// Implementation constants: the table sizes bound the detector's memory
// (about 160 KiB) whatever the traffic.
const (
	dedupSlots  = 4096 // power of two
	sourceSlots = 1024 // power of two
)

// Config tunes the detector. Zero fields take the defaults in brackets.
type Config struct {
	// DedupWindow: the same (source, protocol, SPI) is reported at most
	// once per window [10s].
	DedupWindow time.Duration
	// PerSourceInterval and PerSourceBurst: a source earns one report per
	// interval, and may bank Burst of them [1s, 5].
	PerSourceInterval time.Duration
	PerSourceBurst    int
	// GlobalInterval and GlobalBurst bound reports from all sources
	// together [10ms (100/s), 100].
	GlobalInterval time.Duration
	GlobalBurst    int
	// Now is the clock [time.Now].
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.DedupWindow <= 0 {
		c.DedupWindow = 10 * time.Second
	}
	if c.PerSourceInterval <= 0 {
		c.PerSourceInterval = time.Second
	}
	if c.PerSourceBurst <= 0 {
		c.PerSourceBurst = 5
	}
	if c.GlobalInterval <= 0 {
		c.GlobalInterval = 10 * time.Millisecond
	}
	if c.GlobalBurst <= 0 {
		c.GlobalBurst = 100
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Stats counts what the detector saw. Seen = Reported + Duplicates +
// RateLimited + GlobalLimited.
type Stats struct {
	Seen          uint64 // packets with an unknown SPI
	Reported      uint64 // that became events
	Duplicates    uint64 // suppressed: same (source, protocol, SPI) recently reported
	RateLimited   uint64 // suppressed: the source's bucket was empty
	GlobalLimited uint64 // suppressed: the global bucket was empty
}

type dedupEntry struct {
	src   [16]byte
	spi   uint32
	proto uint8
	used  bool
	at    int64 // unix nanoseconds of the last report
}

type sourceEntry struct {
	src  [16]byte
	used bool
	tat  int64 // GCRA theoretical arrival time
}

// Detector is safe for concurrent use.
type Detector struct {
	cfg  Config
	seed uint64

	mu      sync.Mutex
	dedup   [dedupSlots]dedupEntry
	sources [sourceSlots]sourceEntry
	global  int64 // GCRA tat of the global bucket
	stats   Stats
}

// New returns a detector.
func New(cfg Config) *Detector {
	cfg.defaults()
	var s [8]byte
	rand.Read(s[:])
	return &Detector{cfg: cfg, seed: binary.LittleEndian.Uint64(s[:]) | 1}
}

// Observe records a packet from src with an unknown SPI and reports
// whether it should become an event (and a log line).
func (d *Detector) Observe(src netip.Addr, proto uint8, spi uint32) bool {
	a := src.As16()
	now := d.cfg.Now().UnixNano()
	h := d.hash(a, uint64(spi)<<8|uint64(proto))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Seen++
	e := &d.dedup[h&(dedupSlots-1)]
	if e.used && e.src == a && e.spi == spi && e.proto == proto && now-e.at < int64(d.cfg.DedupWindow) {
		d.stats.Duplicates++
		return false
	}
	s := &d.sources[d.hash(a, 0)&(sourceSlots-1)]
	if !s.used || s.src != a {
		// A new source takes the slot: the table stays bounded, and an
		// evicted source only gets its burst back.
		*s = sourceEntry{src: a, used: true, tat: now}
	}
	if !gcra(&s.tat, now, int64(d.cfg.PerSourceInterval), d.cfg.PerSourceBurst) {
		d.stats.RateLimited++
		return false
	}
	if !gcra(&d.global, now, int64(d.cfg.GlobalInterval), d.cfg.GlobalBurst) {
		d.stats.GlobalLimited++
		return false
	}
	*e = dedupEntry{src: a, spi: spi, proto: proto, used: true, at: now}
	d.stats.Reported++
	return true
}

// Forget drops the dedup entry of (src, proto, spi), if any. The dataplane
// calls it when an inbound SA with that SPI is deleted: the SPI may have
// been reported moments before, while the SA was being installed (an
// initiator can send before the responder has installed), and its going
// away now is new news, not a repeat.
func (d *Detector) Forget(src netip.Addr, proto uint8, spi uint32) {
	a := src.As16()
	h := d.hash(a, uint64(spi)<<8|uint64(proto))
	d.mu.Lock()
	defer d.mu.Unlock()
	e := &d.dedup[h&(dedupSlots-1)]
	if e.used && e.src == a && e.spi == spi && e.proto == proto {
		*e = dedupEntry{}
	}
}

// gcra is the generic cell rate algorithm: allow when the theoretical
// arrival time is no more than burst intervals ahead of now.
func gcra(tat *int64, now, interval int64, burst int) bool {
	t := max(*tat, now)
	if t-now > interval*int64(burst-1) {
		return false
	}
	*tat = t + interval
	return true
}

func (d *Detector) hash(a [16]byte, x uint64) uint64 {
	h := d.seed
	h = mix(h ^ binary.LittleEndian.Uint64(a[:8]))
	h = mix(h ^ binary.LittleEndian.Uint64(a[8:]))
	return mix(h ^ x)
}

func mix(x uint64) uint64 { // splitmix64 finaliser
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// Stats returns the counters.
func (d *Detector) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

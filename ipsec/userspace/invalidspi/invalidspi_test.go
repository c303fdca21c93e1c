package invalidspi

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func addr(i uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
}

func TestDedupAndRate(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	d := New(Config{Now: c.now, DedupWindow: 10 * time.Second, PerSourceInterval: time.Second, PerSourceBurst: 3})
	src := addr(1)
	if !d.Observe(src, 50, 0x1000) {
		t.Fatal("first packet not reported")
	}
	for range 100 {
		if d.Observe(src, 50, 0x1000) {
			t.Fatal("duplicate reported")
		}
	}
	if !d.Observe(src, 51, 0x1000) {
		t.Fatal("same SPI, other protocol not reported")
	}
	if !d.Observe(src, 50, 0x1001) {
		t.Fatal("third distinct SPI not reported (burst 3)")
	}
	if d.Observe(src, 50, 0x1002) {
		t.Fatal("fourth distinct SPI reported within burst")
	}
	if !d.Observe(addr(2), 50, 0x1002) {
		t.Fatal("other source throttled by the first")
	}
	c.t = c.t.Add(time.Second)
	if !d.Observe(src, 50, 0x1002) {
		t.Fatal("no report after the source's bucket refilled")
	}
	c.t = c.t.Add(11 * time.Second)
	if !d.Observe(src, 50, 0x1000) {
		t.Fatal("not reported again after the dedup window")
	}
	s := d.Stats()
	if s.Seen != s.Reported+s.Duplicates+s.RateLimited+s.GlobalLimited {
		t.Fatalf("stats do not add up: %+v", s)
	}
	if s.Duplicates != 100 || s.RateLimited != 1 || s.Reported != 6 {
		t.Fatalf("stats %+v", s)
	}
}

func TestGlobalLimit(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	d := New(Config{Now: c.now, GlobalInterval: 10 * time.Millisecond, GlobalBurst: 50})
	n := 0
	for i := range uint32(10000) {
		if d.Observe(addr(i), 50, i+256) {
			n++
		}
	}
	if n != 50 {
		t.Fatalf("%d reports from 10000 sources at one instant, want the global burst 50", n)
	}
	c.t = c.t.Add(time.Second) // 100 more tokens, capped at the burst
	n = 0
	for i := range uint32(10000) {
		if d.Observe(addr(i+20000), 50, i+256) {
			n++
		}
	}
	if n != 50 {
		t.Fatalf("after 1s: %d reports, want 50", n)
	}
}

// TestFloodBounded: a flood of random SPIs from random sources allocates
// nothing per packet and does not grow the heap.
func TestFloodBounded(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	d := New(Config{Now: c.now})
	r := rand.New(rand.NewPCG(1, 2))
	allocs := testing.AllocsPerRun(10000, func() {
		c.t = c.t.Add(10 * time.Microsecond) // 100k packets/s
		d.Observe(addr(r.Uint32()), 50, r.Uint32())
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per packet", allocs)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 1_000_000 {
		c.t = c.t.Add(10 * time.Microsecond)
		d.Observe(addr(r.Uint32()), 50, r.Uint32())
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 64<<10 {
		t.Fatalf("heap grew by %d bytes over 1M packets", grow)
	}
	s := d.Stats()
	// 10.1 s of flood (10k + 1M packets at 100k/s): at most the global
	// burst plus 100/s, and the limiter must not starve either.
	limit := uint64(100 + 1010 + 1)
	if s.Reported > limit || s.Reported < limit*9/10 {
		t.Fatalf("reported %d over 10.1s of flood, want <= %d", s.Reported, limit)
	}
	if s.Seen != s.Reported+s.Duplicates+s.RateLimited+s.GlobalLimited {
		t.Fatalf("stats do not add up: %+v", s)
	}
}

// BenchmarkFlood is the cost per packet of invalid-SPI detection under a
// flood of random SPIs from random sources.
func BenchmarkFlood(b *testing.B) {
	c := &clock{t: time.Unix(1000, 0)}
	d := New(Config{Now: c.now})
	r := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	for b.Loop() {
		c.t = c.t.Add(10 * time.Microsecond)
		d.Observe(addr(r.Uint32()), 50, r.Uint32())
	}
}

// BenchmarkFloodOneSource: random SPIs from one source.
func BenchmarkFloodOneSource(b *testing.B) {
	d := New(Config{})
	r := rand.New(rand.NewPCG(1, 2))
	src := addr(7)
	b.ReportAllocs()
	for b.Loop() {
		d.Observe(src, 50, r.Uint32())
	}
}

func TestForgetReportsAgain(t *testing.T) {
	now := time.Unix(1000, 0)
	d := New(Config{Now: func() time.Time { return now }})
	src := netip.MustParseAddr("192.0.2.1")
	if !d.Observe(src, 51, 0x1234) {
		t.Fatal("first observation not reported")
	}
	now = now.Add(time.Second)
	if d.Observe(src, 51, 0x1234) {
		t.Fatal("repeat within the dedup window reported")
	}
	d.Forget(src, 51, 0x1234)
	d.Forget(src, 50, 0x1234) // another protocol: no effect, no panic
	now = now.Add(time.Second)
	if !d.Observe(src, 51, 0x1234) {
		t.Fatal("after Forget (the SA with that SPI went away), the SPI is not reported again")
	}
}

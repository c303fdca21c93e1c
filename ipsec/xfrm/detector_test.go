package xfrm

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

var (
	peerA = netip.MustParseAddr("192.0.2.1")
	peerB = netip.MustParseAddr("198.51.100.1")
	local = netip.MustParseAddr("203.0.113.1")
)

func TestDetectorDedup(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	d := NewDetector(DetectorConfig{Dedup: 10 * time.Second, Rate: 100, Burst: 100, Now: clk.now})
	ev, ok := d.Observe(peerA, 0, local, alg.ESP, 0x1234)
	if !ok || ev.Kind != ipsec.EventInvalidSPI || ev.SA != (ipsec.SAKey{Dst: local, Proto: alg.ESP, SPI: 0x1234}) || ev.Src != peerA || !ev.Time.Equal(clk.t) {
		t.Fatalf("first packet: %+v %v", ev, ok)
	}
	for i := 0; i < 5; i++ {
		clk.advance(time.Second)
		if _, ok := d.Observe(peerA, 0, local, alg.ESP, 0x1234); ok {
			t.Fatalf("duplicate reported after %d s", i+1)
		}
	}
	if _, ok := d.Observe(peerA, 0, local, alg.AH, 0x1234); !ok {
		t.Error("same SPI for AH is a different key")
	}
	clk.advance(5 * time.Second)
	if _, ok := d.Observe(peerA, 0, local, alg.ESP, 0x1234); !ok {
		t.Error("not reported again after the dedup window")
	}
	s := d.Stats()
	if s.Seen != 8 || s.Reported != 3 || s.SuppressedDup != 5 {
		t.Errorf("stats %+v", s)
	}
}

func TestDetectorRateLimitPerSource(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	d := NewDetector(DetectorConfig{Rate: 1, Burst: 3, Now: clk.now})
	got := 0
	for spi := uint32(256); spi < 266; spi++ { // 10 distinct SPIs at once
		if _, ok := d.Observe(peerA, 0, local, alg.ESP, spi); ok {
			got++
		}
	}
	if got != 3 {
		t.Errorf("burst: %d reported, want 3", got)
	}
	if _, ok := d.Observe(peerB, 4500, local, alg.ESP, 999); !ok {
		t.Error("another source is limited by the first one's bucket")
	}
	clk.advance(2 * time.Second) // two tokens back
	got = 0
	for spi := uint32(1000); spi < 1010; spi++ {
		if _, ok := d.Observe(peerA, 0, local, alg.ESP, spi); ok {
			got++
		}
	}
	if got != 2 {
		t.Errorf("after 2 s: %d reported, want 2", got)
	}
	if s := d.Stats(); s.SuppressedRate != 15 || s.Reported != 6 {
		t.Errorf("stats %+v", s)
	}
}

func TestDetectorBoundedUnderFlood(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	d := NewDetector(DetectorConfig{MaxSources: 64, MaxKeys: 128, Rate: 1, Burst: 2, Now: clk.now})
	var b [4]byte
	for i := uint32(0); i < 100000; i++ {
		binary.BigEndian.PutUint32(b[:], 0xc6336400+i%4096) // many sources
		d.Observe(netip.AddrFrom4(b), 0, local, alg.ESP, i*2654435761)
		if i%1000 == 0 {
			clk.advance(10 * time.Millisecond)
		}
	}
	s := d.Stats()
	if s.Sources > 64 || s.Keys > 128 {
		t.Fatalf("tables grew past their bounds: %+v", s)
	}
	if s.SuppressedFull == 0 || s.Reported == 0 || s.Seen != 100000 {
		t.Errorf("stats %+v", s)
	}
	if s.Reported+s.SuppressedDup+s.SuppressedRate+s.SuppressedFull != s.Seen {
		t.Errorf("counters do not add up: %+v", s)
	}
	// Once the flood stops and time passes, sweeping frees room for a new source.
	clk.advance(time.Minute)
	if _, ok := d.Observe(peerB, 0, local, alg.ESP, 7); !ok {
		t.Error("new source suppressed after the flood ended")
	}
}

func TestDetectorNoAllocs(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	d := NewDetector(DetectorConfig{Now: clk.now})
	d.Observe(peerA, 0, local, alg.ESP, 1) // warm the tables
	spi := uint32(0)
	allocs := testing.AllocsPerRun(1000, func() {
		spi++
		d.Observe(peerA, 0, local, alg.ESP, spi)
	})
	if allocs > 0.01 {
		t.Errorf("%.2f allocations per suppressed packet", allocs)
	}
}

func BenchmarkDetectorRandomSPIFlood(b *testing.B) {
	d := NewDetector(DetectorConfig{})
	var a [4]byte
	x := uint32(2463534242)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		binary.BigEndian.PutUint32(a[:], 0xc0000200|x&0xff)
		d.Observe(netip.AddrFrom4(a), 0, local, alg.ESP, x)
	}
}

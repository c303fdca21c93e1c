package recovery

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	peer     = netip.MustParseAddr("192.0.2.1")
	stranger = netip.MustParseAddr("198.51.100.66")
	local    = netip.MustParseAddr("192.0.2.2")
	t0       = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
)

func defaults(enabled bool) Config {
	return Config{Enabled: enabled, PerPeerPerMinute: 6, PerPeerBurst: 3, GlobalPerMinute: 60, DedupWindow: 10 * time.Second}
}

func onlyPeer(a netip.Addr) bool { return a == peer }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)) }

func TestDecide(t *testing.T) {
	type step struct {
		after time.Duration // since t0
		src   netip.Addr
		spi   uint32
		want  Outcome
	}
	for _, tc := range []struct {
		desc  string
		cfg   Config
		steps []step
	}{
		{desc: "disabled by default counts but never notifies", cfg: defaults(false), steps: []step{
			{0, peer, 0x1000, RecoveryDisabled}, {time.Second, peer, 0x1001, RecoveryDisabled}}},
		{desc: "no key never notifies", cfg: defaults(true), steps: []step{
			{0, stranger, 0x1000, NoKey}, {time.Minute, stranger, 0x1000, NoKey}}},
		{desc: "dedup window per source and SPI", cfg: defaults(true), steps: []step{
			{0, peer, 0x1000, Notify},
			{time.Second, peer, 0x1000, Deduplicated},
			{9 * time.Second, peer, 0x1000, Deduplicated},
			{10 * time.Second, peer, 0x1000, Notify}}},
		{desc: "per-peer burst then refill", cfg: defaults(true), steps: []step{
			{0, peer, 1000, Notify}, {0, peer, 1001, Notify}, {0, peer, 1002, Notify},
			{0, peer, 1003, RateLimited},
			{10 * time.Second, peer, 1004, Notify}, // 6/min: one token per 10 s
			{11 * time.Second, peer, 1005, RateLimited}}},
		{desc: "global limit across sources", cfg: Config{Enabled: true, PerPeerPerMinute: 600, PerPeerBurst: 100, GlobalPerMinute: 6, DedupWindow: time.Second}, steps: []step{
			{0, peer, 1, Notify}, {0, peer, 2, RateLimited}}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			l := New(tc.cfg, onlyPeer, quiet())
			for i, s := range tc.steps {
				got := l.Decide(Event{Time: t0.Add(s.after), Src: s.src, Dst: local, Proto: 50, SPI: s.spi})
				if got != s.want {
					t.Fatalf("step %d (%v, spi %#x at +%v) = %v, want %v", i, s.src, s.spi, s.after, got, s.want)
				}
			}
			if st := l.Stats(); st.Received != uint64(len(tc.steps)) {
				t.Errorf("received = %d, want %d", st.Received, len(tc.steps))
			}
		})
	}
}

// A flood of random sources and SPIs keeps state bounded and, without keys,
// never yields Notify.
func TestFloodIsBounded(t *testing.T) {
	l := New(defaults(true), onlyPeer, quiet())
	var notify int
	for i := 0; i < 100000; i++ {
		src := netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})
		if l.Decide(Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Src: src, Dst: local, Proto: 50, SPI: uint32(i * 7919)}) == Notify {
			notify++
		}
	}
	if notify != 0 {
		t.Errorf("%d notifications for sources without a key", notify)
	}
	b, d := l.Size()
	if b > maxBuckets || d > maxDedup {
		t.Errorf("state grew to %d buckets, %d dedup entries", b, d)
	}
	// Keyed peer flooding random SPIs: only the burst gets through.
	for i := 0; i < 10000; i++ {
		if l.Decide(Event{Time: t0.Add(200 * time.Second), Src: peer, Dst: local, Proto: 50, SPI: uint32(i + 256)}) == Notify {
			notify++
		}
	}
	if notify != 3 {
		t.Errorf("keyed flood: %d notifications, want the burst of 3", notify)
	}
	if _, d := l.Size(); d > maxDedup {
		t.Errorf("dedup table grew to %d", d)
	}
}

func TestLogLine(t *testing.T) {
	var buf bytes.Buffer
	l := New(defaults(false), onlyPeer, slog.New(slog.NewTextHandler(&buf, nil)))
	for i := 0; i < 5; i++ {
		l.Decide(Event{Time: t0.Add(time.Duration(i) * 100 * time.Millisecond), Src: peer, Dst: local, Proto: 50, SPI: 0x2710})
	}
	want := "%CRYPTO-4-RECVD_PKT_INV_SPI: decaps: rec'd IPSEC packet has invalid spi for destaddr=192.0.2.2, prot=50, spi=0x2710(10000), srcaddr=192.0.2.1"
	if got := strings.Count(buf.String(), want); got != 1 {
		t.Fatalf("log has %d router lines in 0.5 s, want 1 (rate-limited):\n%s", got, buf.String())
	}
	if s := l.Stats(); s.LogSuppressed != 4 {
		t.Errorf("suppressed = %d, want 4", s.LogSuppressed)
	}
}

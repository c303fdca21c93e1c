package xfrm

import (
	"time"

	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/ipsec"
)

// BenchmarkHandleNFLOG is the userspace cost of one unknown-SPI packet that
// the kernel passed up: NFLOG attribute walk, IPv4/ESP parse, known-SPI
// check, detector (here mostly suppressing: one source, random SPIs).
func BenchmarkHandleNFLOG(b *testing.B) {
	d := &Dataplane{events: testQueue(b, 1), known: map[ipsec.SAKey]bool{}, det: NewDetector(DetectorConfig{})}
	d.cfg.log = discardLogger()
	msg := nflogMsg(ipv4(50, "192.0.2.1", "192.0.2.2", be32(0x1001, 7)))
	spiAt := len(msg) - 8 // the ESP SPI inside the payload attribute
	typ := uint16(nfnlSubsysULOG<<8 | nfulnlMsgPacket)
	x := uint32(2463534242)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		binary.BigEndian.PutUint32(msg[spiAt:], x|0x100)
		d.handleNFLOG(typ, msg)
		select {
		case <-d.events.Events():
		default:
		}
	}
}

// BenchmarkRootKernelFlood sends ESP packets with random SPIs from one
// namespace to another through a veth, with and without the nftables watch
// in the receiver. veth delivers in the sender's context, so ns/op includes
// the receiver's input path; the difference is the watch's kernel cost per
// packet (meta + payload + set lookup + limit; log only within the limit).
func BenchmarkRootKernelFlood(b *testing.B) {
	requireRoot(b)
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"no-watch", nil},
		{"nft-watch", []Option{}},
		{"raw-watch", []Option{WithInvalidSPI(InvalidSPIConfig{Method: MethodRawSocket})}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a, rb := topology(b)
			if tc.opts != nil {
				rb.dataplane(append(tc.opts, WithLogger(discardLogger()))...)
			}
			var fd int
			a.do(func() (err error) {
				fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ESP)
				return err
			})
			defer unix.Close(fd)
			dst := &unix.SockaddrInet4{Addr: outerB.As4()}
			pkt := espPayload(0)
			x := uint32(2463534242)
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				x ^= x << 13
				x ^= x >> 17
				x ^= x << 5
				binary.BigEndian.PutUint32(pkt, x|0x100)
				if err := unix.Sendto(fd, pkt, 0, dst); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(50 * time.Millisecond) // let a raw watch drain its queue
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// TestRootFloodBounded sprays ESP with random SPIs from random sources in
// 192.0.2.0/24 as fast as one thread can for a second and checks that
// what reaches userspace is bounded by the kernel limit and the detector's
// tables stay within their bounds. It logs the rates for bench/xfrm_RESULTS.md.
func TestRootFloodBounded(t *testing.T) {
	requireRoot(t)
	a, b := topology(t)
	cfg := InvalidSPIConfig{KernelRate: 50, KernelBurst: 50, Detector: DetectorConfig{MaxSources: 64, MaxKeys: 64}}
	d := b.dataplane(WithInvalidSPI(cfg), WithLogger(discardLogger()))
	var fd int
	a.do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW) // IP_HDRINCL
		return err
	})
	defer unix.Close(fd)
	dst := &unix.SockaddrInet4{Addr: outerB.As4()}
	pkt := ipv4(unix.IPPROTO_ESP, "192.0.2.1", "192.0.2.2", be32(0, 1, 0, 0, 0, 0))
	x := uint32(2463534242)
	sent := 0
	start := time.Now()
	for time.Since(start) < time.Second {
		for i := 0; i < 100; i++ {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			pkt[15] = byte(x>>24) | 1 // source 192.0.2.x
			if pkt[15] == 2 {
				pkt[15] = 3
			}
			binary.BigEndian.PutUint32(pkt[20:], x|0x100)
			if err := unix.Sendto(fd, pkt, 0, dst); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond)
	s := d.Stats()
	t.Logf("flood: %d packets in %v (%.0f/s); kernel passed up %d; detector %+v; events dropped %d",
		sent, elapsed, float64(sent)/elapsed.Seconds(), s.WatchPackets, s.InvalidSPI, s.EventsDropped)
	if max := uint64(cfg.KernelBurst) + uint64(float64(cfg.KernelRate)*(elapsed.Seconds()+0.3)) + 1; s.WatchPackets > max || s.WatchPackets == 0 {
		t.Errorf("kernel passed %d packets up, want 1..%d", s.WatchPackets, max)
	}
	if s.InvalidSPI.Sources > 64 || s.InvalidSPI.Keys > 64 {
		t.Errorf("detector tables beyond their bounds: %+v", s.InvalidSPI)
	}
	if s.InvalidSPI.Reported == 0 {
		t.Error("nothing reported")
	}
}

// cpuTime is the process's user+system CPU time in nanoseconds: less
// sensitive than wall time to other load on a shared machine, and it
// includes the watch goroutines' work.
func cpuTime() int64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

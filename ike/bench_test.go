package ike

import (
	"fmt"
	"math/rand"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
)

func benchPair(b *testing.B, n int, pfs alg.Group) *pair {
	cfg := baseConfig()
	cfg.MaxSAsPerPeer = 1 << 30
	cfg.MaxHalfOpen = 1 << 30
	var pols []ChildPolicy
	for i := 0; i < n; i++ {
		p := childPolicy(fmt.Sprint("a", i), addrA, addrB, lanA, lanB)
		p.PFS = pfs
		pols = append(pols, p)
	}
	pb := childPolicy("mapB", addrB, addrA, lanB, lanA)
	pb.PFS = pfs
	tb := &testing.T{}
	p := &pair{t: tb, now: t0,
		a: newNode(tb, addrA, cfg, 1, pols...), b: newNode(tb, addrB, cfg, 2, pb)}
	return p
}

// quietPump is pump without keeping output history (benchmarks).
func (p *pair) quietPump() (installs int) {
	for {
		moved := false
		for _, n := range []*node{p.a, p.b} {
			o := n.e.Ready()
			if n == p.b {
				installs += len(o.Install)
			}
			for _, pkt := range o.Send {
				moved = true
				p.deliver(n, pkt)
			}
		}
		if !moved {
			return installs
		}
	}
}

// BenchmarkMMQMInMemory: one op = one complete Main alg.Mode (aes128-sha1-
// modp2048) + Quick alg.Mode (ESP aes128-sha1, PFS modp2048) between two
// engines in memory, one at a time.
func BenchmarkMMQMInMemory(b *testing.B) {
	for _, pfs := range []alg.Group{alg.GroupNone, alg.MODP2048} {
		b.Run("pfs="+pfs.String(), func(b *testing.B) {
			p := benchPair(b, b.N, pfs)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			got := 0
			for i := 0; i < b.N; i++ {
				if err := p.a.e.InitiateNew(p.now, fmt.Sprint("a", i)); err != nil {
					b.Fatal(err)
				}
				got += p.quietPump()
			}
			if got != b.N {
				b.Fatalf("%d of %d children", got, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "negotiations/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/negotiation")
		})
	}
}

// BenchmarkRateFlat checks that the rate does not fall as SAs accumulate:
// it reports the rate of the last 1000 negotiations after 10000.
func BenchmarkRateFlat(b *testing.B) {
	for i := 0; i < b.N; i++ {
		p := benchPair(b, 11000, alg.GroupNone)
		var first, last time.Duration
		for k := 0; k < 11000; k++ {
			if k == 0 || k == 10000 {
				start := time.Now()
				defer func() {}()
				_ = start
			}
			s := time.Now()
			p.a.e.InitiateNew(p.now, fmt.Sprint("a", k))
			p.quietPump()
			d := time.Since(s)
			if k < 1000 {
				first += d
			} else if k >= 10000 {
				last += d
			}
		}
		b.ReportMetric(1000/first.Seconds(), "first1000/s")
		b.ReportMetric(1000/last.Seconds(), "last1000/s")
	}
}

func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemoryPerSA reports the responder's retained heap per ISAKMP SA
// alone and per ISAKMP SA + IPsec SA pair (the initiator is dropped before
// measuring).
func BenchmarkMemoryPerSA(b *testing.B) {
	const n = 5000
	for i := 0; i < b.N; i++ {
		base := heapNow()
		p := benchPair(b, n, alg.GroupNone)
		for k := 0; k < n; k++ {
			p.a.e.InitiateNew(p.now, fmt.Sprint("a", k))
			p.quietPump()
		}
		respB := p.b
		p.a, p.b = nil, nil
		withChild := heapNow() - base
		if len(respB.e.children) != n || len(respB.e.sas) != n {
			b.Fatalf("%d children %d sas", len(respB.e.children), len(respB.e.sas))
		}
		respB.e.Clear(t0, netip.Addr{}, false)
		runtime.KeepAlive(respB)

		base = heapNow()
		p = benchPair(b, 1, alg.GroupNone)
		p.a.e.SetChildPolicies(nil)
		for k := 0; k < n; k++ {
			// An INVALID-SPI notify sets up an ISAKMP SA without a child.
			s, _ := p.a.e.startMain(p.now, addrA, addrB)
			_ = s
			p.quietPump()
		}
		respB = p.b
		p.a, p.b = nil, nil
		ikeOnly := heapNow() - base
		if len(respB.e.sas) != n {
			b.Fatalf("%d ike sas", len(respB.e.sas))
		}
		runtime.KeepAlive(respB)
		b.ReportMetric(float64(withChild)/n/1024, "KiB/IKE+child")
		b.ReportMetric(float64(ikeOnly)/n/1024, "KiB/IKE")
	}
}

var _ = rand.New

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package xfrm

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// BenchmarkGuestTunnels installs N tunnels in a real kernel through the
// dataplane, as the agent does for N negotiated crypto-map entries: per
// tunnel an inbound and an outbound ESP SA (AES-GCM-128) and the out, in
// and fwd policies, then removes them one by one. It reports the wall time
// of both, the process's Go heap and resident memory for them (the agent's
// side: the dataplane's maps and the known-SPI set) and the kernel's slab
// growth (the states, policies and nftables set elements), and what one
// refresh of every SA's counters costs, a request per SA against one dump
// (ipsec.CounterDumper, what the agent uses). Peers and
// selectors are in 198.18.0.0/15 (RFC 2544), configuration only. Runs in
// the lab/qemu guest (bench/xfrm_guest.sh):
//
//	SPIAGENT_XFRM_GUEST=1 [TUNNELS=1000,10000] xfrm.test -test.run '^$' -test.bench GuestTunnels -test.benchtime 1x
func BenchmarkGuestTunnels(b *testing.B) {
	requireGuest(b)
	ns := []int{1000, 10000}
	if v := os.Getenv("TUNNELS"); v != "" { // e.g. TUNNELS=1000
		ns = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 || n > 60000 {
				b.Fatalf("TUNNELS=%q", v)
			}
			ns = append(ns, n)
		}
	}
	for _, n := range ns {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchTunnels(b, n)
			}
		})
	}
}

func benchTunnels(b *testing.B, n int) {
	b.StopTimer()
	ns := newTestNS(b)
	d := ns.dataplane(WithLogger(discardLogger()))
	local := netip.MustParseAddr("192.0.2.1")
	lan := netip.MustParsePrefix("198.51.100.0/24")
	key := randKey(b, 20)
	type tunnel struct {
		sas  [2]ipsec.SA
		pols [3]ipsec.Policy
	}
	ts := make([]tunnel, n)
	for i := range ts {
		peer := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		host := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32)
		reqid := uint32(i + 1)
		sa := ipsec.SA{Proto: alg.ESP, Mode: alg.Tunnel, Cipher: alg.AESGCM128, CipherKey: key, ReqID: reqid,
			Lifetime: ipsec.Lifetime{HardTime: time.Hour, SoftBytes: 9 << 30, HardBytes: 10 << 30}}
		in, out := sa, sa
		in.Src, in.Dst, in.Dir, in.SPI, in.ReplayWindow = peer, local, ipsec.DirIn, 0x10000000+uint32(i), 128
		out.Src, out.Dst, out.Dir, out.SPI = local, peer, ipsec.DirOut, 0x20000000+uint32(i)
		sel := ipsec.Selector{Src: lan, Dst: host}
		tOut := []ipsec.Template{{Proto: alg.ESP, Mode: alg.Tunnel, Src: local, Dst: peer, ReqID: reqid}}
		tIn := []ipsec.Template{{Proto: alg.ESP, Mode: alg.Tunnel, Src: peer, Dst: local, ReqID: reqid}}
		ts[i] = tunnel{sas: [2]ipsec.SA{in, out}, pols: [3]ipsec.Policy{
			{ID: reqid, Dir: ipsec.DirOut, Priority: 1000, Selector: sel, Templates: tOut},
			{ID: reqid, Dir: ipsec.DirIn, Priority: 1000, Selector: sel.Mirror(), Templates: tIn},
			{ID: reqid, Dir: ipsec.DirFwd, Priority: 1000, Selector: sel.Mirror(), Templates: tIn},
		}}
	}
	m0 := readMem(b)
	b.StartTimer()
	start := time.Now()
	for i := range ts {
		for _, sa := range ts[i].sas {
			must(b, d.AddSA(bg, sa))
		}
		for _, p := range ts[i].pols {
			must(b, d.AddPolicy(bg, p))
		}
	}
	install := time.Since(start)
	b.StopTimer()
	m1 := readMem(b)
	// What the agent's state refresh costs: a request per SA, or one dump.
	start = time.Now()
	for i := range ts {
		for _, sa := range ts[i].sas {
			if _, err := d.Counters(bg, sa.Key()); err != nil {
				b.Fatal(err)
			}
		}
	}
	perSA := time.Since(start)
	start = time.Now()
	all, err := d.AllCounters(bg)
	must(b, err)
	dump := time.Since(start)
	if len(all) != 2*n {
		b.Fatalf("AllCounters: %d SAs, want %d", len(all), 2*n)
	}
	b.StartTimer()
	start = time.Now()
	for i := range ts {
		for _, p := range ts[i].pols {
			must(b, d.DeletePolicy(bg, p.Key()))
		}
		for _, sa := range ts[i].sas {
			must(b, d.DeleteSA(bg, sa.Key()))
		}
	}
	remove := time.Since(start)
	b.StopTimer()
	m2 := readMem(b)
	b.ReportMetric(perSA.Seconds(), "counters-per-SA-s")
	b.ReportMetric(dump.Seconds(), "counters-dump-s")
	b.ReportMetric(install.Seconds(), "install-s")
	b.ReportMetric(remove.Seconds(), "remove-s")
	b.ReportMetric(float64(m1.heap-m0.heap)/float64(n), "heap-B/tunnel")
	b.ReportMetric(float64(m1.rss-m0.rss)/float64(n), "rss-B/tunnel")
	b.ReportMetric(float64(m1.slab-m0.slab)/float64(n), "kslab-B/tunnel")
	b.Logf("%d tunnels (2 SAs, 3 policies each): install %v (%.0f/s), remove %v; all counters %v a request per SA, %v in one dump; Go heap %+d KB, RSS %d -> %d KB, kernel slab %+d KB; after removal heap %+d KB, slab %+d KB",
		n, install.Round(time.Millisecond), float64(n)/install.Seconds(), remove.Round(time.Millisecond), perSA.Round(time.Millisecond), dump.Round(time.Millisecond),
		(m1.heap-m0.heap)/1024, m0.rss/1024, m1.rss/1024, (m1.slab-m0.slab)/1024, (m2.heap-m0.heap)/1024, (m2.slab-m0.slab)/1024)
}

type memSample struct{ heap, rss, slab int64 }

// readMem samples the Go heap in use (after a GC), the process's resident
// set and the kernel's slab (which holds XFRM states and policies).
func readMem(b *testing.B) memSample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: int64(ms.HeapInuse), rss: procKB(b, "/proc/self/status", "VmRSS:") * 1024, slab: procKB(b, "/proc/meminfo", "Slab:") * 1024}
}

func procKB(b *testing.B, file, field string) int64 {
	data, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, field) {
			var v int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(l, field)), &v); err == nil {
				return v
			}
		}
	}
	b.Fatalf("no %s in %s", field, file)
	return 0
}

package userspace

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
)

// tcpPair opens a TCP connection from A's LAN address to B's, through the
// tunnel, and a goroutine on B that discards what it reads.
func tcpPair(tb testing.TB, a, b *nsSide) (net.Conn, chan int64) {
	tb.Helper()
	var ln net.Listener
	var c net.Conn
	var err error
	inNS(tb, b.ns, func() { ln, err = net.Listen("tcp4", netip.AddrPortFrom(b.lan, 5001).String()) })
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	got := make(chan int64, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		n, _ := io.Copy(io.Discard, s)
		s.Close()
		got <- n
	}()
	inNS(tb, a.ns, func() {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.lan, 0)), Timeout: 5 * time.Second}
		c, err = d.Dial("tcp4", netip.AddrPortFrom(b.lan, 5001).String())
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c, got
}

var netnsSuites = []struct {
	name   string
	udp    bool
	layers []layer
	tso    bool
}{
	{"aes-gcm-128", false, []layer{{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20}}, false},
	{"aes-cbc-128-hmac-sha1", false, []layer{{proto: alg.ESP, cipher: alg.AES128, ckey: 16, integ: alg.HMACSHA1}}, false},
	{"aes-gcm-128-udp", true, []layer{{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20, encap: true}}, false},
	{"aes-cbc-128-hmac-sha1-udp", true, []layer{{proto: alg.ESP, cipher: alg.AES128, ckey: 16, integ: alg.HMACSHA1, encap: true}}, false},
	{"aes-gcm-128-tso", false, []layer{{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20}}, true},
	{"aes-gcm-128-udp-tso", true, []layer{{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20, encap: true}}, true},
	{"aes-cbc-128-hmac-sha1-udp-tso", true, []layer{{proto: alg.ESP, cipher: alg.AES128, ckey: 16, integ: alg.HMACSHA1, encap: true}}, true},
}

// BenchmarkNetnsTCP is one TCP stream between two namespaces through two
// userspace dataplanes (real TUNs, raw sockets or UDP 4500, veth), both in
// this process. 1 MiB per iteration.
func BenchmarkNetnsTCP(b *testing.B) {
	requireRoot(b)
	for _, s := range netnsSuites {
		b.Run(s.name, func(b *testing.B) {
			a, bb, _ := buildTopology(b, s.udp, false, s.tso)
			installNS(b, a, bb, s.layers, false)
			c, got := tcpPair(b, a, bb)
			chunk := make([]byte, 1<<20)
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
			if n := <-got; n != int64(b.N)*int64(len(chunk)) {
				b.Fatalf("received %d bytes, sent %d", n, int64(b.N)*int64(len(chunk)))
			}
		})
	}
}

// TestNetnsUDPOverload blasts UDP through the tunnel faster than it can
// carry for a few seconds and checks that memory stays bounded: the
// dataplane has no queue of its own that could grow (the kernel's socket
// and TUN queues are bounded and drop).
func TestNetnsUDPOverload(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("overload test skipped in -short mode")
	}
	a, b := topology(t, false)
	installNS(t, a, b, netnsSuites[1].layers, false)
	var srv, cli *net.UDPConn
	var err error
	inNS(t, b.ns, func() { srv, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.lan, 9998))) })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	inNS(t, a.ns, func() {
		cli, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.lan, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.lan, 9998)))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	recvd := make(chan int)
	go func() {
		buf := make([]byte, 2000)
		n := 0
		for {
			srv.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := srv.Read(buf); err != nil {
				recvd <- n
				return
			}
			n++
		}
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	msg := make([]byte, 1300)
	sent := 0
	end := time.Now().Add(3 * time.Second)
	var peak uint64
	for time.Now().Before(end) {
		for range 1000 {
			if _, err := cli.Write(msg); err == nil {
				sent++
			}
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, m.HeapInuse)
	}
	got := <-recvd
	runtime.ReadMemStats(&after)
	t.Logf("UDP overload: sent %d, received %d (%.1f%% lost), heap in use %d -> peak %d KiB",
		sent, got, 100*float64(sent-got)/float64(max(sent, 1)), before.HeapInuse>>10, peak>>10)
	if got == 0 {
		t.Fatal("nothing got through under overload")
	}
	if peak > before.HeapInuse+64<<20 {
		t.Fatalf("heap grew from %d to %d bytes under overload", before.HeapInuse, peak)
	}
}

// TestNetnsIperf measures iperf3 H1 -> H2 through two userspace
// dataplanes on the 4-namespace topology of the strongSwan lab, with the
// same method as ../shared/interop/strongswan/perf/bench_tput.sh (TCP one
// stream, UDP -b 0 -l 1350; receiver rate from the server's JSON). It is a
// measurement: it runs only with SPIAGENT_IPERF=1 (see
// bench/userspace_tput.sh), and fails only if nothing gets through.
func TestNetnsIperf(t *testing.T) {
	requireRoot(t)
	if os.Getenv("SPIAGENT_IPERF") != "1" {
		t.Skip("measurement; set SPIAGENT_IPERF=1 (bench/userspace_tput.sh does)")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed")
	}
	dur := "10"
	if d := os.Getenv("DUR"); d != "" {
		dur = d
	}
	for _, s := range netnsSuites {
		t.Run(s.name, func(t *testing.T) {
			if f := os.Getenv("SUITES"); f != "" && !strings.Contains(","+f+",", ","+s.name+",") {
				t.Skip("not in SUITES")
			}
			a, b, hosts := buildTopology(t, s.udp, true, s.tso)
			installNS(t, a, b, s.layers, false)
			if out, err := exec.Command("ip", "netns", "exec", hosts[0], "ping", "-c", "3", "-i", "0.2", "-W", "2", "203.0.113.10").CombinedOutput(); err != nil {
				t.Fatalf("H1 -> H2 ping: %v\n%s", err, out)
			}
			for _, proto := range []string{"tcp", "udp"} {
				rss0 := procStatus("VmRSS")
				res := iperf(t, hosts, proto, dur)
				t.Logf("TPUT impl=userspace suite=%s proto=%s %s rss_kib=%d->%d hwm_kib=%d stats_a=%+v",
					s.name, proto, res, rss0, procStatus("VmRSS"), procStatus("VmHWM"), a.dp.Stats())
				time.Sleep(500 * time.Millisecond)
			}
		})
	}
}

func iperf(t *testing.T, hosts [2]string, proto, dur string) string {
	t.Helper()
	srv := exec.Command("ip", "netns", "exec", hosts[1], "iperf3", "-s", "-1", "-J", "-B", "203.0.113.10")
	var srvOut strings.Builder
	srv.Stdout = &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	time.Sleep(300 * time.Millisecond)
	args := []string{"netns", "exec", hosts[0], "iperf3", "-c", "203.0.113.10", "-t", dur, "-J"}
	if proto == "udp" {
		args = append(args, "-u", "-b", "0", "-l", "1350")
	}
	cli, err := exec.Command("ip", args...).Output()
	if err != nil {
		t.Fatalf("iperf3 client: %v\n%s", err, cli)
	}
	srv.Wait()
	var c, sv struct {
		End struct {
			SumSent struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				Retransmits   int     `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived *struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			Sum struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				LostPercent   float64 `json:"lost_percent"`
			} `json:"sum"`
		} `json:"end"`
	}
	if err := json.Unmarshal(cli, &c); err != nil {
		t.Fatalf("client JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(srvOut.String()), &sv); err != nil {
		t.Fatalf("server JSON: %v", err)
	}
	recv := sv.End.Sum.BitsPerSecond
	if sv.End.SumReceived != nil {
		recv = sv.End.SumReceived.BitsPerSecond
	}
	if recv == 0 {
		t.Fatalf("%s: nothing received", proto)
	}
	extra := fmt.Sprintf("retrans=%d", c.End.SumSent.Retransmits)
	if proto == "udp" {
		extra = fmt.Sprintf("lost_pct=%.1f", c.End.Sum.LostPercent)
	}
	return fmt.Sprintf("recv_mbps=%.1f sent_mbps=%.1f %s", recv/1e6, c.End.SumSent.BitsPerSecond/1e6, extra)
}

// procStatus reads a kB field of /proc/self/status.
func procStatus(field string) int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// floodPy sends ESP with random SPIs to 192.0.2.2 at RATE packets/s for
// SECS seconds from a raw socket (run in A's namespace, in its own process,
// so that the kernel's delivery work is not charged to the dataplane).
const floodPy = `
import os, socket, struct, sys, time
rate, secs = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
pad = bytes(60)
n, t0 = 0, time.monotonic()
while True:
    el = time.monotonic() - t0
    if el >= secs: break
    due = int(el * rate)
    while n < due:
        s.sendto(struct.pack("!I", (n * 2654435761 + 256) & 0xffffffff) + pad, ("192.0.2.2", 0))
        n += 1
    time.sleep(0.001)
print(n)
`

// TestNetnsInvalidSPIFlood floods B's raw ESP socket with random SPIs from
// a separate process in A's namespace at about 100k packets/s for 3 s and
// reports the test process's CPU time per packet (B's dataplane handling
// the flood; A's is idle) and what became events. Measurement:
// SPIAGENT_IPERF=1 and python3.
func TestNetnsInvalidSPIFlood(t *testing.T) {
	requireRoot(t)
	if os.Getenv("SPIAGENT_IPERF") != "1" {
		t.Skip("measurement; set SPIAGENT_IPERF=1")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	a, b := topology(t, false)
	go func() {
		for range b.dp.Events() {
		}
	}()
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	start := time.Now()
	out, err := exec.Command("ip", "netns", "exec", a.name, "python3", "-c", floodPy, "100000", "3").CombinedOutput()
	if err != nil {
		t.Fatalf("flood sender: %v\n%s", err, out)
	}
	sent, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	waitFor(t, "flood drained", func() bool { return b.dp.Stats().InvalidSPI.Seen >= uint64(sent)*9/10 })
	time.Sleep(200 * time.Millisecond)
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	el := time.Since(start).Seconds()
	st := b.dp.Stats().InvalidSPI
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	t.Logf("INVSPI sent=%d (%.0f pkt/s) seen=%d reported=%d dup=%d ratelimited=%d global=%d events_dropped=%d receiver_cpu=%v (%.0f ns/packet, %.1f%% of one core) rss_kib=%d",
		sent, float64(sent)/3, st.Seen, st.Reported, st.Duplicates, st.RateLimited, st.GlobalLimited,
		b.dp.Stats().EventsDropped, cpu, float64(cpu.Nanoseconds())/float64(max(st.Seen, 1)), 100*cpu.Seconds()/el, procStatus("VmRSS"))
	if st.Reported > 100+500 { // global burst + 100/s
		t.Fatalf("%d events from a flood: the global limit did not hold", st.Reported)
	}
}

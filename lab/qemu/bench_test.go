package qemu

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// benchLine picks the guest benchmarks' results out of the serial log.
var benchLine = regexp.MustCompile(`^\s*(Benchmark\S+\s.*|\|.*\||.*(IPERF-RATIO|scale N=|tunnels \(2 SAs).*)$`)

// TestBenchInQEMU runs the XFRM benchmarks in the guest (opt-in:
// SPIAGENT_QEMU_BENCH=1; bench/xfrm_guest.sh): N tunnels installed through
// the XFRM dataplane (time, memory), iperf3 through two spiagents on XFRM
// and on the userspace dataplane in the same guest, and lab/scale's hub
// measurement with the agents on XFRM (SCALE_N tunnels, "none" skips it;
// TUNNELS sets the dataplane benchmark's sizes). It prints the
// results and writes them to $SPIAGENT_QEMU_BENCH_OUT when set. The guest
// gets 2 GiB (10,000 tunnels in the kernel and the agent side by side).
func TestBenchInQEMU(t *testing.T) {
	if os.Getenv("SPIAGENT_QEMU_BENCH") != "1" {
		t.Skip("opt-in: SPIAGENT_QEMU_BENCH=1 (bench/xfrm_guest.sh)")
	}
	needGuestTools(t)
	env := []string{"IPERF_DUR=" + envOr("IPERF_DUR", "10"), "IPERF_REPS=" + envOr("IPERF_REPS", "2")}
	progs := []Program{
		{Name: "xfrm", Test: true, Run: "^$", Timeout: 30 * time.Minute, Env: []string{"TUNNELS=" + envOr("TUNNELS", "1000,10000")},
			Args: []string{"-test.bench=" + envOr("SPIAGENT_QEMU_BENCH_XFRM", "GuestTunnels"), "-test.benchtime=1x"}},
		{Name: "seedlab", Test: true, Run: "^$", Timeout: 30 * time.Minute, Env: env,
			Args: []string{"-test.bench=" + envOr("SPIAGENT_QEMU_BENCH_SEEDLAB", "GuestIperf"), "-test.benchtime=1x"}},
	}
	if n := envOr("SCALE_N", "100,1000"); n != "none" {
		progs = append(progs, Program{Name: "scalebench", Args: []string{"-n", n, "-dataplane", "xfrm", "-remove", "-v",
			"-timeout", "60m", "-repo", GuestShareDir, "-bin", GuestBinDir}})
	}
	logPath := runGuest(t, progs, Image{Iperf: true}, Boot{Timeout: 150 * time.Minute, MemoryMiB: 2048})
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r ")
		if benchLine.MatchString(l) || strings.Contains(l, Marker) || strings.Contains(l, "SPIAGENT-QEMU:") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	text := strings.Join(out, "\n") + "\n"
	os.Stdout.WriteString(text)
	if p := os.Getenv("SPIAGENT_QEMU_BENCH_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(text, Marker+" PASS") {
		t.Fatalf("the guest benchmarks failed; serial log %s", logPath)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

package seedlab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/spiagent/spiagent/lab/netlab"
)

// BenchmarkGuestIperf measures iperf3 (TCP, one stream) from host1 to host2
// through the seed lab's tunnel, with both agents on the kernel's XFRM and
// then both on the userspace dataplane, in the same guest and the same run,
// alternating, for each transform set. TCG emulates the CPU, so the
// absolute figures mean little: compare the two dataplanes (the ratio is
// printed). Runs in the lab/qemu guest with iperf3 packed in
// (bench/xfrm_guest.sh); IPERF_DUR sets the seconds per test (10) and
// IPERF_REPS the repetitions (2).
func BenchmarkGuestIperf(b *testing.B) {
	if os.Getenv(guestEnv) != "1" {
		b.Skipf("runs in the lab/qemu guest (%s=1): bench/xfrm_guest.sh", guestEnv)
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("no iperf3 in the guest image (lab/qemu Image.Iperf)")
	}
	dur, reps := envInt("IPERF_DUR", 10), envInt("IPERF_REPS", 2)
	for _, suite := range []struct {
		name string
		edit func(map[string]any)
	}{
		{"esp-gcm-128", gcmEdit},
		{"esp-aes-128-sha1", espAESEdit},
	} {
		got := map[string][]float64{}
		for r := 0; r < reps; r++ {
			for _, dp := range []string{"xfrm", "userspace"} {
				b.Run(fmt.Sprintf("%s/%s", suite.name, dp), func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						mbps := iperfOnce(b, dp, suite.edit, dur)
						got[dp] = append(got[dp], mbps)
						b.ReportMetric(mbps, "Mbit/s")
					}
				})
			}
		}
		x, u := mean(got["xfrm"]), mean(got["userspace"])
		if u > 0 {
			b.Logf("IPERF-RATIO suite=%s xfrm=%.1f userspace=%.1f Mbit/s xfrm/userspace=%.2f (%d reps of %d s)", suite.name, x, u, x/u, reps, dur)
		}
	}
}

func iperfOnce(b *testing.B, dp string, edit func(map[string]any), dur int) float64 {
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(dur+120)*time.Second)
	defer cancel()
	l := New("xp", repoRoot(), bins.spiagent, bins.spictl, b.TempDir())
	l.UseDataplane(dp)
	if err := l.Up(ctx); err != nil {
		b.Fatal(err)
	}
	defer l.Down()
	for _, r := range []*Router{l.A, l.B} {
		if err := r.PushConfig(ctx, edit); err != nil {
			b.Fatal(err)
		}
	}
	// Bring the tunnel up (the first packet's acquire) before measuring.
	flow, err := l.StartFlow()
	if err != nil {
		b.Fatal(err)
	}
	fctx, stop := context.WithCancel(ctx)
	go func() { _ = flow.Run(fctx, netlab.Host2Addr, 20, 20*60) }()
	err = WaitRecovered(ctx, flow, time.Now().Add(-time.Second), 3, 60*time.Second)
	stop()
	flow.Close()
	if err != nil {
		b.Fatalf("%s: tunnel never came up: %v", dp, err)
	}
	srv := exec.Command("ip", "netns", "exec", l.Topo.Host2, "iperf3", "-s", "-1", "-B", netlab.Host2Addr)
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-srv.Process.Pid, syscall.SIGKILL); _ = srv.Wait() }()
	time.Sleep(time.Second)
	b.StartTimer()
	out, err := netlab.Exec(ctx, l.Topo.Host1, "iperf3", "-c", netlab.Host2Addr, "-t", strconv.Itoa(dur), "-J")
	b.StopTimer()
	if err != nil {
		b.Fatalf("%s: iperf3: %v", dp, err)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		b.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	if l.A.DataplaneInUse() != dp {
		b.Fatalf("routerA runs %q, want %s", l.A.DataplaneInUse(), dp)
	}
	return res.End.SumReceived.BitsPerSecond / 1e6
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

package seedlab

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkRecovery measures Invalid SPI Recovery in the lab: b.N black
// holes (routerB's SAs cleared without notifying routerA) in one lab, each
// from the break to the first packet delivered again, with the flow at 20
// packets/s. Run with -benchtime=20x. The "off" case stops at the first
// trial: without recovery the black hole stays open (10 s watch). The rate
// limits are raised for the measurement (1000/min, burst 100): with the
// defaults, a fourth black hole from the same peer within 10 s is, by
// design, left alone until a token comes back.
//
//	go test -run '^$' -bench Recovery -benchtime 20x ./lab/seedlab
func BenchmarkRecovery(b *testing.B) {
	for _, on := range []bool{true, false} {
		name := "on"
		if !on {
			name = "off"
		}
		b.Run(name, func(b *testing.B) {
			l := newBenchLab(b, "bnr"+name[:2])
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.ResetTimer()
			trials, err := l.Trials(ctx, Scenario{Recovery: on, Watch: 10 * time.Second, Edit: LimitsEdit(1000, 100, 10000)}, b.N)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			reportTrials(b, trials)
		})
	}
}

func reportTrials(b *testing.B, trials []Trial) {
	var lags []float64
	var lost []float64
	recovered := 0
	for _, t := range trials {
		lags = append(lags, float64(t.Lag.Milliseconds()))
		lost = append(lost, float64(t.Lost))
		if t.Recovered {
			recovered++
		}
	}
	slices.Sort(lags)
	slices.Sort(lost)
	q := func(s []float64, p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	b.ReportMetric(q(lags, 0), "min-ms")
	b.ReportMetric(q(lags, 0.5), "median-ms")
	b.ReportMetric(q(lags, 0.95), "p95-ms")
	b.ReportMetric(q(lost, 0.5), "median-lost")
	b.ReportMetric(q(lost, 0.95), "p95-lost")
	b.ReportMetric(float64(recovered)/float64(len(trials)), "recovered-ratio")
	b.Logf("%d trials: lag ms %v, lost %v", len(trials), lags, lost)
}

func newBenchLab(b *testing.B, prefix string) *Lab {
	b.Helper()
	if bins.spiagent == "" {
		b.Skip("needs root (network namespaces); run as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := New(prefix, repoRoot(), bins.spiagent, bins.spictl, b.TempDir())
	if err := l.Up(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		l.Down()
		// SEEDLAB_KEEP=DIR keeps the agents' logs for a look afterwards.
		if d := os.Getenv("SEEDLAB_KEEP"); d != "" {
			_ = os.WriteFile(filepath.Join(d, prefix+"-A.log"), []byte(l.A.Log()), 0o600)
			_ = os.WriteFile(filepath.Join(d, prefix+"-B.log"), []byte(l.B.Log()), 0o600)
		}
	})
	return l
}

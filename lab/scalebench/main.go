// Command scalebench runs lab/scale's hub measurement for one or more N
// and prints a Markdown table (bench/RESULTS.md keeps the figures). It
// needs root: `sudo go run ./lab/scalebench -n 100,1000,10000` after
// `make build`. -dataplane xfrm runs the agents on the kernel's XFRM (the
// lab/qemu guest: bench/xfrm_guest.sh); -remove also times taking every
// tunnel down.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spiagent/spiagent/lab/scale"
)

func main() {
	os.Exit(run())
}

func run() int {
	ns := flag.String("n", "100,1000", "comma-separated numbers of tunnels")
	repo := flag.String("repo", ".", "repository root")
	bin := flag.String("bin", "bin", "directory with spiagent (make build)")
	timeout := flag.Duration("timeout", 10*time.Minute, "how long every tunnel may take to come up")
	window := flag.Duration("window", 10*time.Second, "idle and SAMPLE measurement window")
	verbose := flag.Bool("v", false, "narrate progress")
	dataplane := flag.String("dataplane", "userspace", "the agents' dataplane: userspace or xfrm (a kernel with ESP)")
	remove := flag.Bool("remove", false, "also time taking every tunnel down (the crypto map removed from both routers)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "scalebench: needs root (network namespaces, TUN devices, raw sockets)")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var results []*scale.Result
	for _, s := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintf(os.Stderr, "scalebench: -n: %v\n", err)
			return 2
		}
		dir, err := os.MkdirTemp("", "spiagent-scale-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "scalebench:", err)
			return 1
		}
		o := scale.Options{N: n, Repo: *repo, Spiagent: filepath.Join(*bin, "spiagent"), Dir: dir, BurstTimeout: *timeout, Window: *window,
			Dataplane: *dataplane, Remove: *remove}
		if *verbose {
			o.Log = os.Stderr
		}
		res, err := scale.Run(ctx, o)
		os.RemoveAll(dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "scalebench N=%d: %v\n", n, err)
		}
		if res != nil {
			results = append(results, res)
		}
	}
	print(results)
	return 0
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func pct(d []time.Duration, p float64) string {
	if len(d) == 0 {
		return "-"
	}
	return ms(d[int(p*float64(len(d)-1))])
}

func print(rs []*scale.Result) {
	fmt.Println("| N | dataplane | configure (A) | bring-up | up A/B | delivered | CPU/tunnel A | CPU/tunnel B | idle A | SAMPLE A | SAMPLE B/s | add entry | RSS/tunnel | Get SAs | Get p50/max in burst | Set p50/max in burst | failures | remove |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		rm := "-"
		if r.Remove > 0 {
			rm = r.Remove.Round(10 * time.Millisecond).String()
		}
		fmt.Printf("| %d | %s | %s | %s | %d/%d | %d | %s | %s | %.1f%% | %.1f%% | %.0f | %s | %.1f KiB | %s | %s / %s | %s / %s | %d | %s |\n",
			r.N, r.Dataplane, ms(r.Configure), r.BringUp.Round(10*time.Millisecond), r.UpA, r.UpB, r.Delivered,
			ms(r.CPUPerTunA), ms(r.CPUPerTunB), 100*r.IdleA, 100*r.SampleA, r.SampleRate, ms(r.AddEntry),
			float64(r.RSSPerTunnel())/1024, ms(r.GetSAs), pct(r.BurstGets, 0.5), pct(r.BurstGets, 1), pct(r.BurstSets, 0.5), pct(r.BurstSets, 1), len(r.BurstFailures), rm)
	}
}

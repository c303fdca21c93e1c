// Command demo is the README's main job: the seed document's Invalid SPI
// Recovery scenario, narrated, with two real spiagent processes in a
// network-namespace lab (host1 - routerA - routerB - host2, TEST-NET
// addresses only), configured over gNMI. It runs the scenario with recovery
// on, then with recovery off, and prints how long the black hole lasted and
// how many packets it swallowed. It always tears the lab down, even on
// Ctrl-C. Run it as root: `make demo`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spiagent/spiagent/lab/seedlab"
)

func main() {
	os.Exit(run())
}

func run() int {
	repo := flag.String("repo", ".", "repository root (for examples/lab)")
	bin := flag.String("bin", "bin", "directory with spiagent and spictl (make build)")
	keep := flag.Bool("keep-logs", false, "keep the agents' data and logs directory")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (network namespaces, TUN devices, raw sockets): sudo make demo")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "spiagent-demo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	say := seedlab.Narrator{W: os.Stdout}
	l := seedlab.New("sd", *repo, filepath.Join(*bin, "spiagent"), filepath.Join(*bin, "spictl"), dir)
	say.Say("Building the lab: host1 198.51.100.10 - routerA - 192.0.2.0/24 - routerB - host2 203.0.113.10")
	if err := l.Up(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	defer func() {
		l.Down()
		say.Say("Lab torn down.")
		if *keep {
			say.Say("Agents' data and logs kept in %s", dir)
		}
	}()

	type outcome struct {
		name string
		res  *seedlab.Result
	}
	var results []outcome
	for _, sc := range []struct {
		name string
		sc   seedlab.Scenario
	}{
		{"with crypto isakmp invalid-spi-recovery", seedlab.Scenario{Recovery: true, Watch: 10 * time.Second, Show: true, Say: say}},
		{"without invalid-spi-recovery (the IOS default)", seedlab.Scenario{Recovery: false, Watch: 10 * time.Second, Say: say}},
	} {
		say.Say("\n=== The seed scenario %s ===", sc.name)
		res, err := l.Run(ctx, sc.sc)
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			return 1
		}
		results = append(results, outcome{sc.name, res})
	}
	say.Say("\n=== Summary ===")
	for _, o := range results {
		if o.res.Recovered {
			say.Say("%-48s black hole %7v, %3d packets lost, then traffic flows again", o.name, o.res.RecoveryLag.Round(time.Millisecond), o.res.Lost)
		} else {
			say.Say("%-48s black hole still open after %v, %3d packets lost", o.name, o.res.Outage.Round(time.Second), o.res.Lost)
		}
	}
	return 0
}

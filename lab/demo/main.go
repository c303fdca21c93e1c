// Command demo is the README's main job: the seed document's Invalid SPI
// Recovery scenario, narrated, with two real spiagent processes in a
// network-namespace lab (host1 - routerA - routerB - host2, TEST-NET
// addresses only), configured over gNMI. It runs the scenario with recovery
// on, then with recovery off, and prints how long the black hole lasted and
// how many packets it swallowed, and which dataplane carried them. It
// always tears the lab down, even on Ctrl-C. Run it as root: `make demo`.
//
// -dataplane auto (the default) lets the agents pick: the kernel's XFRM
// when it can do ESP, the userspace dataplane otherwise. -dataplane xfrm
// insists on the kernel: on a machine whose kernel has no ESP, the demo
// boots a Debian kernel under qemu (lab/qemu) and runs the same scenario
// inside it (`make demo DATAPLANE=xfrm`).
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

	"github.com/spiagent/spiagent/ipsec/xfrm"
	"github.com/spiagent/spiagent/lab/seedlab"
)

func main() {
	os.Exit(run())
}

func run() int {
	repo := flag.String("repo", ".", "repository root (for examples/lab)")
	bin := flag.String("bin", "bin", "directory with spiagent and spictl (make build)")
	keep := flag.Bool("keep-logs", false, "keep the agents' data and logs directory")
	dataplane := flag.String("dataplane", "auto", "the agents' dataplane: auto, userspace or xfrm (in a qemu guest when this kernel has no ESP)")
	guest := flag.String("guest", "", "set by the qemu guest: the kernel it runs (do not boot another)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (network namespaces, TUN devices, raw sockets): sudo make demo")
		return 1
	}
	switch *dataplane {
	case "auto", "userspace", "xfrm":
	default:
		fmt.Fprintf(os.Stderr, "demo: -dataplane %q: want auto, userspace or xfrm\n", *dataplane)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *dataplane == "xfrm" && *guest == "" {
		if ok, why := xfrm.Supported(); !ok {
			fmt.Printf("This kernel cannot do ESP (%s):\nrunning the demo on XFRM inside a Debian kernel under qemu (lab/qemu).\n", why)
			return runInGuest(ctx, *repo)
		}
	}

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
	l.UseDataplane(*dataplane)
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
	ran, why := describe(l, *dataplane, *guest)
	say.Say("Dataplane: %s (%s)", ran, why)

	type outcome struct {
		name string
		res  *seedlab.Result
	}
	var results []outcome
	for _, sc := range []struct {
		name string
		sc   seedlab.Scenario
	}{
		{"with crypto isakmp invalid-spi-recovery", seedlab.Scenario{Recovery: true, Watch: 10 * time.Second, Setup: 60 * time.Second, Show: true, Say: say}},
		{"without invalid-spi-recovery (the IOS default)", seedlab.Scenario{Recovery: false, Watch: 10 * time.Second, Setup: 60 * time.Second, Say: say}},
	} {
		say.Say("\n=== The seed scenario %s ===", sc.name)
		res, err := l.Run(ctx, sc.sc)
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			return 1
		}
		results = append(results, outcome{sc.name, res})
	}
	say.Say("\n=== Summary (dataplane: %s) ===", ran)
	for _, o := range results {
		if o.res.Recovered {
			say.Say("%-48s black hole %7v, %3d packets lost, then traffic flows again", o.name, o.res.RecoveryLag.Round(time.Millisecond), o.res.Lost)
		} else {
			say.Say("%-48s black hole still open after %v, %3d packets lost", o.name, o.res.Outage.Round(time.Second), o.res.Lost)
		}
	}
	return 0
}

// describe says which dataplane the agents run, from their own start-up
// lines, and what that means.
func describe(l *seedlab.Lab, asked, guest string) (name, why string) {
	a, b := l.A.DataplaneInUse(), l.B.DataplaneInUse()
	name = a
	if a != b {
		name = fmt.Sprintf("routerA %s, routerB %s", a, b)
	}
	switch {
	case guest != "":
		name += " in a qemu guest"
		why = "the Linux kernel's XFRM, Debian's " + guest
	case a == "xfrm":
		why = "the Linux kernel's XFRM"
	case a == "userspace" && asked == "auto":
		_, reason := xfrm.Supported()
		why = "ESP and AH in Go over a TUN device, picked by --dataplane auto: " + reason
	default:
		why = "ESP and AH in Go over a TUN device"
	}
	return name, why
}

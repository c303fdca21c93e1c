package seedlab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiagent/spiagent/lab/netlab"
)

// Scenario parameterises one run of the seed's verification steps.
type Scenario struct {
	Recovery bool                        // crypto isakmp invalid-spi-recovery on both routers
	Edit     func(map[string]any)        // further edits of both lab configs (nil: as shipped)
	Rate     int                         // flow packets per second (20)
	Watch    time.Duration               // how long to wait for traffic to resume (10 s)
	Setup    time.Duration               // how long the tunnel may take to come up (15 s)
	Break    func(context.Context) error // makes the black hole (nil: clear B's SAs without notifying A)
	BreakSay string                      // narrates Break
	Show     bool                        // print both routers' SA tables (the demo)
	Say      Narrator
}

// Result is what a run measured.
type Result struct {
	SetupTime   time.Duration // first packet sent to first packet delivered
	Recovered   bool
	Outage      time.Duration     // longest run of lost packets after the break
	Lost        int               // packets lost after the break
	RecoveryLag time.Duration     // break to first packet delivered after the black hole
	CountersB   map[string]uint64 // routerB's invalid-SPI counters at the end
	BeforeB     map[string]uint64 // and just before the break
	LogLineB    string            // B's %CRYPTO-4-RECVD_PKT_INV_SPI line, if any
}

func (s *Scenario) defaults() {
	if s.Rate == 0 {
		s.Rate = 20
	}
	if s.Watch == 0 {
		s.Watch = 10 * time.Second
	}
	if s.Setup == 0 {
		s.Setup = 15 * time.Second
	}
}

// RecoveryEdit returns an Edit that sets invalid-spi-recovery.
func RecoveryEdit(on bool) func(map[string]any) {
	return func(cfg map[string]any) {
		c := cfg["spiagent-crypto:crypto"].(map[string]any)
		isakmp := c["isakmp"].(map[string]any)
		isakmp["config"].(map[string]any)["invalid-spi-recovery"] = on
	}
}

// Run configures both routers, brings the tunnel up with traffic, breaks it
// the way the seed does (step 2: clear B's SAs; here without notifying A,
// which is what a reboot does), and measures whether and how fast traffic
// resumes.
func (l *Lab) Run(ctx context.Context, sc Scenario) (*Result, error) {
	sc.defaults()
	say := sc.Say
	edit := func(cfg map[string]any) {
		RecoveryEdit(sc.Recovery)(cfg)
		if sc.Edit != nil {
			sc.Edit(cfg)
		}
	}
	for _, r := range []*Router{l.A, l.B} {
		if err := r.PushConfig(ctx, edit); err != nil {
			return nil, err
		}
	}
	say.Say("Configured routerA and routerB over gNMI (examples/lab, invalid-spi-recovery %v).", sc.Recovery)

	flow, err := l.StartFlow()
	if err != nil {
		return nil, err
	}
	defer flow.Close()
	total := int((sc.Setup + sc.Watch + 20*time.Second).Seconds()) * sc.Rate
	fctx, stopFlow := context.WithCancel(ctx)
	defer stopFlow()
	go func() { _ = flow.Run(fctx, netlab.Host2Addr, sc.Rate, total) }()

	res := &Result{}
	start := time.Now()
	say.Say("Step 1: host1 sends %d UDP packets/s to host2; the first one makes routerA negotiate IKE and IPsec SAs with routerB.", sc.Rate)
	if err := WaitRecovered(ctx, flow, start.Add(-time.Second), 1, sc.Setup); err != nil {
		return nil, fmt.Errorf("the tunnel never came up: %w\nrouterA:\n%s\nrouterB:\n%s", err, tail(l.A.Log()), tail(l.B.Log()))
	}
	res.SetupTime = time.Since(start)
	say.Say("        first packet delivered after %v", res.SetupTime.Round(time.Millisecond))
	// Let the flow run a moment on the established SAs.
	if err := WaitRecovered(ctx, flow, start, 5, 5*time.Second); err != nil {
		return nil, fmt.Errorf("the tunnel does not carry traffic: %w", err)
	}
	if sc.Show {
		for _, r := range []*Router{l.A, l.B} {
			for _, what := range []string{"isakmp", "ipsec"} {
				out, err := l.Spictl(ctx, r, "show", "crypto", what, "sa")
				if err != nil {
					return nil, err
				}
				say.Say("%s# show crypto %s sa\n%s", r.Name, what, indent(out))
			}
		}
	}

	if sc.BreakSay == "" {
		sc.BreakSay = "routerB loses its SAs without telling routerA (clear crypto sa, no notification: what a reboot does)."
	}
	say.Say("Step 2: %s", sc.BreakSay)
	if res.BeforeB, err = l.B.Counters(ctx); err != nil {
		return nil, err
	}
	brk := time.Now()
	if sc.Break != nil {
		err = sc.Break(ctx)
	} else {
		err = l.B.ClearSAs(ctx, true)
	}
	if err != nil {
		return nil, err
	}
	say.Say("Step 3: host1 keeps sending; routerA still encrypts with its old SAs.")
	err = waitResumed(ctx, flow, brk, 3, sc.Watch)
	switch {
	case err == nil:
		res.Recovered = true
	case errors.Is(err, ErrNoRecovery):
	default:
		return nil, err
	}
	// Give in-flight packets a moment (a loaded machine delays them), then
	// measure.
	time.Sleep(time.Second)
	st := flow.Stats(300 * time.Millisecond)
	if st.OutageStart.After(brk.Add(-time.Second)) || !res.Recovered {
		res.Outage = st.Outage
	}
	res.Lost = lostAfter(flow, brk)
	if res.Recovered {
		res.RecoveryLag = firstAfter(flow, brk)
	}
	res.CountersB, err = l.B.Counters(ctx)
	if err != nil {
		return nil, err
	}
	res.LogLineB = grepLine(l.B.Log(), "%CRYPTO-4-RECVD_PKT_INV_SPI")
	say.Say("Step 4: routerB's log:\n    %s", res.LogLineB)
	if res.Recovered {
		say.Say("Traffic resumed %v after the SAs were lost; %d packets were lost in the black hole.", res.RecoveryLag.Round(time.Millisecond), res.Lost)
	} else {
		say.Say("Traffic did NOT resume within %v: %d packets lost so far, and routerA keeps sending into the black hole.", sc.Watch, res.Lost)
	}
	say.Say("routerB invalid-SPI counters: received=%d notified=%d recovery-disabled=%d",
		res.CountersB["received"], res.CountersB["notified"], res.CountersB["recovery-disabled"])
	return res, nil
}

// waitResumed waits, until brk+watch at the latest, for traffic to flow
// after the break at brk: n packets sent after brk delivered and, if some
// sent after brk were lost (the black hole), n sent after the first of
// those. The first packets after a break can get through when the break
// takes effect late (a gNMI Set on the slow qemu guest).
func waitResumed(ctx context.Context, f *netlab.Flow, brk time.Time, n int, watch time.Duration) error {
	deadline := brk.Add(watch)
	if err := WaitRecovered(ctx, f, brk, n, time.Until(deadline)); err != nil {
		return err
	}
	// A lost packet shows once it is overdue.
	time.Sleep(500 * time.Millisecond)
	lost, ok := f.FirstLostAfter(brk, 300*time.Millisecond)
	if !ok {
		return nil
	}
	return WaitRecovered(ctx, f, lost, n, time.Until(deadline))
}

func lostAfter(f *netlab.Flow, t time.Time) int {
	return f.LostBetween(t, time.Now().Add(-time.Second))
}

// firstAfter is how long after the break at t traffic flowed again: until
// the arrival of the first packet sent after the first one lost after t.
// Measuring from the break to the next delivered packet would miss the
// black hole when the break itself takes a while (the first packets after
// it still get through, as on the slow qemu guest).
func firstAfter(f *netlab.Flow, t time.Time) time.Duration {
	from := t
	if lost, ok := f.FirstLostAfter(t, 300*time.Millisecond); ok {
		from = lost
	}
	return f.FirstReceivedAfter(from).Sub(t)
}

// grepLine returns the last line of s containing sub.
func grepLine(s, sub string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			return strings.TrimSpace(lines[i])
		}
	}
	return ""
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// LimitsEdit returns an Edit that sets the recovery rate limits.
func LimitsEdit(perPeerPerMinute, burst, globalPerMinute int) func(map[string]any) {
	return func(cfg map[string]any) {
		isakmp := cfg["spiagent-crypto:crypto"].(map[string]any)["isakmp"].(map[string]any)
		isakmp["invalid-spi-recovery-limits"] = map[string]any{"config": map[string]any{
			"per-peer-rate": perPeerPerMinute, "per-peer-burst": burst, "global-rate": globalPerMinute,
		}}
	}
}

// Trial is one break-and-recover measurement.
type Trial struct {
	Recovered bool
	Lag       time.Duration // break to first packet delivered again
	Lost      int
}

// Trials configures both routers once, starts the flow, and then breaks the
// tunnel n times (as Run does), measuring each recovery. Between trials the
// tunnel carries traffic for a second.
func (l *Lab) Trials(ctx context.Context, sc Scenario, n int) ([]Trial, error) {
	sc.defaults()
	edit := func(cfg map[string]any) {
		RecoveryEdit(sc.Recovery)(cfg)
		if sc.Edit != nil {
			sc.Edit(cfg)
		}
	}
	for _, r := range []*Router{l.A, l.B} {
		if err := r.PushConfig(ctx, edit); err != nil {
			return nil, err
		}
	}
	flow, err := l.StartFlow()
	if err != nil {
		return nil, err
	}
	defer flow.Close()
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	total := int((time.Duration(n)*(sc.Watch+2*time.Second) + 30*time.Second).Seconds()) * sc.Rate
	go func() { _ = flow.Run(fctx, netlab.Host2Addr, sc.Rate, total) }()
	if err := WaitRecovered(ctx, flow, time.Now().Add(-time.Second), 3, 15*time.Second); err != nil {
		return nil, fmt.Errorf("the tunnel never came up: %w", err)
	}
	var out []Trial
	for i := 0; i < n; i++ {
		brk := time.Now()
		if sc.Break != nil {
			err = sc.Break(ctx)
		} else {
			err = l.B.ClearSAs(ctx, true)
		}
		if err != nil {
			return out, err
		}
		tr := Trial{}
		switch err := waitResumed(ctx, flow, brk, 1, sc.Watch); {
		case err == nil:
			tr.Recovered = true
			tr.Lag = firstAfter(flow, brk)
		case errors.Is(err, ErrNoRecovery):
			tr.Lag = sc.Watch
		default:
			return out, err
		}
		// Let the tunnel settle and in-flight packets land before counting.
		time.Sleep(time.Second)
		tr.Lost = f2lost(flow, brk)
		out = append(out, tr)
		if !tr.Recovered {
			// A black hole stays open: nothing more to measure here.
			break
		}
	}
	return out, nil
}

func f2lost(f *netlab.Flow, brk time.Time) int {
	return f.LostBetween(brk, time.Now().Add(-500*time.Millisecond))
}

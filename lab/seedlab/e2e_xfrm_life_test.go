package seedlab

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiagent/spiagent/lab/netlab"
)

// lifetimeKBEdit sets crypto map entry 10's SA lifetime in kilobytes.
func lifetimeKBEdit(kb int) func(map[string]any) {
	return func(cfg map[string]any) {
		c := cfg["spiagent-crypto:crypto"].(map[string]any)
		e := c["crypto-maps"].(map[string]any)["crypto-map"].([]any)[0].(map[string]any)["entries"].(map[string]any)["entry"].([]any)[0].(map[string]any)
		e["config"].(map[string]any)["sa-lifetime-kilobytes"] = kb
	}
}

// signalGroup sends sig to the router's agent (its process group).
func (r *Router) signalGroup(sig syscall.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil || r.cmd.Process == nil {
		return fmt.Errorf("%s: not running", r.Name)
	}
	return syscall.Kill(-r.cmd.Process.Pid, sig)
}

// TestGuestLifetimes: byte lifetimes from the kernel between two spiagents
// on XFRM (crypto map: 2560 KB, the smallest IOS allows). The kernel counts
// the bytes; its soft limit (90%) makes the agents rekey before the hard
// limit, with no packet lost, and the gNMI state shows the kernel's
// counters. Then routerB's agent is frozen (SIGSTOP: its kernel keeps
// forwarding, its IKE answers nothing), so the rekey cannot happen: the
// kernel deletes routerA's SA at the hard limit and routerA's agent drops
// the bundle; once routerB's agent runs again, traffic renegotiates.
func TestGuestLifetimes(t *testing.T) {
	l := xfrmLab(t, "xl")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	edit := func(cfg map[string]any) {
		RecoveryEdit(true)(cfg)
		espAESEdit(cfg)
		lifetimeKBEdit(2560)(cfg)
	}
	for _, r := range []*Router{l.A, l.B} {
		if err := r.PushConfig(ctx, edit); err != nil {
			t.Fatal(err)
		}
	}
	flow, err := l.StartFlow()
	if err != nil {
		t.Fatal(err)
	}
	defer flow.Close()
	// 1200-byte datagrams at 200/s: 240 KB/s, so the soft limit (2304 KB)
	// comes after about 10 s, about a second before the hard one.
	flow.Payload = 1200
	fctx, stopFlow := context.WithCancel(ctx)
	defer stopFlow()
	go func() { _ = flow.Run(fctx, netlab.Host2Addr, 200, 200*180) }()
	start := time.Now()
	if err := WaitRecovered(ctx, flow, start.Add(-time.Second), 5, 60*time.Second); err != nil {
		t.Fatalf("the tunnel never came up: %v", err)
	}
	first := time.Now()
	soft := "IPsec SA reached its soft lifetime; rekeying"
	if !netlab.WaitFor(ctx, 60*time.Second, 100*time.Millisecond, func() bool {
		return strings.Contains(l.A.Log(), soft) && count(l.A.Log(), "IPsec SAs installed") >= 2
	}) {
		t.Fatalf("routerA: no rekey on the kernel's soft byte limit within 60 s")
	}
	time.Sleep(5 * time.Second) // past where the hard limit would have cut the first SA
	lost := flow.LostBetween(first, time.Now().Add(-time.Second))
	t.Logf("SEEDLAB-FIGURES dataplane=xfrm case=lifetime-kilobytes-rekey lost=%d over %v", lost, time.Since(first).Round(time.Second))
	if lost != 0 {
		t.Errorf("%d packets lost across the byte-lifetime rekey", lost)
	}
	for _, r := range []*Router{l.A, l.B} {
		if strings.Contains(r.Log(), "reached its hard lifetime") {
			t.Errorf("%s: an SA reached its hard lifetime although the rekey came first", r.Name)
		}
	}
	checkLifetimeState(ctx, t, l.B, 2560)

	// routerB's agent freezes: the next soft limit's rekey gets no answer,
	// and the kernel ends routerA's SA at the hard limit.
	if err := l.B.signalGroup(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	hard := "IPsec SA reached its hard lifetime; deleting the bundle"
	ok := netlab.WaitFor(ctx, 60*time.Second, 100*time.Millisecond, func() bool { return strings.Contains(l.A.Log(), hard) })
	if err := l.B.signalGroup(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("routerA: no hard byte expiry from the kernel while routerB's agent was frozen")
	}
	line := grepLine(l.A.Log(), hard)
	_, sa, _ := strings.Cut(line, "sa=")
	sa, _, _ = strings.Cut(sa, " ")
	for k, s := range xfrmStates(t, l.A.NS) {
		if sa != "" && strings.HasSuffix(sa, fmt.Sprintf("0x%08x", uint32(s.Spi))) {
			t.Errorf("routerA's kernel still holds the hard-expired SA %s (%s)", k, sa)
		}
	}
	resumed := time.Now()
	if err := WaitRecovered(ctx, flow, resumed, 5, 90*time.Second); err != nil {
		t.Fatalf("no traffic after routerB's agent resumed: %v", err)
	}
	t.Logf("SEEDLAB-FIGURES dataplane=xfrm case=lifetime-kilobytes-hard hard_expiry_after=%v resumed_after=%v",
		time.Since(stopped).Round(time.Second), flow.FirstReceivedAfter(resumed).Sub(resumed).Round(time.Millisecond))
}

// checkLifetimeState stops nothing: it compares routerB's gNMI view of its
// inbound SAs with the kernel's byte counters and the crypto map's
// kilobytes (lifetime-remaining-kilobytes is the lifetime less what the
// kernel counted), reading gNMI twice around the kernel so that a refresh
// in between cannot make it fail.
func checkLifetimeState(ctx context.Context, t *testing.T, r *Router, lifeKB uint64) {
	t.Helper()
	before, err := r.IPsecSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := xfrmStates(t, r.NS)
	time.Sleep(2500 * time.Millisecond) // two state refreshes
	after, err := r.IPsecSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for i, sa := range after {
		if sa.Direction != "inbound" || sa.Bytes == 0 {
			continue
		}
		k, ok := states[fmt.Sprintf("%s/%d", sa.Protocol, sa.SPI)]
		if !ok {
			continue
		}
		kb := k.Statistics.Bytes
		lo := uint64(0)
		for _, b := range before {
			if b.SPI == sa.SPI {
				lo = b.Bytes
			}
		}
		if kb < lo || kb > sa.Bytes {
			t.Errorf("SA 0x%08x: kernel counted %d bytes, gNMI said %d then %d", sa.SPI, kb, lo, sa.Bytes)
		}
		if want := lifeKB - min(sa.Bytes/1024, lifeKB); sa.LifetimeLeftKB != want {
			t.Errorf("SA 0x%08x: %d KB left in gNMI, want %d (%d bytes counted)", sa.SPI, sa.LifetimeLeftKB, want, sa.Bytes)
		}
		t.Logf("SA 0x%08x: kernel %d bytes, gNMI %d bytes, %d KB left", sa.SPI, kb, after[i].Bytes, sa.LifetimeLeftKB)
		checked++
	}
	if checked == 0 {
		t.Error("no inbound SA with traffic to compare")
	}
}

package seedlab

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spiagent/spiagent/lab/netlab"
)

// strongSwan as Linux users run it: charon with kernel-netlink (the kernel's
// XFRM, not libipsec) as one router, spiagent on XFRM as the other. These
// run in the lab/qemu guest (its kernel has ESP) and skip elsewhere.

// swanLab is the seed topology with charon as one router.
type swanLab struct {
	*Lab
	ch    *Charon
	agent *Router // the spiagent router
	flow  *netlab.Flow
	stop  context.CancelFunc
}

// strongSwanKernelEdit makes a lab config match the charon: AES-128/SHA-1/
// group 14 for IKE, ESP AES-128/HMAC-SHA1 (charon does not do AH+ESP
// bundles), plain ESP (kernel-netlink needs no ESP-in-UDP), recovery on.
func strongSwanKernelEdit(cfg map[string]any) {
	RecoveryEdit(true)(cfg)
	c := cfg["spiagent-crypto:crypto"].(map[string]any)
	pol := c["isakmp"].(map[string]any)["policies"].(map[string]any)["policy"].([]any)[0].(map[string]any)["config"].(map[string]any)
	pol["encryption"], pol["group"] = "aes-128", "group14"
	ts := c["transform-sets"].(map[string]any)["transform-set"].([]any)[0].(map[string]any)
	ts["config"] = map[string]any{"name": ts["name"], "esp-encryption": "esp-aes", "esp-key-bits": 128, "esp-integrity": "esp-sha-hmac"}
}

// newSwanLab starts the lab: charon (cc; RouterB says which router it is)
// with kernel-netlink, spiagent with --dataplane xfrm configured with
// strongSwanKernelEdit then edit.
func newSwanLab(t *testing.T, prefix string, cc CharonConfig, edit func(map[string]any)) *swanLab {
	t.Helper()
	requireGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := New(prefix, repoRoot(), bins.spiagent, bins.spictl, t.TempDir())
	l.UseDataplane("xfrm")
	s := &swanLab{Lab: l, agent: l.B}
	chNS, addrs := l.Topo.RouterA, [][2]string{{netlab.RouterALAN + "/24", "lan0"}, {netlab.RouterAWAN + "/24", "wan0"}}
	if cc.RouterB {
		s.agent = l.A
		chNS, addrs = l.Topo.RouterB, [][2]string{{netlab.RouterBWAN + "/24", "wan0"}, {netlab.RouterBLAN + "/24", "lan0"}}
	}
	if err := l.Topo.Up(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stopFlow()
		if t.Failed() {
			t.Logf("%s log:\n%s", s.agent.Name, tail(s.agent.Log()))
			if s.ch != nil {
				t.Logf("charon log:\n%s", tail(s.ch.Log()))
			}
		}
		if s.ch != nil {
			s.ch.Stop()
		}
		l.Down()
	})
	if err := l.Topo.RouteLANs(ctx); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if _, err := netlab.Exec(ctx, chNS, "ip", "addr", "add", a[0], "dev", a[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.agent.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.agent.PushConfig(ctx, func(cfg map[string]any) {
		strongSwanKernelEdit(cfg)
		if edit != nil {
			edit(cfg)
		}
	}); err != nil {
		t.Fatal(err)
	}
	cc.NS, cc.Dir, cc.PSK, cc.KernelNetlink = chNS, t.TempDir(), "1234", true
	var err error
	if s.ch, err = StartCharonWith(ctx, cc); err != nil {
		t.Fatal(err)
	}
	return s
}

// startFlow sends host1 -> host2 at rate packets/s of size bytes until the
// test ends or stopFlow.
func (s *swanLab) startFlow(t *testing.T, rate, size int) {
	t.Helper()
	s.stopFlow()
	f, err := s.StartFlow()
	if err != nil {
		t.Fatal(err)
	}
	f.Payload = size
	ctx, stop := context.WithCancel(context.Background())
	s.flow, s.stop = f, stop
	go func() { _ = f.Run(ctx, netlab.Host2Addr, rate, rate*600) }()
}

func (s *swanLab) stopFlow() {
	if s.stop != nil {
		s.stop()
		s.flow.Close()
		s.stop, s.flow = nil, nil
	}
}

// flowing waits until n packets sent after since have arrived.
func (s *swanLab) flowing(t *testing.T, what string, since time.Time, n int, timeout time.Duration) {
	t.Helper()
	if err := WaitRecovered(context.Background(), s.flow, since, n, timeout); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("%s: traffic flows %v after the step", what, s.flow.FirstReceivedAfter(since).Sub(since).Round(time.Millisecond))
}

// logShows waits until a log contains sub.
func logShows(t *testing.T, name string, log func() string, sub string, timeout time.Duration) {
	t.Helper()
	if !netlab.WaitFor(context.Background(), timeout, 100*time.Millisecond, func() bool { return strings.Contains(log(), sub) }) {
		t.Fatalf("%s's log never showed %q within %v", name, sub, timeout)
	}
}

func count(s, sub string) int { return strings.Count(s, sub) }

// TestGuestStrongSwanInitiatesOnTraffic: charon is routerA with trap
// policies, so the kernel's acquire makes it initiate (what libipsec cannot
// do); spiagent on XFRM is routerB. Then DELETE both ways (each followed by
// charon renegotiating on the next packet), Invalid SPI Recovery after
// routerB loses its SAs without a word (INITIAL-CONTACT makes charon drop
// its stale SAs), and a SIGKILLed and restarted spiagent.
func TestGuestStrongSwanInitiatesOnTraffic(t *testing.T) {
	s := newSwanLab(t, "xw", CharonConfig{StartAction: "trap"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	s.startFlow(t, 20, 64)
	s.flowing(t, "charon initiates on traffic", start, 5, 60*time.Second)
	if !strings.Contains(s.ch.Log(), "initiating Main Mode IKE_SA") || !strings.Contains(s.agent.Log(), "initiator=false") {
		t.Fatalf("charon did not initiate (its log has no Main Mode initiation, or spiagent was not the responder)")
	}
	sas, err := s.ch.Swanctl(ctx, "--list-sas")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sas, "INSTALLED, TUNNEL,") || strings.Contains(sas, "in-UDP") {
		t.Fatalf("charon's SAs:\n%s\nwant an INSTALLED plain-ESP TUNNEL CHILD_SA (kernel-netlink)", sas)
	}

	// DELETE from charon: spiagent removes the SAs; charon's trap policy
	// renegotiates on the next packet.
	mark := time.Now()
	if _, err := s.ch.Swanctl(ctx, "--terminate", "--child", "net"); err != nil {
		t.Fatal(err)
	}
	logShows(t, "spiagent", s.agent.Log, "reason=peer-delete", 20*time.Second)
	s.flowing(t, "after charon's DELETE", mark.Add(time.Second), 3, 30*time.Second)

	// DELETE from spiagent (clear crypto sa, notifying): charon removes
	// its SAs and renegotiates on the next packet.
	n := count(s.ch.Log(), "received DELETE for ESP CHILD_SA")
	mark = time.Now()
	if err := s.agent.ClearSAs(ctx, false); err != nil {
		t.Fatal(err)
	}
	if !netlab.WaitFor(ctx, 20*time.Second, 100*time.Millisecond, func() bool {
		return count(s.ch.Log(), "received DELETE for ESP CHILD_SA") > n
	}) {
		t.Fatal("charon never logged spiagent's DELETE")
	}
	s.flowing(t, "after spiagent's DELETE", mark.Add(time.Second), 3, 30*time.Second)

	// The black hole: spiagent loses its SAs without a word. Recovery:
	// Main Mode with INITIAL-CONTACT, INVALID-SPI; charon drops its stale
	// SAs and its trap renegotiates.
	time.Sleep(time.Second)
	ic := count(s.ch.Log(), "INITIAL_CONTACT")
	brk := time.Now()
	if err := s.agent.ClearSAs(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := waitResumed(ctx, s.flow, brk, 3, 30*time.Second); err != nil {
		t.Fatalf("no recovery against charon: %v", err)
	}
	time.Sleep(time.Second)
	lag := firstAfter(s.flow, brk)
	t.Logf("SEEDLAB-FIGURES dataplane=xfrm case=strongswan-kernel-recovery black_hole=%v lost=%d", lag.Round(time.Millisecond), lostAfter(s.flow, brk))
	if count(s.ch.Log(), "INITIAL_CONTACT") <= ic {
		t.Error("charon did not see INITIAL_CONTACT from the recovery Main Mode")
	}
	c, err := s.agent.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c["received"] == 0 || c["notified"] == 0 {
		t.Errorf("spiagent's invalid-SPI counters %v: want the stale SPI received and notified", c)
	}
	if line := grepLine(s.agent.Log(), "%CRYPTO-4-RECVD_PKT_INV_SPI"); !strings.Contains(line, "srcaddr=192.0.2.1") {
		t.Errorf("spiagent's invalid-SPI line %q", line)
	}

	// spiagent is SIGKILLed and restarts from its data dir: the same, with
	// the restart in the black hole.
	ic = count(s.ch.Log(), "INITIAL_CONTACT")
	brk = time.Now()
	s.agent.Kill()
	if err := s.agent.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitResumed(ctx, s.flow, brk, 3, 60*time.Second); err != nil {
		t.Fatalf("no recovery after spiagent's restart: %v", err)
	}
	time.Sleep(time.Second)
	t.Logf("SEEDLAB-FIGURES dataplane=xfrm case=strongswan-kernel-restart black_hole=%v lost=%d",
		firstAfter(s.flow, brk).Round(time.Millisecond), lostAfter(s.flow, brk))
	if count(s.ch.Log(), "INITIAL_CONTACT") <= ic {
		t.Error("charon did not see INITIAL_CONTACT from the restarted spiagent")
	}
}

// TestGuestStrongSwanResponds: spiagent on XFRM is routerA and initiates on
// the kernel's acquire; charon (kernel-netlink) is routerB and only
// responds. DELETE both ways, then dead peer detection both ways: charon
// notices a SIGKILLed spiagent, spiagent a SIGKILLed charon.
func TestGuestStrongSwanResponds(t *testing.T) {
	s := newSwanLab(t, "xv", CharonConfig{RouterB: true, StartAction: "none", DPD: 2 * time.Second}, func(cfg map[string]any) {
		cfg["spiagent-crypto:crypto"].(map[string]any)["isakmp"].(map[string]any)["config"].(map[string]any)["dpd-interval"] = 10
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	s.startFlow(t, 20, 64)
	s.flowing(t, "spiagent initiates on the kernel's acquire", start, 5, 60*time.Second)
	if !strings.Contains(s.agent.Log(), "traffic needs an SA; negotiating") || !strings.Contains(s.agent.Log(), "initiator=true") {
		t.Fatal("spiagent did not initiate on an acquire")
	}

	// DELETE from spiagent: charon drops the SAs; spiagent's next packet
	// raises an acquire and renegotiates.
	n := count(s.ch.Log(), "received DELETE for ESP CHILD_SA")
	mark := time.Now()
	if err := s.agent.ClearSAs(ctx, false); err != nil {
		t.Fatal(err)
	}
	if !netlab.WaitFor(ctx, 20*time.Second, 100*time.Millisecond, func() bool {
		return count(s.ch.Log(), "received DELETE for ESP CHILD_SA") > n
	}) {
		t.Fatal("charon never logged spiagent's DELETE")
	}
	s.flowing(t, "after spiagent's DELETE", mark.Add(time.Second), 3, 30*time.Second)

	// DELETE from charon (the IKE SA and its CHILD_SA).
	pd := count(s.agent.Log(), "reason=peer-delete")
	mark = time.Now()
	if _, err := s.ch.Swanctl(ctx, "--terminate", "--ike", "seed"); err != nil {
		t.Fatal(err)
	}
	if !netlab.WaitFor(ctx, 20*time.Second, 100*time.Millisecond, func() bool {
		return count(s.agent.Log(), "reason=peer-delete") > pd
	}) {
		t.Fatal("spiagent never took charon's DELETE")
	}
	s.flowing(t, "after charon's DELETE", mark.Add(time.Second), 3, 30*time.Second)

	// DPD, charon's side: spiagent dies. Its kernel SAs stay and would go
	// on carrying traffic, which charon takes as a sign of life (IKEv1
	// DPD only asks when nothing arrives), so the flow stops first.
	s.stopFlow()
	s.agent.Kill()
	logShows(t, "charon", s.ch.Log, "DPD check timed out", 40*time.Second)
	mark = time.Now()
	if err := s.agent.Start(ctx); err != nil {
		t.Fatal(err)
	}
	s.startFlow(t, 20, 64)
	s.flowing(t, "after spiagent's restart", mark, 3, 60*time.Second)

	// DPD, spiagent's side: charon dies.
	s.ch.Kill()
	logShows(t, "spiagent", s.agent.Log, "IKE peer dead (DPD)", 90*time.Second)
	logShows(t, "spiagent", s.agent.Log, "reason=dpd", 10*time.Second)
}

// TestGuestStrongSwanRekey: rekeying by lifetime against charon with no
// packet lost. Seconds: charon initiates with a 20 s lifetime (rekey at
// 10 s), which spiagent accepts as responder. Kilobytes: spiagent's crypto
// map says 2560 KB; the kernel counts the bytes, its soft limit (90%) makes
// spiagent rekey, before the hard limit would delete the SA.
func TestGuestStrongSwanRekey(t *testing.T) {
	t.Run("seconds", func(t *testing.T) {
		s := newSwanLab(t, "xk", CharonConfig{StartAction: "trap", RekeyTime: 10 * time.Second, LifeTime: 20 * time.Second}, nil)
		start := time.Now()
		s.startFlow(t, 20, 64)
		s.flowing(t, "first SA", start, 5, 60*time.Second)
		first := time.Now()
		// Two rekeys by charon.
		if !netlab.WaitFor(context.Background(), 60*time.Second, 200*time.Millisecond, func() bool {
			return count(s.agent.Log(), "IPsec SAs installed") >= 3
		}) {
			t.Fatalf("%d SA bundles installed in 60 s, want 3 (two rekeys at 10 s)", count(s.agent.Log(), "IPsec SAs installed"))
		}
		time.Sleep(3 * time.Second)
		lost := s.flow.LostBetween(first, time.Now().Add(-time.Second))
		t.Logf("SEEDLAB-FIGURES dataplane=xfrm case=strongswan-rekey-seconds lost=%d over %v", lost, time.Since(first).Round(time.Second))
		if lost != 0 {
			t.Errorf("%d packets lost across charon's rekeys", lost)
		}
	})
	t.Run("kilobytes", func(t *testing.T) {
		s := newSwanLab(t, "xb", CharonConfig{StartAction: "trap"}, func(cfg map[string]any) {
			c := cfg["spiagent-crypto:crypto"].(map[string]any)
			e := c["crypto-maps"].(map[string]any)["crypto-map"].([]any)[0].(map[string]any)["entries"].(map[string]any)["entry"].([]any)[0].(map[string]any)
			e["config"].(map[string]any)["sa-lifetime-kilobytes"] = 2560
		})
		start := time.Now()
		// 1200-byte datagrams at 200/s: 240 KB/s, the soft limit (2304 KB)
		// after about 10 s, about a second before the hard one.
		s.startFlow(t, 200, 1200)
		s.flowing(t, "first SA", start, 5, 60*time.Second)
		first := time.Now()
		logShows(t, "spiagent", s.agent.Log, "IPsec SA reached its soft lifetime; rekeying", 60*time.Second)
		if !netlab.WaitFor(context.Background(), 30*time.Second, 200*time.Millisecond, func() bool {
			return count(s.agent.Log(), "IPsec SAs installed") >= 2
		}) {
			t.Fatal("no new SA bundle after the soft byte limit")
		}
		time.Sleep(5 * time.Second) // past where the hard limit would have cut the old SA
		lost := s.flow.LostBetween(first, time.Now().Add(-time.Second))
		t.Logf("SEEDLAB-FIGURES dataplane=xfrm case=strongswan-rekey-kilobytes lost=%d of %d over %v", lost,
			s.flow.Stats(time.Second).Sent, time.Since(first).Round(time.Second))
		if lost != 0 {
			t.Errorf("%d packets lost across the byte-lifetime rekey", lost)
		}
		if strings.Contains(s.agent.Log(), "reached its hard lifetime") {
			t.Error("an SA reached its hard byte lifetime although the rekey came first")
		}
	})
}

package seedlab

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spiagent/spiagent/lab/netlab"
)

// strongSwanEdit turns routerB's lab config into one strongSwan's userspace
// IPsec can talk to: AES-128/SHA-1/group 14, ESP only (libipsec has no AH),
// and ESP-in-UDP always (libipsec has nothing else).
func strongSwanEdit(cfg map[string]any) {
	c := cfg["spiagent-crypto:crypto"].(map[string]any)
	isakmp := c["isakmp"].(map[string]any)
	isakmp["config"].(map[string]any)["force-udp-encapsulation"] = true
	pol := isakmp["policies"].(map[string]any)["policy"].([]any)[0].(map[string]any)["config"].(map[string]any)
	pol["encryption"], pol["group"] = "aes-128", "group14"
	ts := c["transform-sets"].(map[string]any)["transform-set"].([]any)[0].(map[string]any)
	ts["config"] = map[string]any{"name": ts["name"], "esp-encryption": "esp-aes", "esp-key-bits": 128, "esp-integrity": "esp-sha-hmac"}
}

// TestStrongSwanPeerRecovery: routerA is strongSwan's charon, routerB is
// spiagent. The tunnel carries traffic; spiagent is killed and restarted
// while charon keeps sending on the stale SA; spiagent's recovery Main
// Mode carries INITIAL-CONTACT, which makes charon drop its stale SAs (it
// ignores INVALID-SPI) and renegotiate on the next packet.
func TestStrongSwanPeerRecovery(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces); make test runs it as root")
	}
	for _, b := range []string{CharonBin, SwanctlBin} {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("%s missing (Debian strongswan-charon, strongswan-swanctl; scripts/deps.sh installs them): %v", b, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	l := New("e2s", repoRoot(), bins.spiagent, bins.spictl, t.TempDir())
	if err := l.Topo.Up(ctx); err != nil {
		t.Fatal(err)
	}
	var ch *Charon
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("routerB log:\n%s", tail(l.B.Log()))
			if ch != nil {
				var keep []string
				for _, line := range strings.Split(ch.Log(), "\n") {
					if !strings.Contains(line, "could not find an outbound IPsec SA") {
						keep = append(keep, line)
					}
				}
				t.Logf("charon log (without per-packet drops):\n%s", tail(strings.Join(keep, "\n")))
			}
		}
		if ch != nil {
			ch.Stop()
		}
		l.Down()
	})
	for _, a := range [][]string{{"198.51.100.1/24", "lan0"}, {"192.0.2.1/24", "wan0"}} {
		if _, err := netlab.Exec(ctx, l.Topo.RouterA, "ip", "addr", "add", a[0], "dev", a[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.B.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.B.PushConfig(ctx, func(cfg map[string]any) { RecoveryEdit(true)(cfg); strongSwanEdit(cfg) }); err != nil {
		t.Fatal(err)
	}
	var err error
	if ch, err = StartCharon(ctx, l.Topo.RouterA, t.TempDir(), "1234"); err != nil {
		t.Fatal(err)
	}
	flow, err := l.StartFlow()
	if err != nil {
		t.Fatal(err)
	}
	defer flow.Close()
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = flow.Run(fctx, netlab.Host2Addr, 20, 20*60) }()
	if err := WaitRecovered(ctx, flow, time.Now().Add(-time.Second), 5, 20*time.Second); err != nil {
		t.Fatalf("no traffic through charon -> spiagent: %v", err)
	}
	sas, err := ch.Swanctl(ctx, "--list-sas")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sas, "ESTABLISHED") || !strings.Contains(sas, "INSTALLED") || !strings.Contains(sas, "UDP") {
		t.Fatalf("charon's SAs:\n%s\nwant an ESTABLISHED IKE SA and an INSTALLED, UDP-encapsulated CHILD_SA", sas)
	}

	// The black hole: spiagent dies and comes back with no SAs.
	brk := time.Now()
	l.B.Kill()
	if err := l.B.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := WaitRecovered(ctx, flow, brk, 3, 20*time.Second); err != nil {
		t.Fatalf("traffic did not resume after spiagent's restart: %v", err)
	}
	lag := flow.FirstReceivedAfter(brk).Sub(brk)
	t.Logf("traffic resumed %v after spiagent was killed (restart included)", lag.Round(time.Millisecond))
	if log := ch.Log(); !strings.Contains(log, "INITIAL_CONTACT") {
		t.Errorf("charon never saw INITIAL_CONTACT:\n%s", tail(log))
	}
	cb, err := l.B.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cb["received"] == 0 || cb["notified"] == 0 {
		t.Errorf("spiagent counters %v: want the invalid SPI seen and notified", cb)
	}
}

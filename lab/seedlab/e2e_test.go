package seedlab

import (
	"context"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The end-to-end tests of the seed scenario. They need root; as root they
// always run (make test runs as root). Every lab uses its own namespaces
// (prefix) and is torn down by t.Cleanup, even on failure.

var bins struct{ spiagent, spictl string }

func TestMain(m *testing.M) {
	code := 0
	if d := os.Getenv("SPIAGENT_BIN_DIR"); d != "" {
		// Prebuilt (the lab/qemu guest has no Go toolchain).
		bins.spiagent, bins.spictl = filepath.Join(d, "spiagent"), filepath.Join(d, "spictl")
		code = m.Run()
	} else if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "seedlab-bin")
		if err != nil {
			panic(err)
		}
		bins.spiagent, bins.spictl, err = Build(context.Background(), repoRoot(), dir)
		if err != nil {
			panic(err)
		}
		code = m.Run()
		os.RemoveAll(dir)
	} else {
		code = m.Run()
	}
	os.Exit(code)
}

// repoRoot is the repository, or $SPIAGENT_REPO (in the lab/qemu guest,
// where the examples are copied).
func repoRoot() string {
	if d := os.Getenv("SPIAGENT_REPO"); d != "" {
		return d
	}
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "../.."))
}

func newLab(t *testing.T, prefix string, opts ...func(*Lab)) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, TUN, raw sockets); make test runs it as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("iproute2 missing (scripts/deps.sh installs it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := New(prefix, repoRoot(), bins.spiagent, bins.spictl, t.TempDir())
	for _, o := range opts {
		o(l)
	}
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("routerA log:\n%s", tail(l.A.Log()))
			t.Logf("routerB log:\n%s", tail(l.B.Log()))
		}
		l.Down()
	})
	return l
}

// TestRecoverySeedTransform: the seed's AH+ESP transform set, recovery on:
// traffic at 20 packets/s resumes within 2 s of the black hole.
func TestRecoverySeedTransform(t *testing.T) {
	l := newLab(t, "e2r")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	events := subscribeLastEvent(ctx, t, l.B)
	res, err := l.Run(ctx, Scenario{Recovery: true, Watch: 5 * time.Second, Say: Narrator{W: testWriter{t}}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Recovered {
		t.Fatalf("no recovery: %+v", res)
	}
	select {
	case ev := <-events:
		if !strings.Contains(ev, "notified") || !strings.Contains(ev, "192.0.2.1") {
			t.Errorf("gNMI ON_CHANGE invalid-SPI event %q: want outcome notified from 192.0.2.1", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("the gNMI subscription to /crypto/invalid-spi/last-event saw no event")
	}
	if res.RecoveryLag > 2*time.Second {
		t.Errorf("recovery took %v, want under 2 s", res.RecoveryLag)
	}
	if res.CountersB["received"] == 0 || res.CountersB["notified"] == 0 {
		t.Errorf("routerB counters %v: want received and notified > 0", res.CountersB)
	}
	if !strings.Contains(res.LogLineB, "decaps: rec'd IPSEC packet has invalid spi for destaddr=192.0.2.2, prot=51") {
		t.Errorf("routerB log line %q: want the AH (prot=51) invalid SPI from 192.0.2.1", res.LogLineB)
	}
}

// TestNoRecoveryBlackHole: recovery off, the black hole persists for 10 s
// and the invalid-SPI counter grows.
func TestNoRecoveryBlackHole(t *testing.T) {
	l := newLab(t, "e2n")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := l.Run(ctx, Scenario{Recovery: false, Watch: 10 * time.Second, Say: Narrator{W: testWriter{t}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Recovered {
		t.Fatalf("traffic resumed without recovery: %+v", res)
	}
	if res.CountersB["received"] < 10 || res.CountersB["notified"] != 0 || res.CountersB["recovery-disabled"] == 0 {
		t.Errorf("routerB counters %v: want received >= 10, notified 0, recovery-disabled > 0", res.CountersB)
	}
	// What the code guarantees, whatever rate a loaded machine lets the
	// sender keep: the black hole swallowed packets, and routerB counted
	// the stale SPIs it saw after the break.
	if res.Lost == 0 {
		t.Errorf("no packet lost after the break: %+v", res)
	}
	for _, c := range []string{"received", "recovery-disabled"} {
		if res.CountersB[c] <= res.BeforeB[c] {
			t.Errorf("routerB counter %s did not grow after the break: %d, then %d", c, res.BeforeB[c], res.CountersB[c])
		}
	}
}

// subscribeLastEvent subscribes ON_CHANGE to routerB's last invalid-SPI
// event and sends each notification's values, joined, on the channel.
func subscribeLastEvent(ctx context.Context, t *testing.T, r *Router) <-chan string {
	t.Helper()
	c, err := r.client()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
		Mode: gpb.SubscriptionList_STREAM, Encoding: gpb.Encoding_JSON_IETF, UpdatesOnly: true,
		Subscription: []*gpb.Subscription{{Path: path("crypto", "invalid-spi", "last-event"), Mode: gpb.SubscriptionMode_ON_CHANGE}},
	}}}); err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 16)
	go func() {
		for {
			resp, err := sub.Recv()
			if err != nil {
				return
			}
			var vals []string
			for _, u := range resp.GetUpdate().GetUpdate() {
				vals = append(vals, u.GetVal().String())
			}
			if len(vals) > 0 && strings.Contains(strings.Join(vals, " "), "notified") {
				select {
				case out <- strings.Join(vals, " "):
				default:
				}
			}
		}
	}()
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// gcmEdit makes the lab's transform set ESP-only AES-GCM-128.
func gcmEdit(cfg map[string]any) {
	c := cfg["spiagent-crypto:crypto"].(map[string]any)
	ts := c["transform-sets"].(map[string]any)["transform-set"].([]any)[0].(map[string]any)
	ts["config"] = map[string]any{"name": ts["name"], "esp-encryption": "esp-gcm", "esp-key-bits": 128}
}

// TestRecoveryESPGCM: the same recovery with an ESP-only aes-gcm transform
// set (esp-gcm 128).
func TestRecoveryESPGCM(t *testing.T) {
	l := newLab(t, "e2g")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := l.Run(ctx, Scenario{Recovery: true, Watch: 5 * time.Second, Edit: gcmEdit, Show: true, Say: Narrator{W: testWriter{t}}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Recovered || res.RecoveryLag > 2*time.Second {
		t.Fatalf("recovery with esp-gcm: %+v, want within 2 s", res)
	}
	if !strings.Contains(res.LogLineB, "prot=50") {
		t.Errorf("routerB log line %q: want an ESP (prot=50) invalid SPI", res.LogLineB)
	}
	out, err := l.Spictl(ctx, l.A, "show", "crypto", "ipsec", "sa")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "esp-gcm 128") {
		t.Errorf("routerA's SAs are not esp-gcm 128:\n%s", out)
	}
}

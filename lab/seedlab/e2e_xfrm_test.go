package seedlab

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// The seed scenario on the kernel's XFRM. These tests need a kernel with
// ESP and AH: they run in the lab/qemu guest (SPIAGENT_XFRM_GUEST=1, with
// prebuilt binaries in SPIAGENT_BIN_DIR) and skip elsewhere. TCG makes the
// guest slow: bounds are generous, figures are logged, not asserted.

const guestEnv = "SPIAGENT_XFRM_GUEST"

func requireGuest(t *testing.T) {
	t.Helper()
	if os.Getenv(guestEnv) != "1" {
		t.Skipf("needs a kernel with ESP: runs in the lab/qemu guest (%s=1)", guestEnv)
	}
}

// xfrmLab is a lab whose agents run --dataplane xfrm.
func xfrmLab(t *testing.T, prefix string) *Lab {
	t.Helper()
	requireGuest(t)
	return newLab(t, prefix, func(l *Lab) { l.UseDataplane("xfrm") })
}

// figures logs a run's numbers in one greppable line.
func figures(t *testing.T, name string, res *Result) {
	t.Helper()
	t.Logf("SEEDLAB-FIGURES dataplane=xfrm case=%s setup=%v recovered=%v black_hole=%v lost=%d outage=%v received=%d notified=%d",
		name, res.SetupTime.Round(time.Millisecond), res.Recovered, res.RecoveryLag.Round(time.Millisecond), res.Lost,
		res.Outage.Round(time.Millisecond), res.CountersB["received"], res.CountersB["notified"])
}

// TestGuestSeedXFRM: the seed scenario with two spiagents on XFRM.
func TestGuestSeedXFRM(t *testing.T) {
	requireGuest(t)
	t.Run("ah-esp/recovery", func(t *testing.T) {
		l := xfrmLab(t, "xr")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		res, err := l.Run(ctx, Scenario{Recovery: true, Watch: 10 * time.Second, Setup: 60 * time.Second, Show: true, Say: Narrator{W: testWriter{t}}})
		if err != nil {
			t.Fatal(err)
		}
		figures(t, "ah-esp-recovery", res)
		if !res.Recovered {
			t.Fatalf("no recovery on XFRM: %+v", res)
		}
		if !strings.Contains(res.LogLineB, "decaps: rec'd IPSEC packet has invalid spi for destaddr=192.0.2.2, prot=51") {
			t.Errorf("routerB log line %q: want the AH (prot=51) invalid SPI from 192.0.2.1", res.LogLineB)
		}
		if l.A.DataplaneInUse() != "xfrm" || l.B.DataplaneInUse() != "xfrm" {
			t.Errorf("dataplanes %q and %q, want xfrm", l.A.DataplaneInUse(), l.B.DataplaneInUse())
		}
		if !strings.Contains(l.A.Log(), "traffic needs an SA; negotiating") {
			t.Error("routerA never negotiated on a kernel acquire")
		}
	})
}

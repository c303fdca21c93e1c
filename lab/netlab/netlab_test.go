package netlab

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces); make test runs it as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("iproute2 missing (scripts/deps.sh installs it): %v", err)
	}
}

// TestTopologyAndFlow builds the lab, gives the routers their addresses by
// hand (the agent does it in the real lab) plus plain routes, and checks
// that a flow crosses it and that Down removes everything.
func TestTopologyAndFlow(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo := New("nlT")
	if err := topo.Up(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = topo.Down(context.Background()) })
	for _, s := range [][]string{
		{"-n", topo.RouterA, "addr", "add", RouterALAN + "/24", "dev", "lan0"},
		{"-n", topo.RouterA, "addr", "add", RouterAWAN + "/24", "dev", "wan0"},
		{"-n", topo.RouterB, "addr", "add", RouterBWAN + "/24", "dev", "wan0"},
		{"-n", topo.RouterB, "addr", "add", RouterBLAN + "/24", "dev", "lan0"},
	} {
		if err := ip(ctx, s...); err != nil {
			t.Fatal(err)
		}
	}
	// Without routes between the LANs the flow must fail.
	f, err := StartFlow(topo.Host1, Host1Addr, topo.Host2, Host2Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Run(ctx, Host2Addr, 100, 10); err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(0); st.Received != 0 || st.Lost != 10 {
		t.Fatalf("without routes: %+v, want all 10 lost", st)
	}
	for _, s := range [][]string{
		{"-n", topo.RouterA, "route", "add", host2Network, "via", RouterBWAN},
		{"-n", topo.RouterB, "route", "add", host1Network, "via", RouterAWAN},
	} {
		if err := ip(ctx, s...); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Run(ctx, Host2Addr, 100, 20); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	st := f.Stats(0)
	if st.Sent != 30 || st.Received != 20 || st.Lost != 10 || st.LastLost != 9 {
		t.Fatalf("with routes: %+v, want 30 sent, 20 received, the first 10 lost", st)
	}
	if st.Outage < 80*time.Millisecond || st.Outage > time.Second {
		t.Errorf("outage %v, want about 100 ms (10 packets at 100/s)", st.Outage)
	}
	if err := topo.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ip", "netns", "list").CombinedOutput(); strings.Contains(string(out), topo.RouterA) {
		t.Fatalf("namespace %s left after Down:\n%s", topo.RouterA, out)
	}
}

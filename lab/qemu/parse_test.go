package qemu

import (
	"strings"
	"testing"
)

const sampleLog = "\x1b[2JSeaBIOS (version 1.16)\r\n" + `SPIAGENT-QEMU: init at 6.1.0-56-cloud-amd64 uptime 2.71s
SPIAGENT-QEMU: running xfrm at 3.1s
=== RUN   TestAlgorithmTables
--- PASS: TestAlgorithmTables (0.00s)
=== RUN   TestGuestESPTunnel
=== RUN   TestGuestESPTunnel/aes-cbc
    guest_test.go:10: counters ok
=== RUN   TestGuestESPTunnel/des
    guest_test.go:20: ping lost
    --- PASS: TestGuestESPTunnel/aes-cbc (0.50s)
    --- FAIL: TestGuestESPTunnel/des (0.20s)
--- FAIL: TestGuestESPTunnel (0.70s)
=== RUN   TestRootOnly
    x_test.go:1: needs root
--- SKIP: TestRootOnly (0.00s)
FAIL
SPIAGENT-QEMU: xfrm exited 1 at 9.1s
SPIAGENT-QEMU: running seedlab at 9.2s
=== RUN   TestGuestSeedXFRM
--- PASS: TestGuestSeedXFRM (9.00s)
SPIAGENT-QEMU: seedlab exited 0 at 19.1s
SPIAGENT-QEMU-RESULT: FAIL (1)` + "\r\n"

func TestParseGuestLog(t *testing.T) {
	res, mark, err := parseGuestLog(strings.NewReader(sampleLog))
	if err != nil {
		t.Fatal(err)
	}
	if mark != "SPIAGENT-QEMU-RESULT: FAIL (1)" {
		t.Errorf("marker %q", mark)
	}
	want := []struct{ program, name, status string }{
		{"xfrm", "TestAlgorithmTables", "PASS"}, {"xfrm", "TestGuestESPTunnel", "FAIL"}, {"xfrm", "TestRootOnly", "SKIP"},
		{"seedlab", "TestGuestSeedXFRM", "PASS"},
	}
	if len(res) != len(want) {
		t.Fatalf("got %d results: %+v", len(res), res)
	}
	for i, w := range want {
		if res[i].program != w.program || res[i].name != w.name || res[i].status != w.status {
			t.Errorf("result %d: %s/%s %s, want %s/%s %s", i, res[i].program, res[i].name, res[i].status, w.program, w.name, w.status)
		}
	}
	out := strings.Join(res[1].output, "\n")
	if !strings.Contains(out, "ping lost") || !strings.Contains(out, "--- FAIL: TestGuestESPTunnel/des") {
		t.Errorf("failure output lacks the subtest's lines:\n%s", out)
	}
	if strings.Contains(out, "TestAlgorithmTables") {
		t.Errorf("failure output includes the previous test:\n%s", out)
	}
}

func TestParseGuestLogNoMarker(t *testing.T) {
	_, mark, err := parseGuestLog(strings.NewReader("Kernel panic - not syncing: Attempted to kill init!\n"))
	if err != nil || mark != "" {
		t.Errorf("marker %q err %v", mark, err)
	}
}

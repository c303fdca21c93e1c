package netconf

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/gnmi"
)

// TestNcclient runs testdata/ncclient_check.py (Debian's python3-ncclient)
// against the server, over both framings, then checks its commits in the
// store and over gNMI Get. As root (how CI runs) a missing ncclient fails
// the test (scripts/deps.sh installs it); otherwise it skips.
func TestNcclient(t *testing.T) {
	if testing.Short() {
		t.Skip("runs python3")
	}
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import ncclient").Run(); err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("python3-ncclient is missing (%v): run scripts/deps.sh", err)
		}
		t.Skipf("python3-ncclient is missing (%v)", err)
	}
	e := newEnv(t, nil)
	host, port, _ := net.SplitHostPort(e.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/ncclient_check.py", host, port, rwUser, rwPass)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ALL OK") {
		t.Fatalf("ncclient_check.py: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("%s", out)
	}
	if n := strings.Count(string(out), "ok: "); n < 40 {
		t.Errorf("only %d checks passed:\n%s", n, out)
	}
	for _, name := range []string{"ts-py-1.1", "ts-py-1.0"} {
		if !hasTS(e, name) {
			t.Errorf("store lacks %s committed over NETCONF", name)
		}
	}
	if hasTS(e, "ts-blocked") {
		t.Error("an edit under another session's lock got through")
	}
	// Both servers see one datastore: read the commits back over gNMI.
	got := gnmiGet(t, e, "/crypto/transform-sets")
	for _, name := range []string{"ts-py-1.1", "ts-py-1.0"} {
		if !strings.Contains(got, name) {
			t.Errorf("gNMI Get lacks %s: %s", name, got)
		}
	}
}

// gnmiGet starts a plaintext loopback gNMI server on e's store and returns
// the JSON_IETF of path.
func gnmiGet(t *testing.T, e *env, path string) string {
	t.Helper()
	users, err := auth.OpenUsers(e.dir + "/users")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gnmi.New(gnmi.Config{Store: e.st, State: e.tel, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var elems []*gpb.PathElem
	for _, n := range strings.Split(strings.Trim(path, "/"), "/") {
		elems = append(elems, &gpb.PathElem{Name: n})
	}
	rctx := metadata.AppendToOutgoingContext(context.Background(), "username", rwUser, "password", rwPass)
	rctx, rcancel := context.WithTimeout(rctx, 10*time.Second)
	defer rcancel()
	resp, err := gpb.NewGNMIClient(conn).Get(rctx, &gpb.GetRequest{Path: []*gpb.Path{{Elem: elems}}, Encoding: gpb.Encoding_JSON_IETF, Type: gpb.GetRequest_CONFIG})
	if err != nil {
		t.Fatalf("gNMI Get %s: %v", path, err)
	}
	var b strings.Builder
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			b.Write(u.GetVal().GetJsonIetfVal())
		}
	}
	return b.String() + " (" + strconv.Itoa(len(resp.GetNotification())) + " notifications)"
}

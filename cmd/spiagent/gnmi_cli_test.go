package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// gnmiCLIVersion is the openconfig gnmi_cli the interop test runs.
const gnmiCLIVersion = "v0.14.1"

// gnmiCLI finds gnmi_cli: $GNMI_CLI, bin/tools/gnmi_cli (make tools), or a
// `go install` into a GOBIN kept under the temp dir between runs.
func gnmiCLI(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("GNMI_CLI"); p != "" {
		return p
	}
	if p, err := filepath.Abs("../../bin/tools/gnmi_cli"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	gobin := filepath.Join(os.TempDir(), "spiagent-test-tools", gnmiCLIVersion)
	bin := filepath.Join(gobin, "gnmi_cli")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "install", "github.com/openconfig/gnmi/cmd/gnmi_cli@"+gnmiCLIVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install gnmi_cli: %v\n%s", err, out)
	}
	return bin
}

// buildAgent builds cmd/spiagent into a temp dir.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "spiagent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var tunSeq atomic.Int32

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// agentProc is a running spiagent.
type agentProc struct {
	cmd  *exec.Cmd
	addr string
	dir  string
	log  *strings.Builder
	done chan error
}

// startAgent runs `spiagent run` and waits for the gNMI listener.
func startAgent(t *testing.T, bin, dir string, extra ...string) *agentProc {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("spiagent run opens a TUN device, raw IPsec sockets and IKE ports: needs root (make test runs as root)")
	}
	p := &agentProc{addr: freePort(t), dir: dir, log: &strings.Builder{}, done: make(chan error, 1)}
	// The engines run for real, on ports and a TUN name of their own so
	// that concurrent tests and a running lab do not collide.
	ike, natt := freeUDPPort(t), freeUDPPort(t)
	args := append([]string{"run", "--data-dir", dir, "--gnmi-addr", p.addr, "--netconf-addr", "127.0.0.1:0",
		"--dataplane", "userspace", "--tun", fmt.Sprintf("spiT%d.%d", os.Getpid()%10000, tunSeq.Add(1)),
		"--ike-port", strconv.Itoa(ike), "--natt-port", strconv.Itoa(natt)}, extra...)
	p.cmd = exec.Command(bin, args...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			p.log.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "gNMI server listening") {
				once = true
				close(ready)
			}
		}
		p.done <- p.cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-p.done:
		t.Fatalf("spiagent exited: %v\n%s", err, p.log)
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("spiagent did not start listening:\n%s", p.log)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// stop sends SIGTERM and checks for a clean exit.
func (p *agentProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("spiagent exit: %v\n%s", err, p.log)
		}
	case <-time.After(15 * time.Second):
		// Reported, then killed so that the rest of the test can run.
		t.Errorf("spiagent did not stop within 15s of SIGTERM:\n%s", p.log)
		p.cmd.Process.Kill()
		<-p.done
	}
}

func addUser(t *testing.T, bin, dir, name, role, pass string) {
	t.Helper()
	cmd := exec.Command(bin, "user", "add", name, "--role", role, "--data-dir", dir)
	cmd.Stdin = strings.NewReader(pass + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
}

// TestGNMICLIInterop drives a real spiagent process with openconfig's
// gnmi_cli: capabilities, set, get and subscribe once, over TLS with the
// self-signed certificate and users from `spiagent user add`.
func TestGNMICLIInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	cli := gnmiCLI(t)
	bin := buildAgent(t)
	dir := filepath.Join(t.TempDir(), "data")
	addUser(t, bin, dir, "admin", "read-write", "admin-pw")
	addUser(t, bin, dir, "viewer", "read-only", "viewer-pw")
	p := startAgent(t, bin, dir)
	if !strings.Contains(p.log.String(), "generated a self-signed gNMI certificate") || !strings.Contains(p.log.String(), "sha256=") {
		t.Errorf("no fingerprint log line:\n%s", p.log)
	}
	cert := filepath.Join(dir, "gnmi-cert.pem")
	addr := p.addr

	run := func(user, pass string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		base := []string{"-address", addr, "-ca_crt", cert, "-server_name", "localhost", "-with_user_pass", "-logtostderr"}
		cmd := exec.CommandContext(ctx, cli, append(base, args...)...)
		cmd.Env = append(os.Environ(), "GNMI_USER="+user, "GNMI_PASS="+pass)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	seed, err := os.ReadFile("../../examples/lab/router-a.json")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		desc      string
		user      string
		pass      string
		args      []string
		wantErr   bool
		want      []string
		forbidden []string
	}{
		{desc: "capabilities", user: "viewer", pass: "viewer-pw", args: []string{"-capabilities"},
			want: []string{"spiagent-crypto", "JSON_IETF", "0.10.0"}},
		{desc: "set: replace the whole config", user: "admin", pass: "admin-pw",
			args: []string{"-set", "-proto", `replace: <path: <> val: <json_ietf_val: ` + strconv.Quote(string(seed)) + `>>`},
			want: []string{"op: REPLACE"}},
		{desc: "set: update one leaf", user: "admin", pass: "admin-pw",
			args: []string{"-set", "-proto", `update: <path: <elem: <name: "crypto"> elem: <name: "isakmp"> elem: <name: "policies"> elem: <name: "policy" key: <key: "priority" value: "1">> elem: <name: "config"> elem: <name: "lifetime">> val: <json_val: "240">>`},
			want: []string{"op: UPDATE"}},
		{desc: "set by a read-only user", user: "viewer", pass: "viewer-pw", wantErr: true,
			args: []string{"-set", "-proto", `delete: <elem: <name: "crypto">>`},
			want: []string{"PermissionDenied"}},
		{desc: "get JSON_IETF", user: "viewer", pass: "viewer-pw",
			args:      []string{"-get", "-proto", `path: <elem: <name: "crypto"> elem: <name: "isakmp">> encoding: JSON_IETF type: CONFIG`},
			want:      []string{`\"lifetime\":240`, "<redacted>"},
			forbidden: []string{`\"1234\"`}},
		{desc: "get a missing entry", user: "viewer", pass: "viewer-pw", wantErr: true,
			args: []string{"-get", "-proto", `path: <elem: <name: "crypto"> elem: <name: "isakmp"> elem: <name: "keys"> elem: <name: "key" key: <key: "address" value: "203.0.113.9">>>`},
			want: []string{"NotFound"}},
		{desc: "subscribe once", user: "viewer", pass: "viewer-pw",
			args: []string{"-qt", "once", "-q", "crypto/interfaces/interface/config/ipv4-address"},
			want: []string{"192.0.2.1", "198.51.100.1"}},
		{desc: "subscribe once to the key", user: "viewer", pass: "viewer-pw",
			args:      []string{"-qt", "once", "-q", "crypto/isakmp/keys"},
			want:      []string{"<redacted>"},
			forbidden: []string{"1234"}},
		{desc: "wrong password", user: "viewer", pass: "nope", wantErr: true, args: []string{"-capabilities"},
			want: []string{"Unauthenticated"}},
	}
	for _, s := range steps {
		out, err := run(s.user, s.pass, s.args...)
		if (err != nil) != s.wantErr {
			t.Errorf("%s: err = %v, wantErr %v\n%s", s.desc, err, s.wantErr, out)
			continue
		}
		for _, w := range s.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", s.desc, w, out)
			}
		}
		for _, f := range s.forbidden {
			if strings.Contains(out, f) {
				t.Errorf("%s: output has %q:\n%s", s.desc, f, out)
			}
		}
	}
	p.stop(t)

	// The config survives a restart; the certificate is reused.
	p2 := startAgent(t, bin, dir)
	addr = p2.addr
	out, err := run("viewer", "viewer-pw", "-get", "-proto", `path: <elem: <name: "crypto"> elem: <name: "isakmp"> elem: <name: "policies">> encoding: JSON`)
	if err != nil || !strings.Contains(out, `\"lifetime\":240`) {
		t.Errorf("after restart: %v\n%s", err, out)
	}
	if strings.Contains(p2.log.String(), "generated a self-signed") {
		t.Error("certificate regenerated on restart")
	}
	p2.stop(t)
}

// TestRunFlags covers the plaintext and lab-mode rules of `spiagent run`.
func TestRunFlags(t *testing.T) {
	tests := []struct {
		desc    string
		f       gnmiFlags
		want    string
		wantErr string
	}{
		{desc: "TLS keeps the address", f: gnmiFlags{addr: ":9339"}, want: ":9339"},
		{desc: "insecure binds loopback", f: gnmiFlags{addr: ":9339", insecure: true}, want: "127.0.0.1:9339"},
		{desc: "insecure localhost", f: gnmiFlags{addr: "localhost:1", insecure: true}, want: "127.0.0.1:1"},
		{desc: "insecure loopback v6", f: gnmiFlags{addr: "[::1]:1", insecure: true}, want: "[::1]:1"},
		{desc: "insecure refuses a public address", f: gnmiFlags{addr: "192.0.2.1:9339", insecure: true}, wantErr: "not a loopback address"},
		{desc: "insecure-force allows it", f: gnmiFlags{addr: "192.0.2.1:9339", insecure: true, insecureForce: true}, want: "192.0.2.1:9339"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := tc.f.listenAddr()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("listenAddr() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

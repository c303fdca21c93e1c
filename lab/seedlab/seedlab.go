// Package seedlab runs the seed document's scenario for real: two spiagent
// processes (routerA and routerB) in the namespace lab of package netlab,
// configured over gNMI with examples/lab, a UDP flow from host1 to host2
// through their tunnel, and the operations the scenario needs (clear SAs
// without notifying the peer, kill and restart an agent, read counters).
// The dataplane is a parameter (Lab.UseDataplane): the userspace one on the
// build host, the kernel's XFRM in the lab/qemu guest. The demo (lab/demo)
// and the end-to-end tests use it.
//
// It needs root, iproute2, and the spiagent and spictl binaries.
package seedlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spiagent/spiagent/lab/netlab"
)

// gnmiAddr is where each agent serves gNMI, on its namespace's loopback.
const gnmiAddr = "127.0.0.1:9339"

// Router is one spiagent process in its namespace.
type Router struct {
	Name    string // "routerA"
	NS      string
	DataDir string
	Config  string // examples/lab/router-a.json
	// Dataplane is spiagent's --dataplane: "userspace" (the default
	// here), "xfrm" or "auto".
	Dataplane string
	bin       string
	logPath   string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	conn *grpc.ClientConn
	c    gpb.GNMIClient
}

// Lab is the whole scenario's world.
type Lab struct {
	Topo      *netlab.Topology
	A, B      *Router
	SpictlBin string
	Dir       string
	// Routes gives the routers the operator's routes to the far LAN
	// (netlab.Topology.RouteLANs); set by UseDataplane for any dataplane
	// but userspace (XFRM forwards nothing without them).
	Routes bool
}

// New prepares a lab; dir holds the agents' data and logs. Repo is the
// repository root (for examples/lab).
func New(prefix, repo, spiagent, spictl, dir string) *Lab {
	t := netlab.New(prefix)
	mk := func(name, ns, cfg string) *Router {
		return &Router{Name: name, NS: ns, DataDir: filepath.Join(dir, name), Config: filepath.Join(repo, "examples/lab", cfg),
			bin: spiagent, logPath: filepath.Join(dir, name+".log")}
	}
	return &Lab{Topo: t, SpictlBin: spictl, Dir: dir,
		A: mk("routerA", t.RouterA, "router-a.json"),
		B: mk("routerB", t.RouterB, "router-b.json")}
}

// UseDataplane sets both routers' --dataplane (before Up).
func (l *Lab) UseDataplane(dp string) {
	l.A.Dataplane, l.B.Dataplane = dp, dp
	l.Routes = dp != "userspace"
}

// Up builds the namespaces and starts both agents (not yet configured).
func (l *Lab) Up(ctx context.Context) error {
	if err := l.Topo.Up(ctx); err != nil {
		return err
	}
	if l.Routes {
		if err := l.Topo.RouteLANs(ctx); err != nil {
			l.Down()
			return err
		}
	}
	for _, r := range []*Router{l.A, l.B} {
		if err := r.Start(ctx); err != nil {
			l.Down()
			return err
		}
	}
	return nil
}

// Down stops the agents and removes the namespaces. Safe to call twice.
func (l *Lab) Down() {
	for _, r := range []*Router{l.A, l.B} {
		r.Stop()
	}
	_ = l.Topo.Down(context.Background())
}

// Start runs spiagent in the router's namespace and connects to its gNMI.
func (r *Router) Start(ctx context.Context) error {
	if err := os.MkdirAll(r.DataDir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	dp := r.Dataplane
	if dp == "" {
		dp = "userspace"
	}
	cmd := exec.Command("ip", "netns", "exec", r.NS, r.bin, "run",
		"--data-dir", r.DataDir, "--dataplane", dp, "--tun", "spi0",
		"--gnmi-addr", gnmiAddr, "--insecure", "--lab")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so Stop reaches it and not us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: start spiagent: %w", r.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	if err := r.connect(ctx); err != nil {
		r.Stop()
		return fmt.Errorf("%s: %w\n%s", r.Name, err, r.Log())
	}
	return nil
}

// connect dials gNMI inside the namespace and waits until it answers.
func (r *Router) connect(ctx context.Context) error {
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := netlab.InNS(r.NS, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
	conn, err := grpc.NewClient("passthrough:///"+gnmiAddr, grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	c := gpb.NewGNMIClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = c.Capabilities(cctx, &gpb.CapabilityRequest{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || r.exited() {
			conn.Close()
			return fmt.Errorf("gNMI not answering: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.mu.Lock()
	r.conn, r.c = conn, c
	r.mu.Unlock()
	return nil
}

func (r *Router) exited() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		return true
	}
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Stop ends the agent with SIGTERM (SIGKILL after 10 s).
func (r *Router) Stop() { r.signal(syscall.SIGTERM, 10*time.Second) }

// Kill ends the agent with SIGKILL, as a crash or power loss would.
func (r *Router) Kill() { r.signal(syscall.SIGKILL, 5*time.Second) }

func (r *Router) signal(sig syscall.Signal, wait time.Duration) {
	r.mu.Lock()
	cmd, done, conn := r.cmd, r.done, r.conn
	r.cmd, r.conn, r.c = nil, nil, nil
	r.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	if cmd == nil || cmd.Process == nil {
		return
	}
	// The process group: `ip netns exec` and spiagent.
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-done:
	case <-time.After(wait):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Log returns the agent's log so far.
func (r *Router) Log() string {
	b, _ := os.ReadFile(r.logPath)
	return string(b)
}

// GNMI returns the router's gNMI client (plaintext, lab mode, through its
// namespace).
func (r *Router) GNMI() (gpb.GNMIClient, error) { return r.client() }

// PID is the agent's process id (0 when not running): `ip netns exec`
// execs spiagent in place, so the child is the agent itself.
func (r *Router) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// DataplaneInUse is the dataplane the agent says it started with (its
// "agent started" log line), or "" before that.
func (r *Router) DataplaneInUse() string {
	line := grepLine(r.Log(), "agent started")
	_, rest, ok := strings.Cut(line, "dataplane=")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, " ")
	return name
}

func (r *Router) client() (gpb.GNMIClient, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == nil {
		return nil, fmt.Errorf("%s: not running", r.Name)
	}
	return r.c, nil
}

// PushConfig replaces the router's whole configuration with its lab file,
// after applying edit (which may change the decoded JSON) if not nil.
func (r *Router) PushConfig(ctx context.Context, edit func(cfg map[string]any)) error {
	b, err := os.ReadFile(r.Config)
	if err != nil {
		return err
	}
	if edit != nil {
		var cfg map[string]any
		if err := json.Unmarshal(b, &cfg); err != nil {
			return err
		}
		edit(cfg)
		if b, err = json.Marshal(cfg); err != nil {
			return err
		}
	}
	return r.set(ctx, &gpb.SetRequest{Replace: []*gpb.Update{{
		Path: &gpb.Path{}, Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: b}},
	}}})
}

// SetRecovery turns invalid-spi-recovery on or off.
func (r *Router) SetRecovery(ctx context.Context, on bool) error {
	return r.set(ctx, &gpb.SetRequest{Update: []*gpb.Update{{
		Path: path("crypto", "isakmp", "config", "invalid-spi-recovery"),
		Val:  &gpb.TypedValue{Value: &gpb.TypedValue_BoolVal{BoolVal: on}},
	}}})
}

// ClearSAs runs clear-crypto-sa with isakmp; noNotify makes the black hole.
func (r *Router) ClearSAs(ctx context.Context, noNotify bool) error {
	in, _ := json.Marshal(map[string]any{"isakmp": true, "no-notify": noNotify})
	return r.set(ctx, &gpb.SetRequest{Update: []*gpb.Update{{
		Path: path("clear-crypto-sa"), Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: in}},
	}}})
}

func (r *Router) set(ctx context.Context, req *gpb.SetRequest) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Set(cctx, req); err != nil {
		return fmt.Errorf("%s: gNMI Set: %w", r.Name, err)
	}
	return nil
}

func path(elems ...string) *gpb.Path {
	p := &gpb.Path{}
	for _, e := range elems {
		p.Elem = append(p.Elem, &gpb.PathElem{Name: e})
	}
	return p
}

// Counters reads /crypto/invalid-spi/state as leaf name -> value.
func (r *Router) Counters(ctx context.Context) (map[string]uint64, error) {
	c, err := r.client()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.Get(cctx, &gpb.GetRequest{Path: []*gpb.Path{path("crypto", "invalid-spi", "state")},
		Type: gpb.GetRequest_STATE, Encoding: gpb.Encoding_JSON_IETF})
	if err != nil {
		return nil, fmt.Errorf("%s: gNMI Get: %w", r.Name, err)
	}
	out := map[string]uint64{}
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			var m map[string]any
			if err := json.Unmarshal(u.GetVal().GetJsonIetfVal(), &m); err != nil {
				return nil, err
			}
			flattenCounters(m, out)
		}
	}
	return out, nil
}

func flattenCounters(m map[string]any, out map[string]uint64) {
	for k, v := range m {
		k = k[strings.LastIndex(k, ":")+1:]
		switch x := v.(type) {
		case map[string]any:
			flattenCounters(x, out)
		case string:
			if n, err := strconv.ParseUint(x, 10, 64); err == nil {
				out[k] = n
			}
		case float64:
			out[k] = uint64(x)
		}
	}
}

// Spictl runs spictl against the router and returns its output.
func (l *Lab) Spictl(ctx context.Context, r *Router, args ...string) (string, error) {
	full := append([]string{"-a", gnmiAddr, "--insecure"}, args...)
	out, err := netlab.Exec(ctx, r.NS, l.SpictlBin, full...)
	return out, err
}

// StartFlow starts the host1 -> host2 UDP flow.
func (l *Lab) StartFlow() (*netlab.Flow, error) {
	return netlab.StartFlow(l.Topo.Host1, netlab.Host1Addr, l.Topo.Host2, netlab.Host2Addr)
}

// Build compiles spiagent and spictl from the repository into dir.
func Build(ctx context.Context, repo, dir string) (spiagent, spictl string, err error) {
	spiagent, spictl = filepath.Join(dir, "spiagent"), filepath.Join(dir, "spictl")
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+"/", "./cmd/spiagent", "./cmd/spictl")
	cmd.Dir, cmd.Stdout, cmd.Stderr = repo, &out, &out
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("go build: %w\n%s", err, out.String())
	}
	return spiagent, spictl, nil
}

// ErrNoRecovery is returned by WaitRecovered when traffic did not resume.
var ErrNoRecovery = errors.New("traffic did not resume")

// WaitRecovered waits until n packets sent after since have arrived.
func WaitRecovered(ctx context.Context, f *netlab.Flow, since time.Time, n int, timeout time.Duration) error {
	if netlab.WaitFor(ctx, timeout, 20*time.Millisecond, func() bool { return f.ReceivedSince(since) >= n }) {
		return nil
	}
	return ErrNoRecovery
}

// Narrator prints the demo's story; tests pass io.Discard.
type Narrator struct{ W io.Writer }

// Say prints one line.
func (n Narrator) Say(format string, args ...any) {
	fmt.Fprintf(n.W, format+"\n", args...)
}

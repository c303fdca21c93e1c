package scale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spiagent/spiagent/lab/netlab"
	"github.com/spiagent/spiagent/lab/seedlab"
)

// burstPort is where host2 listens for the burst's datagrams.
const burstPort = 5002

// Options parameterise one run.
type Options struct {
	N        int    // host pairs, crypto-map entries and tunnels (1..MaxPairs)
	Prefix   string // namespace prefix (at most 8 characters)
	Repo     string // repository root
	Spiagent string // the spiagent binary
	Dir      string // agents' data and logs
	Log      io.Writer

	BurstTimeout time.Duration // how long every tunnel may take (default 10 min)
	Window       time.Duration // idle and SAMPLE measurement windows (default 10 s)
	// SkipIdle skips the idle, SAMPLE, add-entry and Get measurements (a
	// test that only cares about the burst).
	SkipIdle bool
	// Dataplane is the agents' --dataplane ("userspace" when empty; "xfrm"
	// needs a kernel with ESP: the lab/qemu guest).
	Dataplane string
	// Remove measures, at the end, how long taking every tunnel down takes:
	// a Set back to the interfaces alone on both routers, until neither
	// shows an IPsec SA.
	Remove bool
}

// Result is what a run measured. CPU figures are user+system time of the
// agent process; fractions are of one core.
type Result struct {
	N          int
	Configure  time.Duration // Set of the whole configuration, routerA
	BringUp    time.Duration // first burst packet to every tunnel up on both routers
	UpA, UpB   int           // outbound IPsec SAs when the wait ended
	Delivered  int           // burst datagrams that reached host2
	CPUPerTunA time.Duration // routerA (initiator) CPU during bring-up, per tunnel
	CPUPerTunB time.Duration
	IdleA      float64 // routerA's CPU with nothing happening
	SampleA    float64 // routerA's CPU with one SAMPLE 1 s subscriber on /crypto/ipsec/sas
	SampleRate float64 // bytes per second sent to that subscriber
	AddEntry   time.Duration
	RSSEmpty   uint64        // routerA before any config
	RSSUp      uint64        // routerA with every tunnel up
	Dataplane  string        // what routerA runs
	Remove     time.Duration // Options.Remove: the Sets to every SA gone
	GetSAs     time.Duration
	GetSAsSize int
	// During the burst, routerA answered these (latencies sorted) and
	// failed these (timeouts or errors).
	BurstGets, BurstSets []time.Duration
	BurstFailures        []string
}

// RSSPerTunnel is routerA's memory per tunnel (config, SAs and telemetry).
func (r *Result) RSSPerTunnel() uint64 {
	if r.N == 0 || r.RSSUp < r.RSSEmpty {
		return 0
	}
	return (r.RSSUp - r.RSSEmpty) / uint64(r.N)
}

func (o *Options) defaults() error {
	if o.N < 1 || o.N > MaxPairs {
		return fmt.Errorf("scale: N %d out of range 1..%d", o.N, MaxPairs)
	}
	if o.Prefix == "" {
		o.Prefix = "sc"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.BurstTimeout <= 0 {
		o.BurstTimeout = 10 * time.Minute
	}
	if o.Window <= 0 {
		o.Window = 10 * time.Second
	}
	return nil
}

// Run builds the lab, measures, and tears the lab down.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	l := seedlab.New(o.Prefix, o.Repo, o.Spiagent, "", o.Dir)
	if o.Dataplane != "" {
		l.UseDataplane(o.Dataplane)
	}
	if err := l.Up(ctx); err != nil {
		return nil, err
	}
	defer l.Down()
	res := &Result{N: o.N, Dataplane: l.A.DataplaneInUse()}
	logf := func(format string, args ...any) {
		fmt.Fprintf(o.Log, "scale N=%d: "+format+"\n", append([]any{o.N}, args...)...)
	}
	var err error
	if _, res.RSSEmpty, err = procStat(l.A.PID()); err != nil {
		return nil, err
	}
	if err := addHosts(ctx, l.Topo, o.N); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := pushConfig(ctx, l.A, RouterJSON(o.N, true)); err != nil {
		return nil, err
	}
	res.Configure = time.Since(t0)
	if err := pushConfig(ctx, l.B, RouterJSON(o.N, false)); err != nil {
		return nil, err
	}
	logf("configured both routers (routerA in %v)", res.Configure.Round(time.Millisecond))
	if err := burst(ctx, l, o, res, logf); err != nil {
		return res, err
	}
	if !o.SkipIdle {
		if err := measureIdle(ctx, l, o, res, logf); err != nil {
			return res, err
		}
	}
	if o.Remove {
		return res, remove(ctx, l, o, res, logf)
	}
	return res, nil
}

// remove takes every tunnel down at once (the crypto map goes from both
// routers) and waits until neither shows an IPsec SA.
func remove(ctx context.Context, l *seedlab.Lab, o Options, res *Result, logf func(string, ...any)) error {
	t := time.Now()
	for _, r := range []*seedlab.Router{l.A, l.B} {
		if err := pushConfig(ctx, r, InterfacesJSON(r == l.A)); err != nil {
			return err
		}
	}
	deadline := t.Add(o.BurstTimeout)
	// No SA at all is NotFound for the Get.
	gone := func(n int, err error) bool { return (err == nil && n == 0) || status.Code(err) == codes.NotFound }
	for {
		a, errA := countOutbound(ctx, l.A)
		b, errB := countOutbound(ctx, l.B)
		if gone(a, errA) && gone(b, errB) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("scale: %d and %d outbound SAs left %v after removing the crypto map", a, b, o.BurstTimeout)
		}
		time.Sleep(time.Second)
	}
	res.Remove = time.Since(t)
	logf("every tunnel down in %v", res.Remove.Round(time.Millisecond))
	return nil
}

func pushConfig(ctx context.Context, r *seedlab.Router, cfg []byte) error {
	return set(ctx, r, 10*time.Minute, &gpb.SetRequest{Replace: []*gpb.Update{{Path: &gpb.Path{}, Val: ietf(cfg)}}})
}

func ietf(b []byte) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: b}}
}

func set(ctx context.Context, r *seedlab.Router, timeout time.Duration, req *gpb.SetRequest) error {
	c, err := r.GNMI()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := c.Set(cctx, req); err != nil {
		return fmt.Errorf("%s: gNMI Set: %w", r.Name, err)
	}
	return nil
}

// addHosts gives host1 and host2 the addresses the first n pairs use.
func addHosts(ctx context.Context, t *netlab.Topology, n int) error {
	srcs, dsts := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for i := 0; i < n; i++ {
		s, d := Pair(i)
		srcs[s], dsts[d] = true, true
	}
	for ns, set := range map[string]map[netip.Addr]bool{t.Host1: srcs, t.Host2: dsts} {
		var b strings.Builder
		for a := range set {
			if a.String() == netlab.Host1Addr || a.String() == netlab.Host2Addr {
				continue // netlab gave the hosts .10 already
			}
			fmt.Fprintf(&b, "addr add %s/24 dev eth0\n", a)
		}
		if err := netlab.Batch(ctx, ns, b.String()); err != nil {
			return err
		}
	}
	return nil
}

// burst sends one datagram per pair at once and waits for every tunnel,
// while probing that routerA keeps answering Gets and Sets.
func burst(ctx context.Context, l *seedlab.Lab, o Options, res *Result, logf func(string, ...any)) error {
	rx, err := netlab.ListenUDP(l.Topo.Host2, fmt.Sprintf("0.0.0.0:%d", burstPort))
	if err != nil {
		return err
	}
	defer rx.Close()
	var delivered sync.WaitGroup
	var got int
	var gotMu sync.Mutex
	delivered.Add(1)
	go func() {
		defer delivered.Done()
		buf := make([]byte, 64)
		for {
			if _, _, err := rx.ReadFromUDP(buf); err != nil {
				return
			}
			gotMu.Lock()
			got++
			gotMu.Unlock()
		}
	}()
	cpuA0, _, _ := procStat(l.A.PID())
	cpuB0, _, _ := procStat(l.B.PID())
	probeCtx, stopProbe := context.WithCancel(ctx)
	probed := make(chan struct{})
	go func() { defer close(probed); probe(probeCtx, l.A, res) }()
	start := time.Now()
	if err := send(l.Topo.Host1, o.N); err != nil {
		stopProbe()
		return err
	}
	deadline := start.Add(o.BurstTimeout)
	for {
		res.UpA, _ = countOutbound(ctx, l.A)
		res.UpB, _ = countOutbound(ctx, l.B)
		if res.UpA >= o.N && res.UpB >= o.N {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		logf("%v: %d/%d tunnels up on routerA, %d on routerB", time.Since(start).Round(time.Second), res.UpA, o.N, res.UpB)
		time.Sleep(time.Second)
	}
	res.BringUp = time.Since(start)
	stopProbe()
	<-probed
	cpuA1, _, _ := procStat(l.A.PID())
	cpuB1, _, _ := procStat(l.B.PID())
	res.CPUPerTunA = (cpuA1 - cpuA0) / time.Duration(o.N)
	res.CPUPerTunB = (cpuB1 - cpuB0) / time.Duration(o.N)
	time.Sleep(time.Second) // datagrams queued during the last installs
	rx.Close()
	delivered.Wait()
	res.Delivered = got
	sort.Slice(res.BurstGets, func(i, j int) bool { return res.BurstGets[i] < res.BurstGets[j] })
	sort.Slice(res.BurstSets, func(i, j int) bool { return res.BurstSets[i] < res.BurstSets[j] })
	if res.UpA < o.N || res.UpB < o.N {
		return fmt.Errorf("scale: only %d (routerA) and %d (routerB) of %d tunnels up after %v", res.UpA, res.UpB, o.N, o.BurstTimeout)
	}
	logf("all %d tunnels up in %v", o.N, res.BringUp.Round(time.Millisecond))
	for i, f := range res.BurstFailures {
		if i == 5 {
			logf("... and %d more failures", len(res.BurstFailures)-5)
			break
		}
		logf("probe failure: %s", f)
	}
	return nil
}

// send sends one datagram from each pair's source to its destination,
// from host1, as fast as the sockets take them.
func send(ns string, n int) error {
	return netlab.InNS(ns, func() error {
		socks := map[netip.Addr]*net.UDPConn{}
		defer func() {
			for _, c := range socks {
				c.Close()
			}
		}()
		for i := 0; i < n; i++ {
			src, dst := Pair(i)
			c := socks[src]
			if c == nil {
				var err error
				if c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))); err != nil {
					return fmt.Errorf("scale: bind %v: %w", src, err)
				}
				socks[src] = c
			}
			if _, err := c.WriteToUDPAddrPort([]byte("scale"), netip.AddrPortFrom(dst, burstPort)); err != nil {
				return fmt.Errorf("scale: send %v -> %v: %w", src, dst, err)
			}
		}
		return nil
	})
}

// probe Gets one leaf and Sets another on r every 500 ms until ctx ends,
// recording the latencies (10 s at most each; longer is a failure).
func probe(ctx context.Context, r *seedlab.Router, res *Result) {
	c, err := r.GNMI()
	if err != nil {
		res.BurstFailures = append(res.BurstFailures, err.Error())
		return
	}
	enc := elems("crypto", "isakmp", "policies", "policy", "config", "encryption")
	enc.Elem[3].Key = map[string]string{"priority": "10"}
	getReq := &gpb.GetRequest{Path: []*gpb.Path{enc}, Encoding: gpb.Encoding_JSON_IETF}
	desc := elems("crypto", "interfaces", "interface", "config", "description")
	desc.Elem[2].Key = map[string]string{"name": "lan0"}
	for i := 0; ctx.Err() == nil; i++ {
		t := time.Now()
		gctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.Get(gctx, getReq)
		cancel()
		if err != nil {
			res.BurstFailures = append(res.BurstFailures, "Get: "+err.Error())
		} else {
			res.BurstGets = append(res.BurstGets, time.Since(t))
		}
		t = time.Now()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = c.Set(sctx, &gpb.SetRequest{Update: []*gpb.Update{{Path: desc, Val: &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: "probe " + strconv.Itoa(i)}}}}})
		cancel()
		if err != nil {
			res.BurstFailures = append(res.BurstFailures, "Set: "+err.Error())
		} else {
			res.BurstSets = append(res.BurstSets, time.Since(t))
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func elems(names ...string) *gpb.Path {
	p := &gpb.Path{}
	for _, n := range names {
		p.Elem = append(p.Elem, &gpb.PathElem{Name: n})
	}
	return p
}

// countOutbound counts r's outbound IPsec SAs.
func countOutbound(ctx context.Context, r *seedlab.Router) (int, error) {
	c, err := r.GNMI()
	if err != nil {
		return 0, err
	}
	p := elems("crypto", "ipsec", "sas", "sa", "state", "direction")
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := c.Get(cctx, &gpb.GetRequest{Path: []*gpb.Path{p}, Type: gpb.GetRequest_STATE, Encoding: gpb.Encoding_JSON_IETF})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, no := range resp.GetNotification() {
		for _, u := range no.GetUpdate() {
			n += strings.Count(string(u.GetVal().GetJsonIetfVal()), "outbound")
			if u.GetVal().GetStringVal() == "outbound" {
				n++
			}
		}
	}
	return n, nil
}

// measureIdle measures routerA at rest, with a SAMPLE subscriber, adding
// one entry, and reading the whole SA table.
func measureIdle(ctx context.Context, l *seedlab.Lab, o Options, res *Result, logf func(string, ...any)) error {
	time.Sleep(2 * time.Second)
	var err error
	if res.IdleA, err = cpuOver(ctx, l.A.PID(), o.Window); err != nil {
		return err
	}
	_, res.RSSUp, _ = procStat(l.A.PID())
	logf("idle: %.1f%% of a core, RSS %d KiB", 100*res.IdleA, res.RSSUp>>10)
	if res.SampleA, res.SampleRate, err = sampleCost(ctx, l.A, o.Window); err != nil {
		return err
	}
	logf("SAMPLE 1 s subscriber on /crypto/ipsec/sas: %.1f%% of a core, %.0f bytes/s", 100*res.SampleA, res.SampleRate)
	crypto := elems("crypto")
	t := time.Now()
	if err := set(ctx, l.A, time.Minute, &gpb.SetRequest{Update: []*gpb.Update{{Path: crypto, Val: ietf(AddEntryJSON(o.N, true))}}}); err != nil {
		return err
	}
	res.AddEntry = time.Since(t)
	c, err := l.A.GNMI()
	if err != nil {
		return err
	}
	t = time.Now()
	resp, err := c.Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{elems("crypto", "ipsec", "sas")}, Type: gpb.GetRequest_STATE, Encoding: gpb.Encoding_JSON_IETF})
	if err != nil {
		return fmt.Errorf("scale: Get /crypto/ipsec/sas: %w", err)
	}
	res.GetSAs = time.Since(t)
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			res.GetSAsSize += len(u.GetVal().GetJsonIetfVal())
		}
	}
	logf("add one entry: %v; Get /crypto/ipsec/sas: %v (%d bytes)", res.AddEntry.Round(time.Microsecond), res.GetSAs.Round(time.Millisecond), res.GetSAsSize)
	return nil
}

// sampleCost runs one STREAM SAMPLE subscription (1 s, suppress_redundant)
// on /crypto/ipsec/sas for window and measures the agent's CPU and the
// bytes it sent.
func sampleCost(ctx context.Context, r *seedlab.Router, window time.Duration) (float64, float64, error) {
	c, err := r.GNMI()
	if err != nil {
		return 0, 0, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sc, err := c.Subscribe(sctx)
	if err != nil {
		return 0, 0, err
	}
	req := &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
		Mode: gpb.SubscriptionList_STREAM, Encoding: gpb.Encoding_JSON_IETF,
		Subscription: []*gpb.Subscription{{Path: elems("crypto", "ipsec", "sas"), Mode: gpb.SubscriptionMode_SAMPLE,
			SampleInterval: uint64(time.Second), SuppressRedundant: true}},
	}}}
	if err := sc.Send(req); err != nil {
		return 0, 0, err
	}
	// Wait for the initial sync, then measure.
	for {
		m, err := sc.Recv()
		if err != nil {
			return 0, 0, fmt.Errorf("scale: subscribe: %w", err)
		}
		if m.GetSyncResponse() {
			break
		}
	}
	var bytes int64
	var mu sync.Mutex
	go func() {
		for {
			m, err := sc.Recv()
			if err != nil {
				return
			}
			mu.Lock()
			bytes += int64(protoSize(m))
			mu.Unlock()
		}
	}()
	cpu, err := cpuOver(ctx, r.PID(), window)
	mu.Lock()
	defer mu.Unlock()
	return cpu, float64(bytes) / window.Seconds(), err
}

func protoSize(m *gpb.SubscribeResponse) int {
	n := 0
	for _, u := range m.GetUpdate().GetUpdate() {
		n += len(u.GetVal().GetJsonIetfVal()) + len(u.GetVal().GetStringVal()) + 8
	}
	return n
}

// cpuOver is the fraction of one core pid used during d.
func cpuOver(ctx context.Context, pid int, d time.Duration) (float64, error) {
	c0, _, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	c1, _, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	return float64(c1-c0) / float64(time.Since(t0)), nil
}

// clockTick is USER_HZ, the unit of /proc/PID/stat times on Linux.
const clockTick = 10 * time.Millisecond

// procStat reads a process's CPU time (user+system) and resident memory.
func procStat(pid int) (cpu time.Duration, rss uint64, err error) {
	if pid <= 0 {
		return 0, 0, errors.New("scale: agent not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name (which may contain spaces).
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 22 {
		return 0, 0, fmt.Errorf("scale: /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64) // field 14 of stat
	st, _ := strconv.ParseUint(f[12], 10, 64)
	pages, _ := strconv.ParseUint(f[21], 10, 64) // field 24: rss in pages
	return time.Duration(ut+st) * clockTick, pages * uint64(os.Getpagesize()), nil
}

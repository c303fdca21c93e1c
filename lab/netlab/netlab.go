// Package netlab builds the seed's four-node topology in Linux network
// namespaces, for the demo and the end-to-end tests:
//
//	host1 198.51.100.10 -- lan0 [routerA] wan0 ==== wan0 [routerB] lan0 -- 203.0.113.10 host2
//
// Only the hosts' addresses and routes are set here. The routers' interface
// addresses come from the model: the agent applies them (that is part of what
// is tested). Only TEST-NET addresses are used, only inside namespaces this
// package created, and Down removes everything it made, even after a partial
// Up. It needs root and iproute2.
package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// Addresses of the lab (TEST-NET-1, -2 and -3 only).
const (
	Host1Addr    = "198.51.100.10"
	RouterALAN   = "198.51.100.1"
	RouterAWAN   = "192.0.2.1"
	RouterBWAN   = "192.0.2.2"
	RouterBLAN   = "203.0.113.1"
	Host2Addr    = "203.0.113.10"
	host1Network = "198.51.100.0/24"
	host2Network = "203.0.113.0/24"
)

// Topology names the four namespaces. Prefix keeps concurrent labs apart.
type Topology struct {
	Prefix                         string
	Host1, RouterA, RouterB, Host2 string
	created                        []string
}

// New returns the names for a lab with the given prefix (at most 8
// characters, e.g. "sd" for the demo, "e2e3" in a test).
func New(prefix string) *Topology {
	return &Topology{
		Prefix:  prefix,
		Host1:   prefix + "H1",
		RouterA: prefix + "A",
		RouterB: prefix + "B",
		Host2:   prefix + "H2",
	}
}

// ip runs iproute2, returning its output in the error.
func ip(ctx context.Context, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Exec runs a command inside namespace ns and returns its combined output.
func Exec(ctx context.Context, ns string, name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("in %s: %s %s: %w: %s", ns, name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Up creates the namespaces, links and host addresses. On error it removes
// what it made.
func (t *Topology) Up(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = t.Down(context.Background())
		}
	}()
	for _, ns := range []string{t.Host1, t.RouterA, t.RouterB, t.Host2} {
		// A namespace left behind by a killed run is ours: remove it.
		_ = ip(ctx, "netns", "del", ns)
		if err := ip(ctx, "netns", "add", ns); err != nil {
			return err
		}
		t.created = append(t.created, ns)
		if err := ip(ctx, "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	links := []struct{ a, aName, b, bName string }{
		{t.Host1, "eth0", t.RouterA, "lan0"},
		{t.RouterA, "wan0", t.RouterB, "wan0"},
		{t.RouterB, "lan0", t.Host2, "eth0"},
	}
	for i, l := range links {
		tmpA, tmpB := fmt.Sprintf("%sv%da", t.Prefix, i), fmt.Sprintf("%sv%db", t.Prefix, i)
		if err := ip(ctx, "link", "add", tmpA, "type", "veth", "peer", "name", tmpB); err != nil {
			return err
		}
		for _, end := range []struct{ tmp, ns, name string }{{tmpA, l.a, l.aName}, {tmpB, l.b, l.bName}} {
			if err := ip(ctx, "link", "set", end.tmp, "netns", end.ns); err != nil {
				return err
			}
			if err := ip(ctx, "-n", end.ns, "link", "set", end.tmp, "name", end.name); err != nil {
				return err
			}
			if err := ip(ctx, "-n", end.ns, "link", "set", end.name, "up"); err != nil {
				return err
			}
		}
	}
	steps := [][]string{
		{"-n", t.Host1, "addr", "add", Host1Addr + "/24", "dev", "eth0"},
		{"-n", t.Host1, "route", "add", "default", "via", RouterALAN},
		{"-n", t.Host2, "addr", "add", Host2Addr + "/24", "dev", "eth0"},
		{"-n", t.Host2, "route", "add", "default", "via", RouterBLAN},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	for _, r := range []string{t.RouterA, t.RouterB} {
		if _, err := Exec(ctx, r, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
			return err
		}
	}
	return nil
}

// Down deletes every namespace of the topology (and with them their links
// and any process's network view). It reports the first failure but tries
// them all.
func (t *Topology) Down(ctx context.Context) error {
	var errs []error
	for _, ns := range []string{t.Host1, t.RouterA, t.RouterB, t.Host2} {
		if err := ip(ctx, "netns", "del", ns); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
	}
	t.created = nil
	return errors.Join(errs...)
}

// RouteLANs gives each router the operator's route to the far LAN, via the
// peer router's WAN address (onlink: the agents put the WAN addresses on
// later), as the seed's routers have (`ip route ...`). Metric 100, so that
// a dataplane's own preferred route (the userspace one's TUN route, metric
// 0) takes over without replacing it. The kernel's XFRM needs these routes
// to forward anything: it applies policy to routed traffic.
func (t *Topology) RouteLANs(ctx context.Context) error {
	for _, s := range [][]string{
		{"-n", t.RouterA, "route", "add", host2Network, "via", RouterBWAN, "dev", "wan0", "onlink", "metric", "100"},
		{"-n", t.RouterB, "route", "add", host1Network, "via", RouterAWAN, "dev", "wan0", "onlink", "metric", "100"},
	} {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// InNS runs f on a fresh OS thread switched into namespace ns. Sockets
// created by f stay in ns after it returns. The thread is never reused: its
// goroutine exits still locked, so the runtime destroys it.
func InNS(ns string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // no unlock: the thread dies with the goroutine
		h, err := netns.GetFromName(ns)
		if err != nil {
			done <- fmt.Errorf("netlab: netns %s: %w", ns, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			done <- fmt.Errorf("netlab: enter %s: %w", ns, err)
			return
		}
		done <- f()
	}()
	return <-done
}

// ListenUDP opens a UDP socket bound to addr inside namespace ns.
func ListenUDP(ns, addr string) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := InNS(ns, func() error {
		ua, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", ua)
		return err
	})
	return c, err
}

// WaitFor polls cond every interval until it returns true or the timeout
// passes.
func WaitFor(ctx context.Context, timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(interval):
		}
	}
}

// Batch runs iproute2 commands (one per line, as for `ip -batch`) inside
// namespace ns: thousands of addresses in one process.
func Batch(ctx context.Context, ns, cmds string) error {
	if strings.TrimSpace(cmds) == "" {
		return nil
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(cmds)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip -n %s -batch: %w: %s", ns, err, strings.TrimSpace(out.String()))
	}
	return nil
}

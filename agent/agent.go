// Package agent wires spiagent together: the datastore, the IKE engine on
// its UDP transport, an IPsec dataplane, invalid SPI recovery, and the
// operational-state tree that gNMI reads. Its reconciler (an
// store.Applier) turns each committed configuration diff into engine
// operations; its event loop turns engine outputs (negotiated SAs, deletes,
// notifications) and dataplane events (acquires, expiries, invalid SPIs)
// into dataplane operations, IKE exchanges and telemetry.
//
// The agent is the one place where the generated YANG structs meet the
// engines' types (through package intent and convert.go). The engines do
// not know each other or the model.
package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/spiagent/spiagent/agent/gnmi"
	"github.com/spiagent/spiagent/agent/intent"
	"github.com/spiagent/spiagent/agent/recovery"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ike"
	"github.com/spiagent/spiagent/ike/transport"
	"github.com/spiagent/spiagent/ipsec"
	"github.com/spiagent/spiagent/ipsec/userspace"
	"github.com/spiagent/spiagent/ipsec/xfrm"
	"github.com/spiagent/spiagent/store"
)

// Config configures an Agent.
type Config struct {
	// Dataplane is "auto" (XFRM when the kernel accepts an ESP state,
	// userspace otherwise), "userspace" or "xfrm".
	Dataplane string
	// TUNName names the userspace dataplane's TUN device ("spi0").
	TUNName string
	// IKEPort and NATTPort are the local IKE ports (500 and 4500).
	IKEPort, NATTPort uint16
	// StateInterval is how often counters are refreshed in the state
	// tree (1 s).
	StateInterval time.Duration
	Log           *slog.Logger
}

// Agent is a running spiagent.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	store *store.Store
	state *telemetry.Tree
	dp    ipsec.Dataplane
	ike   *transport.Transport
	rec   *recovery.Limiter

	ikeOut chan ike.Output
	done   chan struct{}
	wg     sync.WaitGroup

	// needsFwd: the dataplane (XFRM) wants fwd policies for forwarded
	// decapsulated traffic; the userspace one checks inbound policy itself.
	needsFwd bool

	// prepared holds the inbound SAs installed for Quick Modes this side
	// answered, until their Install or Delete; installed what each Install
	// did in the dataplane, until the loop takes it (install.go). The IKE
	// engine's goroutine fills them; prepMu guards them.
	prepMu    sync.Mutex
	prepared  map[uint64][]ipsec.SAKey
	installed map[uint64]installResult

	mu       sync.Mutex
	cur      *intent.Intent
	applied  applied
	children map[uint64]*child // by IKE child ID
	connIDs  map[[16]byte]uint32
	nextConn uint32
	notifies notifyStats
	// mirrored is the config last mirrored into the state tree.
	mirrored *gen.Device
}

// child is a negotiated SA bundle installed in the dataplane.
type child struct {
	sa   ike.ChildSA // without keys
	keys []ipsec.SAKey
	tun  *intent.Tunnel
}

// notifyStats counts INVALID-SPI notifications received.
type notifyStats struct {
	received, authenticated, unauthenticated, sasDeleted, failed uint64
}

// New opens the dataplane and the IKE transport and registers the
// reconciler with the store. It does not apply the configuration: Start
// does.
func New(cfg Config, st *store.Store, state *telemetry.Tree) (*Agent, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.TUNName == "" {
		cfg.TUNName = "spi0"
	}
	if cfg.StateInterval <= 0 {
		cfg.StateInterval = time.Second
	}
	a := &Agent{
		cfg: cfg, log: cfg.Log, store: st, state: state,
		ikeOut:    make(chan ike.Output, 1), // the transport merges output while the loop is busy
		prepared:  map[uint64][]ipsec.SAKey{},
		installed: map[uint64]installResult{},
		done:      make(chan struct{}),
		children:  make(map[uint64]*child),
		connIDs:   make(map[[16]byte]uint32),
		applied:   newApplied(),
		cur:       &intent.Intent{},
	}
	a.rec = recovery.New(recovery.Config{}, func(netip.Addr) bool { return false }, a.log)
	dp, err := a.openDataplane()
	if err != nil {
		return nil, err
	}
	a.dp = dp
	if f, ok := dp.(ipsec.ForwardPolicies); ok {
		a.needsFwd = f.NeedsForwardPolicies()
	}
	tcfg := transport.Config{BeforeSend: a.applyDataplane, OnOutput: a.onIKEOutput}
	esp, espInUDP := dp.(ipsec.ESPInUDPHandler)
	if espInUDP {
		tcfg.ESPHandler = esp.HandleESPInUDP
	}
	if k, ok := dp.(ipsec.UDPEncapSocket); ok {
		// The kernel decapsulates ESP-in-UDP arriving on IKE's NAT-T
		// socket and passes IKE (behind the non-ESP marker) through.
		tcfg.OnSocket = func(c *net.UDPConn, natt bool) error {
			if !natt {
				return nil
			}
			return k.EnableUDPEncap(c)
		}
	}
	base := ike.Config{Port: cfg.IKEPort, NATTPort: cfg.NATTPort, Log: a.log.With("component", "ike")}
	t, err := transport.New(base, tcfg, rand.Reader)
	if err != nil {
		dp.Close()
		return nil, fmt.Errorf("agent: IKE transport: %w", err)
	}
	a.ike = t
	if espInUDP {
		esp.SetUDPSender(espSender{t})
	}
	return a, nil
}

// espSender adapts the IKE transport to the userspace dataplane's
// ESP-in-UDP sender.
type espSender struct{ t *transport.Transport }

func (s espSender) SendESPInUDP(b []byte, src, dst netip.AddrPort) error {
	return s.t.SendESP(b, src, dst)
}

func (a *Agent) openDataplane() (ipsec.Dataplane, error) {
	choice := a.cfg.Dataplane
	if choice == "" || choice == "auto" {
		ok, why := xfrm.Supported()
		if ok {
			choice = "xfrm"
			a.log.Info("dataplane: xfrm (the kernel accepts ESP states)")
		} else {
			choice = "userspace"
			a.log.Info("dataplane: userspace (the kernel cannot do ESP)", "reason", why)
		}
	}
	switch choice {
	case "xfrm":
		d, err := xfrm.New(xfrm.WithLogger(a.log.With("component", "xfrm")))
		if err != nil {
			return nil, fmt.Errorf("agent: xfrm dataplane: %w", err)
		}
		return d, nil
	case "userspace":
		d, err := userspace.Open(a.cfg.TUNName, 0, userspace.Config{Logger: a.log.With("component", "userspace")})
		if err != nil {
			return nil, fmt.Errorf("agent: userspace dataplane: %w", err)
		}
		return d, nil
	}
	return nil, fmt.Errorf("agent: unknown dataplane %q (auto, userspace or xfrm)", choice)
}

// Dataplane names the dataplane in use.
func (a *Agent) Dataplane() string { return a.dp.Name() }

// Start removes stale dataplane state the agent owns, applies the running
// configuration, registers the reconciler for future commits, and starts
// the event loops.
func (a *Agent) Start(ctx context.Context) error {
	if err := a.dp.Flush(ctx); err != nil {
		return fmt.Errorf("agent: flush stale dataplane state: %w", err)
	}
	snap := a.store.Running()
	if err := a.Apply(ctx, nil, snap, nil); err != nil {
		return fmt.Errorf("agent: apply the persisted configuration (commit %d): %w", snap.ID, err)
	}
	a.store.SetApplier(a)
	a.wg.Add(2)
	go a.loop()
	go a.stateLoop()
	a.log.Info("agent started", "dataplane", a.dp.Name(), "commit", snap.ID)
	return nil
}

// Close stops the agent: the IKE transport, the dataplane and the loops.
func (a *Agent) Close() error {
	close(a.done)
	err := errors.Join(a.ike.Close(), a.dp.Close())
	a.wg.Wait()
	return err
}

// loop handles IKE outputs and dataplane events, one at a time.
func (a *Agent) loop() {
	defer a.wg.Done()
	events := a.dp.Events()
	for {
		select {
		case <-a.done:
			return
		case o := <-a.ikeOut:
			a.handleIKE(o)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			a.handleDataplane(ev)
			events = a.drainDataplane(events)
		}
	}
}

// drainDataplane handles the dataplane events already waiting (a burst of
// acquires: each is cheap, while every IKE output costs a telemetry
// update), up to a bound, and returns the channel (nil once closed).
func (a *Agent) drainDataplane(events <-chan ipsec.Event) <-chan ipsec.Event {
	for range 4096 {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			a.handleDataplane(ev)
		default:
			return events
		}
	}
	return events
}

var _ gnmi.Operations = (*Agent)(nil)
var _ store.Applier = (*Agent)(nil)

// Package userspace is spiagent's IPsec dataplane in Go: ESP (RFC 4303)
// and AH (RFC 4302), tunnel and transport mode, AH+ESP bundles, anti-replay,
// lifetimes, acquires and invalid-SPI detection, for kernels without ESP.
//
// Cleartext comes from a TUN device (Device): the dataplane routes the
// destination prefixes of its outbound protect policies into the TUN
// (Router), encrypts what it reads there and sends it as raw ESP/AH IPv4
// packets (Link) or as ESP-in-UDP (UDPSender, RFC 3948). Ciphertext comes
// in through HandleIP (raw ESP/AH IPv4 packets, e.g. from package rawnet)
// and HandleESPInUDP (from the IKE engine's port-4500 socket, or from
// ListenESPInUDP); decapsulated packets are written to the TUN, so the
// kernel forwards them on.
//
// It implements ipsec.Dataplane and imports nothing of spiagent beyond
// alg, ipsec, ipsec/ipv4hdr (header offsets) and its own subpackages (esp,
// ah, integ, replay, invalidspi, tun, rawnet, batch). The fakes in tuntest and wiretest let tests run two
// dataplanes in memory. The packet path allocates nothing per packet;
// receive is batched (recvmmsg) and, with a TUN that supports offload,
// TCP is segmented (TSO) and coalesced (GRO) in the dataplane.
//
// Limits: IPv4 only (outer and inner); no ESN; no IP fragment reassembly of
// its own (raw sockets get reassembled packets from the kernel); AH refuses
// IPv4 options; traffic routed into the TUN that matches a bypass policy or
// no policy is dropped and counted (bypass traffic should not be routed into
// the TUN).
package userspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiagent/spiagent/ipsec"
	"github.com/spiagent/spiagent/ipsec/userspace/invalidspi"
)

// Device is the cleartext side: a TUN device (package tun) or a fake
// (package tuntest). Read returns one IPv4 packet.
type Device interface {
	Name() string
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	Close() error
}

// Link sends ciphertext: whole IPv4 packets carrying ESP or AH, with the
// outer header built by the dataplane (as a raw socket with IP_HDRINCL
// sends them).
type Link interface {
	Send(pkt []byte) error
}

// Router installs routes for the destination prefixes of outbound protect
// policies into the TUN, so that the kernel hands that traffic to the
// dataplane.
type Router interface {
	AddRoute(dst netip.Prefix) error
	DelRoute(dst netip.Prefix) error
}

// Config configures a Dataplane. Zero fields take the defaults in brackets.
type Config struct {
	TUN    Device          // cleartext; nil for a receive-only dataplane
	Link   Link            // raw ESP/AH out; nil drops them (counted)
	UDP    ipsec.UDPSender // ESP-in-UDP out; can be set later with SetUDPSender
	Router Router          // routes into the TUN; nil installs none

	Logger *slog.Logger     // [slog.Default()]
	Now    func() time.Time // clock [time.Now]

	// EventQueue bounds the invalid-SPI events waiting for the Events
	// reader [256]; acquires and expiries are coalesced per key and never
	// dropped (ipsec.EventQueue).
	EventQueue int
	// Acquires: one pending acquire per (policy, peer), so at most one per
	// outbound protect policy and peer. A flow that keeps sending raises it
	// again every AcquireRetry [1s] while its SAs are missing (the engine
	// decides whether to negotiate again); the first AcquireQueue [4]
	// packets, AcquireBytes [4 MiB] over all acquires, wait for the SAs; a
	// pending acquire not raised for AcquireExpiry [30s] is dropped with its
	// packets.
	AcquireRetry  time.Duration
	AcquireQueue  int
	AcquireBytes  int
	AcquireExpiry time.Duration
	SPIReserve    time.Duration // how long AllocSPI holds an SPI [5m]
	// SweepInterval is how often time lifetimes, acquires and SPI
	// reservations are checked [1s]; negative: never (tests call Sweep).
	SweepInterval time.Duration
	InvalidSPI    invalidspi.Config // its Now defaults to Now
}

func (c *Config) defaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.EventQueue <= 0 {
		c.EventQueue = 256
	}
	if c.AcquireRetry <= 0 {
		c.AcquireRetry = time.Second
	}
	if c.AcquireQueue <= 0 {
		c.AcquireQueue = 4
	}
	if c.AcquireBytes <= 0 {
		c.AcquireBytes = 4 << 20
	}
	if c.AcquireExpiry <= 0 {
		c.AcquireExpiry = 30 * time.Second
	}
	if c.SPIReserve <= 0 {
		c.SPIReserve = 5 * time.Minute
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = time.Second
	}
	if c.InvalidSPI.Now == nil {
		c.InvalidSPI.Now = c.Now
	}
}

// Stats are dataplane-wide counters (per-SA ones are in Counters).
type Stats struct {
	OutPackets, InPackets uint64 // sent encrypted / delivered decrypted
	NoPolicy              uint64 // read from the TUN, matched no policy
	Bypass, Discard       uint64 // matched a bypass / discard policy
	AcquireQueued         uint64 // held for an SA under negotiation
	AcquireDropped        uint64 // no room in an acquire queue
	Malformed             uint64 // not a whole IPv4 packet, fragments, bad headers
	NotIPsec              uint64 // HandleIP got something other than ESP/AH
	PolicyMismatch        uint64 // decapsulated, but inbound policy refused it
	SendErrors            uint64 // Link/UDP/TUN writes that failed
	EventsDropped         uint64 // invalid-SPI events over EventQueue waiting for the reader
	EventsCoalesced       uint64 // events that joined one with their key still waiting
	InvalidSPI            invalidspi.Stats
}

type stats struct {
	outPackets, inPackets, noPolicy, bypass, discard atomic.Uint64
	acqQueued, acqDropped, malformed, notIPsec       atomic.Uint64
	policyMismatch, sendErrors                       atomic.Uint64
}

// Dataplane is the userspace ipsec.Dataplane.
type Dataplane struct {
	cfg     Config
	log     *slog.Logger
	invalid *invalidspi.Detector
	stats   stats

	mu       sync.Mutex // serialises changes to sad, spd, routes, reserved
	sad      *sadTable  // read by the packet path without the lock
	spd      *spd       // idem
	routes   map[netip.Prefix]int
	reserved map[uint32]time.Time

	udp atomic.Pointer[udpSenderBox]

	acqMu    sync.Mutex
	acq      map[acqKey]*acqEntry
	acqByOut map[outKey]map[acqKey]struct{} // pending acquires by the outbound SAs that complete them
	acqBytes int

	ipID atomic.Uint32

	events *ipsec.EventQueue

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
	closers   []io.Closer // what Open opened besides the TUN
}

type udpSenderBox struct{ ipsec.UDPSender }

var _ ipsec.Dataplane = (*Dataplane)(nil)

// New builds a dataplane and starts its TUN reader and lifetime sweeper.
func New(cfg Config) (*Dataplane, error) {
	cfg.defaults()
	d := &Dataplane{
		cfg:      cfg,
		log:      cfg.Logger.With("dataplane", "userspace"),
		invalid:  invalidspi.New(cfg.InvalidSPI),
		routes:   map[netip.Prefix]int{},
		reserved: map[uint32]time.Time{},
		acq:      map[acqKey]*acqEntry{},
		acqByOut: map[outKey]map[acqKey]struct{}{},
		sad:      newSADTable(),
		spd:      newSPD(),
		events:   ipsec.NewEventQueue(cfg.EventQueue),
		done:     make(chan struct{}),
	}
	if cfg.UDP != nil {
		d.SetUDPSender(cfg.UDP)
	}
	if cfg.TUN != nil {
		d.wg.Add(1)
		go d.readTUN()
	}
	if cfg.SweepInterval > 0 {
		d.wg.Add(1)
		go d.sweeper()
	}
	return d, nil
}

// Name is "userspace".
func (d *Dataplane) Name() string { return "userspace" }

// SetUDPSender sets where ESP-in-UDP goes: normally the IKE engine's
// port-4500 transport.
func (d *Dataplane) SetUDPSender(s ipsec.UDPSender) { d.udp.Store(&udpSenderBox{s}) }

// InvalidSPISeen implements ipsec.InvalidSPICounter.
func (d *Dataplane) InvalidSPISeen() uint64 { return d.invalid.Stats().Seen }

var (
	_ ipsec.ESPInUDPHandler   = (*Dataplane)(nil)
	_ ipsec.InvalidSPICounter = (*Dataplane)(nil)
)

// Events delivers acquires, expiries and invalid SPIs; closed by Close.
func (d *Dataplane) Events() <-chan ipsec.Event { return d.events.Events() }

// emit queues an event without ever blocking the packet path.
func (d *Dataplane) emit(ev ipsec.Event) { d.events.Put(ev) }

// Stats returns the dataplane-wide counters.
func (d *Dataplane) Stats() Stats {
	s := &d.stats
	q := d.events.Stats()
	return Stats{
		OutPackets: s.outPackets.Load(), InPackets: s.inPackets.Load(),
		NoPolicy: s.noPolicy.Load(), Bypass: s.bypass.Load(), Discard: s.discard.Load(),
		AcquireQueued: s.acqQueued.Load(), AcquireDropped: s.acqDropped.Load(),
		Malformed: s.malformed.Load(), NotIPsec: s.notIPsec.Load(),
		PolicyMismatch: s.policyMismatch.Load(), SendErrors: s.sendErrors.Load(),
		EventsDropped: q.Dropped, EventsCoalesced: q.Coalesced, InvalidSPI: d.invalid.Stats(),
	}
}

func (d *Dataplane) sweeper() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-d.done:
			return
		case <-t.C:
			d.Sweep()
		}
	}
}

// Sweep checks time lifetimes (raising soft and hard expiries, deleting
// hard-expired SAs), forgets stale acquires and SPI reservations. It runs
// every SweepInterval; tests with an injected clock call it directly.
func (d *Dataplane) Sweep() {
	now := d.cfg.Now()
	d.sad.all.each(func(_ ipsec.SAKey, s *saState) { d.checkTime(s, now) })
	d.acqMu.Lock()
	for k, e := range d.acq {
		if now.Sub(e.sent) >= d.cfg.AcquireExpiry {
			d.stats.acqDropped.Add(uint64(len(e.queue)))
			d.dropAcquire(k, e)
		}
	}
	d.acqMu.Unlock()
	d.mu.Lock()
	for spi, until := range d.reserved {
		if now.After(until) {
			delete(d.reserved, spi)
		}
	}
	d.mu.Unlock()
}

// Flush removes every SA and policy (and their routes) and pending acquires.
func (d *Dataplane) Flush(ctx context.Context) error {
	d.mu.Lock()
	var errs []error
	for p := range d.routes {
		if d.cfg.Router != nil {
			if err := d.cfg.Router.DelRoute(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	d.routes = map[netip.Prefix]int{}
	d.sad.reset()
	d.spd.reset()
	d.reserved = map[uint32]time.Time{}
	d.mu.Unlock()
	d.acqMu.Lock()
	d.acq = map[acqKey]*acqEntry{}
	d.acqByOut = map[outKey]map[acqKey]struct{}{}
	d.acqBytes = 0
	d.acqMu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("userspace: flush: %w", err)
	}
	return nil
}

// Close stops the dataplane: it closes the TUN it was given (its routes go
// with it), stops its goroutines and closes the Events channel. The Link
// and UDPSender stay open, except those Open created.
func (d *Dataplane) Close() error {
	d.closeOnce.Do(func() {
		d.events.Close()
		close(d.done)
		if d.cfg.TUN != nil {
			d.closeErr = d.cfg.TUN.Close()
		}
		d.wg.Wait()
		for _, c := range d.closers {
			d.closeErr = errors.Join(d.closeErr, c.Close())
		}
	})
	return d.closeErr
}

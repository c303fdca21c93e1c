package xfrm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// Method is how the dataplane sees packets for unknown SPIs.
type Method uint8

// Methods (see the package doc for the trade-off).
const (
	// MethodNFTables: a set of known inbound SPIs and a rate-limited NFLOG
	// rule for ESP, AH and ESP-in-UDP; the default.
	MethodNFTables Method = iota
	// MethodRawSocket: raw ESP and AH sockets that receive a copy of every
	// inbound ESP/AH packet, filtered in userspace. For kernels without
	// nf_tables; it does not see ESP-in-UDP and costs a copy per packet.
	MethodRawSocket
)

// InvalidSPIConfig configures invalid-SPI detection. Zero fields take the
// defaults in parentheses.
type InvalidSPIConfig struct {
	Disabled    bool   // run without detection (no nftables needed)
	Method      Method // MethodNFTables
	NFLOGGroup  uint16 // nfnetlink_log group (2718); one per netns
	KernelRate  uint32 // packets/s the kernel lets through to userspace, all sources (50)
	KernelBurst uint32 // burst on top of KernelRate (50)
	// SourceRate and SourceBurst: a per-source limit in the kernel (an
	// nftables meter) before the global one, so one flooding peer cannot use
	// up the global budget (5/s, burst 10). SourceTable bounds the meter's
	// size (4096 sources, idle entries expire after a minute).
	SourceRate   uint32
	SourceBurst  uint32
	SourceTable  uint32
	UDPEncapPort uint16 // ESP-in-UDP port to watch (4500)
	Detector     DetectorConfig
}

func (c InvalidSPIConfig) withDefaults() InvalidSPIConfig {
	if c.NFLOGGroup == 0 {
		c.NFLOGGroup = 2718
	}
	if c.KernelRate == 0 {
		c.KernelRate = 50
	}
	if c.KernelBurst == 0 {
		c.KernelBurst = 50
	}
	if c.UDPEncapPort == 0 {
		c.UDPEncapPort = 4500
	}
	if c.SourceRate == 0 {
		c.SourceRate = 5
	}
	if c.SourceBurst == 0 {
		c.SourceBurst = 10
	}
	if c.SourceTable == 0 {
		c.SourceTable = 4096
	}
	return c
}

type config struct {
	ns          netns.NsHandle
	reqIDBase   uint32
	eventBuffer int
	invalidSPI  InvalidSPIConfig
	log         *slog.Logger
}

// Option configures New.
type Option func(*config)

// WithNetns runs the dataplane in another network namespace (the handle must
// stay open until Close). The default is the caller's namespace.
func WithNetns(ns netns.NsHandle) Option { return func(c *config) { c.ns = ns } }

// WithReqIDBase moves the owned kernel reqid range (DefaultReqIDBase).
func WithReqIDBase(base uint32) Option { return func(c *config) { c.reqIDBase = base } }

// WithEventBuffer bounds the invalid-SPI events waiting for the Events
// reader (256); acquires and expiries are coalesced per key and never
// dropped (ipsec.EventQueue).
func WithEventBuffer(n int) Option { return func(c *config) { c.eventBuffer = n } }

// WithInvalidSPI configures invalid-SPI detection (on by default).
func WithInvalidSPI(cfg InvalidSPIConfig) Option { return func(c *config) { c.invalidSPI = cfg } }

// WithLogger sets the logger (slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// Stats are the dataplane's own counters.
type Stats struct {
	EventsDropped   uint64 // invalid-SPI events over WithEventBuffer waiting for the reader
	EventsCoalesced uint64 // events that joined one with their key still waiting
	MonitorOverruns uint64 // ENOBUFS on the XFRM event socket: kernel events lost
	WatchPackets    uint64 // packets the kernel passed up (NFLOG: unknown SPIs within the limit; raw: every ESP/AH packet)
	WatchOverruns   uint64 // ENOBUFS on a watch socket: packets the kernel could not queue
	WatchUnparsed   uint64 // packets that were not ESP/AH/ESP-in-UDP
	WatchKnown      uint64 // packets for a known inbound SPI (raw sockets; NFLOG only in a race with AddSA)
	Detection       bool   // invalid-SPI detection is running
	InvalidSPI      DetectorStats
}

type saRecord struct {
	dir   ipsec.Direction
	src   netip.Addr
	reqid uint32
}

// Dataplane is the XFRM implementation of ipsec.Dataplane.
type Dataplane struct {
	cfg config

	mu        sync.Mutex // serialises netlink requests and guards the maps
	h         *netlink.Handle
	sock      *nl.SocketHandle
	sas       map[ipsec.SAKey]saRecord
	larval    map[ipsec.SAKey]bool // SPIs from AllocSPI not yet completed
	policies  map[ipsec.PolicyKey]bool
	nft       *nftWatch
	spiRefs   map[protoSPI]int // inbound SAs (and larval SPIs) per SPI: the nft set's content
	watch     []*pktConn       // NFLOG socket, or raw ESP and AH sockets
	mon       *nl.NetlinkSocket
	kmu       sync.RWMutex
	known     map[ipsec.SAKey]bool // inbound and larval SAs, read per watched packet
	det       *Detector
	events    *ipsec.EventQueue
	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    atomic.Bool

	monOverrun, watchPkts, watchOverrun, watchBad, watchKnown atomic.Uint64
}

type protoSPI struct {
	proto alg.Protocol
	spi   uint32
}

var _ ipsec.Dataplane = (*Dataplane)(nil)

// New opens netlink sockets in the target netns, subscribes to acquire and
// expire events and, unless disabled, installs the invalid-SPI nftables table.
// It does not flush anything: call Flush to remove what an earlier run left.
func New(opts ...Option) (*Dataplane, error) {
	cfg := config{ns: netns.None(), reqIDBase: DefaultReqIDBase, eventBuffer: 256}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	if cfg.eventBuffer <= 0 {
		cfg.eventBuffer = 1
	}
	cfg.invalidSPI = cfg.invalidSPI.withDefaults()
	d := &Dataplane{
		cfg:      cfg,
		sas:      map[ipsec.SAKey]saRecord{},
		larval:   map[ipsec.SAKey]bool{},
		policies: map[ipsec.PolicyKey]bool{},
		spiRefs:  map[protoSPI]int{},
		known:    map[ipsec.SAKey]bool{},
		events:   ipsec.NewEventQueue(cfg.eventBuffer),
	}
	if err := d.open(); err != nil {
		if d.nft != nil {
			_ = d.nft.close()
		}
		d.closeSockets()
		d.events.Close()
		return nil, err
	}
	d.wg.Add(1)
	go d.monitorLoop()
	for _, c := range d.watch {
		d.wg.Add(1)
		go d.watchLoop(c)
	}
	return d, nil
}

func (d *Dataplane) open() error {
	var err error
	if d.h, err = netlink.NewHandleAt(d.cfg.ns, unix.NETLINK_XFRM); err != nil {
		return fmt.Errorf("xfrm: netlink handle: %w", err)
	}
	s, err := nl.GetNetlinkSocketAt(d.cfg.ns, netns.None(), unix.NETLINK_XFRM)
	if err != nil {
		return fmt.Errorf("xfrm: netlink socket: %w", err)
	}
	_ = s.SetExtAck(true) // errors carry the kernel's explanation
	d.sock = &nl.SocketHandle{Socket: s}
	d.mon, err = nl.SubscribeAt(d.cfg.ns, netns.None(), unix.NETLINK_XFRM, nl.XFRMNLGRP_ACQUIRE, nl.XFRMNLGRP_EXPIRE)
	if err != nil {
		return fmt.Errorf("xfrm: subscribe to acquire/expire: %w", err)
	}
	_ = d.mon.SetReceiveBufferSize(1<<20, false)
	if d.cfg.invalidSPI.Disabled {
		return nil
	}
	d.det = NewDetector(d.cfg.invalidSPI.Detector)
	switch d.cfg.invalidSPI.Method {
	case MethodNFTables:
		// The NFLOG group first: a live dataplane in this netns holds it, and
		// then its table must not be touched. A table left by a dead one is
		// replaced.
		err := inNetns(d.cfg.ns, func() error {
			c, err := openNFLOG(d.cfg.invalidSPI.NFLOGGroup)
			if err == nil {
				d.watch = append(d.watch, c)
			}
			return err
		})
		if err != nil {
			return err
		}
		nsFd := -1
		if d.cfg.ns.IsOpen() {
			nsFd = int(d.cfg.ns)
		}
		d.nft, err = newNFTWatch(nsFd, d.cfg.invalidSPI)
		return err
	case MethodRawSocket:
		return inNetns(d.cfg.ns, func() error {
			for _, p := range []int{unix.IPPROTO_ESP, unix.IPPROTO_AH} {
				c, err := openRawIP(p)
				if err != nil {
					return err
				}
				d.watch = append(d.watch, c)
			}
			return nil
		})
	}
	return fmt.Errorf("xfrm: unknown invalid-SPI method %d", d.cfg.invalidSPI.Method)
}

// inNetns runs f on a locked OS thread inside ns (or here if ns is not open).
// If the thread cannot be moved back it is left locked, so Go retires it.
func inNetns(ns netns.NsHandle, f func() error) error {
	if !ns.IsOpen() {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Name implements ipsec.Dataplane.
func (d *Dataplane) Name() string { return "xfrm" }

// EnableUDPEncap implements ipsec.UDPEncapSocket: the kernel decapsulates
// ESP-in-UDP arriving on IKE's NAT-T socket (see the package function).
func (d *Dataplane) EnableUDPEncap(c syscall.Conn) error { return EnableUDPEncap(c) }

// NeedsForwardPolicies implements ipsec.ForwardPolicies: the kernel drops
// forwarded tunnel-mode traffic that no fwd policy allows.
func (d *Dataplane) NeedsForwardPolicies() bool { return true }

// InvalidSPISeen implements ipsec.InvalidSPICounter.
func (d *Dataplane) InvalidSPISeen() uint64 { return d.Stats().InvalidSPI.Seen }

var (
	_ ipsec.UDPEncapSocket    = (*Dataplane)(nil)
	_ ipsec.ForwardPolicies   = (*Dataplane)(nil)
	_ ipsec.InvalidSPICounter = (*Dataplane)(nil)
	_ ipsec.CounterDumper     = (*Dataplane)(nil)
)

// Events implements ipsec.Dataplane.
func (d *Dataplane) Events() <-chan ipsec.Event { return d.events.Events() }

// Stats returns the dataplane's counters.
func (d *Dataplane) Stats() Stats {
	q := d.events.Stats()
	s := Stats{
		EventsDropped:   q.Dropped,
		EventsCoalesced: q.Coalesced,
		MonitorOverruns: d.monOverrun.Load(),
		WatchPackets:    d.watchPkts.Load(),
		WatchOverruns:   d.watchOverrun.Load(),
		WatchUnparsed:   d.watchBad.Load(),
		WatchKnown:      d.watchKnown.Load(),
		Detection:       d.det != nil,
	}
	if d.det != nil {
		s.InvalidSPI = d.det.Stats()
	}
	return s
}

// emit queues an event without ever blocking.
func (d *Dataplane) emit(e ipsec.Event) { d.events.Put(e) }

// Close stops the event readers, removes the nftables table and closes the
// sockets and the Events channel. It leaves SAs and policies in place (the
// agent calls Flush for that).
func (d *Dataplane) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		if d.nft != nil {
			d.mu.Lock()
			err = d.nft.close()
			d.mu.Unlock()
		}
		d.closeSockets()
		d.wg.Wait()
		d.events.Close()
	})
	return err
}

func (d *Dataplane) closeSockets() {
	if d.mon != nil {
		d.mon.Close()
	}
	for _, c := range d.watch {
		c.Close()
	}
	if d.sock != nil {
		d.sock.Socket.Close()
	}
	if d.h != nil {
		d.h.Close()
	}
}

// request builds a netlink request that runs on the dataplane's socket.
func (d *Dataplane) request(typ, flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(typ, flags)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_XFRM: d.sock}
	return req
}

func ctxErr(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	return ctx.Err()
}

// mapErr turns kernel errnos into the ipsec sentinels where callers decide:
// EEXIST is ErrExists, and the errnos in notFound are ErrNotFound.
func mapErr(op string, err error, notFound ...unix.Errno) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("xfrm: %s: %w (%v)", op, ipsec.ErrExists, err)
	}
	for _, e := range notFound {
		if errors.Is(err, e) {
			return fmt.Errorf("xfrm: %s: %w (%v)", op, ipsec.ErrNotFound, err)
		}
	}
	return fmt.Errorf("xfrm: %s: %w", op, err)
}

// Package transport runs an ike.Engine on real UDP sockets: ports 500 and
// 4500 (configurable), the RFC 3948 non-ESP marker on the NAT-T port, a real
// clock, and one goroutine that owns the engine. Its methods are safe for
// concurrent use.
//
// ESP-in-UDP sharing: on the NAT-T port a datagram whose first four bytes
// are zero is IKE; a one-byte 0xff datagram is a NAT-keepalive and is
// dropped; anything else is UDP-encapsulated ESP and is handed to
// Config.ESPHandler (the userspace dataplane). The dataplane sends its
// ESP-in-UDP with SendESP, from the same socket, so that NAT bindings and
// peers see one flow.
//
// SAs first: BeforeSend gets each step's child SAs on the engine goroutine
// before the step's datagrams leave, so a dataplane that installs them
// there has them in place before the peer may use them.
//
// Output: the engine goroutine never waits for the consumer. Child SAs to
// install or delete and events accumulate in a batch that a second
// goroutine hands to Config.OnOutput (raft's Ready pattern); while the
// consumer is busy the engine keeps negotiating and answering commands,
// and the next call gets everything that accumulated. The consumer may
// therefore be slow, and may call the Transport's synchronous methods
// (Snapshot, Initiate, ...) from OnOutput or from a loop that OnOutput
// feeds, without a cycle.
//
// It knows nothing of the agent, the model or the dataplane beyond that callback.
package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike"
)

// Config configures the transport.
type Config struct {
	// Addrs are the local addresses to bind; empty binds 0.0.0.0 (IPv4,
	// with IP_PKTINFO to learn and choose source addresses).
	Addrs []netip.Addr
	// ESPHandler receives ESP-in-UDP datagrams that arrive on the NAT-T
	// port (the ESP packet without UDP header). nil drops them. It is
	// called on the socket's reader goroutine and must not block long; pkt
	// is only valid during the call.
	ESPHandler func(pkt []byte, src, dst netip.AddrPort)
	// OnSocket, if set, is called for each socket after it is bound and
	// before it is read, with natt true for the NAT-T port. The agent uses
	// it to make the NAT-T socket the kernel's ESP-in-UDP decapsulation
	// socket when the dataplane is XFRM; an error fails New.
	OnSocket func(c *net.UDPConn, natt bool) error
	// BeforeSend, if set, receives each step's output (child SAs to
	// prepare, install or delete, with keys) on the engine goroutine,
	// before the datagrams of the same step are sent: SAs installed there
	// are in place before Quick Mode's second or third message lets the
	// peer use them. It must be quick and touch only the dataplane: it
	// must never wait for OnOutput's consumer nor call the Transport.
	BeforeSend func(ike.Output)
	// OnOutput receives everything the engine produced except datagrams
	// and Prepare (child SAs to install or delete, events), in order,
	// batched while the previous call was running (see the package doc for
	// the bound). It runs on its own goroutine, never the engine's: it may
	// block and may call the Transport's methods. Close waits for a call in
	// progress to return, so it must return once its consumer is shutting
	// down.
	OnOutput func(ike.Output)
}

type sock struct {
	local netip.AddrPort
	natt  bool
	conn  *net.UDPConn
	pc    *ipv4.PacketConn // nil unless bound to the wildcard
}

type inbound struct {
	p ike.Packet
}

// Transport is a running engine on UDP sockets.
type Transport struct {
	cfg   Config
	port  uint16
	nport uint16
	socks []*sock
	in    chan inbound
	cmds  chan func(time.Time, *ike.Engine)
	box   *outbox
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
	mu    sync.Mutex // guards errs
	errs  uint64
}

// New binds the sockets and starts the engine goroutine.
func New(ecfg ike.Config, cfg Config, rand io.Reader) (*Transport, error) {
	e, err := ike.New(ecfg, rand)
	if err != nil {
		return nil, err
	}
	t := &Transport{cfg: cfg, port: ecfg.Port, nport: ecfg.NATTPort,
		in: make(chan inbound, 1024), cmds: make(chan func(time.Time, *ike.Engine), 64), box: newOutbox(), done: make(chan struct{})}
	if t.port == 0 {
		t.port = 500
	}
	if t.nport == 0 {
		t.nport = 4500
	}
	addrs := cfg.Addrs
	if len(addrs) == 0 {
		addrs = []netip.Addr{netip.IPv4Unspecified()}
	}
	for _, a := range addrs {
		for _, port := range []uint16{t.port, t.nport} {
			s, err := listen(netip.AddrPortFrom(a, port), port == t.nport)
			if err != nil {
				t.closeSocks()
				return nil, err
			}
			t.socks = append(t.socks, s)
			if cfg.OnSocket != nil {
				if err := cfg.OnSocket(s.conn, s.natt); err != nil {
					t.closeSocks()
					return nil, fmt.Errorf("ike/transport: socket %v: %w", s.local, err)
				}
			}
		}
	}
	for _, s := range t.socks {
		t.wg.Add(1)
		go t.read(s)
	}
	t.wg.Add(2)
	go t.run(e)
	go t.pump()
	return t, nil
}

func listen(ap netip.AddrPort, natt bool) (*sock, error) {
	network := "udp4"
	if ap.Addr().Is6() {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("ike/transport: listen %v: %w", ap, err)
	}
	s := &sock{local: ap, natt: natt, conn: c}
	if ap.Addr().IsUnspecified() && ap.Addr().Is4() {
		s.pc = ipv4.NewPacketConn(c)
		if err := s.pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
			c.Close()
			return nil, fmt.Errorf("ike/transport: pktinfo on %v: %w", ap, err)
		}
	}
	return s, nil
}

// Close stops the engine and closes the sockets.
func (t *Transport) Close() error {
	t.once.Do(func() {
		close(t.done)
		t.closeSocks()
	})
	t.wg.Wait()
	return nil
}

func (t *Transport) closeSocks() {
	for _, s := range t.socks {
		s.conn.Close()
	}
}

func (t *Transport) read(s *sock) {
	defer t.wg.Done()
	buf := make([]byte, 65536)
	for {
		var n int
		var src, dst netip.AddrPort
		var err error
		if s.pc != nil {
			var cm *ipv4.ControlMessage
			var from net.Addr
			n, cm, from, err = s.pc.ReadFrom(buf)
			if err == nil {
				src = from.(*net.UDPAddr).AddrPort()
				dst = s.local
				if cm != nil && cm.Dst != nil {
					if a, ok := netip.AddrFromSlice(cm.Dst.To4()); ok {
						dst = netip.AddrPortFrom(a, s.local.Port())
					}
				}
			}
		} else {
			n, src, err = s.conn.ReadFromUDPAddrPort(buf)
			dst = s.local
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		data := buf[:n]
		if s.natt {
			switch {
			case n == 1 && data[0] == 0xff:
				continue // NAT-keepalive (RFC 3948 §2.3)
			case n >= 4 && data[0]|data[1]|data[2]|data[3] == 0:
				data = data[4:] // non-ESP marker: IKE
			default:
				if h := t.cfg.ESPHandler; h != nil {
					h(data, src, dst)
				}
				continue
			}
		}
		pkt := ike.Packet{Local: dst, Remote: src, Data: append([]byte(nil), data...)}
		select {
		case t.in <- inbound{pkt}:
		case <-t.done:
			return
		default:
			// The engine is overloaded: drop, as a router would.
		}
	}
}

func (t *Transport) run(e *ike.Engine) {
	defer t.wg.Done()
	tm := time.NewTimer(time.Hour)
	defer tm.Stop()
	for {
		select {
		case <-t.done:
			return
		case in := <-t.in:
			e.HandlePacket(time.Now(), in.p)
		case f := <-t.cmds:
			f(time.Now(), e)
		case <-tm.C:
			e.Tick(time.Now())
		}
		t.flush(e)
		tm.Reset(wait(e.NextDeadline()))
	}
}

func wait(d time.Time) time.Duration {
	if d.IsZero() {
		return time.Hour
	}
	w := time.Until(d)
	if w < 0 {
		return 0
	}
	return w
}

// flush hands a step's SAs to BeforeSend, sends its datagrams and queues
// the rest for the pump.
func (t *Transport) flush(e *ike.Engine) {
	o := e.Ready()
	send := o.Send
	o.Send = nil
	if t.cfg.BeforeSend != nil && len(o.Prepare)+len(o.Install)+len(o.Delete) > 0 {
		t.cfg.BeforeSend(o)
	}
	if t.cfg.OnOutput != nil {
		t.box.put(o)
	}
	for _, p := range send {
		t.write(p)
	}
}

// pump hands the accumulated output to OnOutput, one batch per call.
func (t *Transport) pump() {
	defer t.wg.Done()
	for {
		select {
		case <-t.done:
			return
		case <-t.box.wake:
		}
		if o := t.box.take(); !o.Empty() {
			t.cfg.OnOutput(o)
		}
	}
}

// sockFor picks the socket bound to local, or the wildcard one on its port.
func (t *Transport) sockFor(local netip.AddrPort) *sock {
	var wild *sock
	for _, s := range t.socks {
		if s.local.Port() != local.Port() {
			continue
		}
		if s.local.Addr() == local.Addr() {
			return s
		}
		if s.local.Addr().IsUnspecified() || !local.Addr().IsValid() || local.Addr().IsUnspecified() {
			wild = s
		}
	}
	return wild
}

func (t *Transport) write(p ike.Packet) {
	s := t.sockFor(p.Local)
	if s == nil {
		t.countErr()
		return
	}
	data := p.Data
	if s.natt && !(len(data) == 1 && data[0] == 0xff) {
		data = append([]byte{0, 0, 0, 0}, data...)
	}
	if err := s.writeTo(data, p.Local.Addr(), p.Remote); err != nil {
		t.countErr()
	}
}

func (s *sock) writeTo(data []byte, src netip.Addr, dst netip.AddrPort) error {
	if s.pc != nil && src.IsValid() && !src.IsUnspecified() {
		cm := &ipv4.ControlMessage{Src: src.AsSlice()}
		_, err := s.pc.WriteTo(data, cm, net.UDPAddrFromAddrPort(dst))
		return err
	}
	_, err := s.conn.WriteToUDPAddrPort(data, dst)
	return err
}

func (t *Transport) countErr() {
	t.mu.Lock()
	t.errs++
	t.mu.Unlock()
}

// SendErrors counts datagrams that could not be sent.
func (t *Transport) SendErrors() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.errs
}

// Stats are the transport's own counters.
type Stats struct {
	SendErrors uint64 // datagrams that could not be sent
	// EventsDropped: events lost because more than 4096 were waiting for
	// a slow OnOutput (installs and deletes are never dropped).
	EventsDropped uint64
	// Cancelled: child SAs deleted before OnOutput was handed their
	// Install; neither was handed over.
	Cancelled uint64
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	d, c := t.box.stats()
	return Stats{SendErrors: t.SendErrors(), EventsDropped: d, Cancelled: c}
}

// SendESP sends an ESP packet inside UDP from the NAT-T socket bound to
// src (or the wildcard one) to dst, with no marker (RFC 3948 §2.1).
func (t *Transport) SendESP(pkt []byte, src, dst netip.AddrPort) error {
	s := t.sockFor(netip.AddrPortFrom(src.Addr(), t.nport))
	if s == nil {
		return fmt.Errorf("ike/transport: no NAT-T socket for %v", src)
	}
	if len(pkt) >= 4 && pkt[0]|pkt[1]|pkt[2]|pkt[3] == 0 {
		return errors.New("ike/transport: ESP packet with SPI 0")
	}
	return s.writeTo(pkt, src.Addr(), dst)
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("ike/transport: closed")

// do runs f on the engine goroutine and waits for it.
func (t *Transport) do(f func(time.Time, *ike.Engine) error) error {
	ch := make(chan error, 1)
	select {
	case t.cmds <- func(now time.Time, e *ike.Engine) { ch <- f(now, e) }:
	case <-t.done:
		return ErrClosed
	}
	select {
	case err := <-ch:
		return err
	case <-t.done:
		return ErrClosed
	}
}

// Initiate starts Main Mode (if needed) and Quick Mode for the child policy tag.
func (t *Transport) Initiate(tag string, trigger *[2]ike.Selector) error {
	return t.do(func(now time.Time, e *ike.Engine) error { return e.Initiate(now, tag, trigger) })
}

// InitiateNew is Initiate with a fresh Main Mode even when an ISAKMP SA exists.
func (t *Transport) InitiateNew(tag string) error {
	return t.do(func(now time.Time, e *ike.Engine) error { return e.InitiateNew(now, tag) })
}

// SendInvalidSPI sends an authenticated INVALID-SPI notify to peer.
func (t *Transport) SendInvalidSPI(local, peer netip.Addr, proto alg.Protocol, spi uint32) error {
	return t.do(func(now time.Time, e *ike.Engine) error { return e.SendInvalidSPI(now, local, peer, proto, spi) })
}

// DeleteChild deletes a child SA and tells the peer.
func (t *Transport) DeleteChild(id uint64) error {
	return t.do(func(now time.Time, e *ike.Engine) error { return e.DeleteChild(now, id) })
}

// RekeyChild negotiates a replacement for a child SA (e.g. on a byte-lifetime soft expiry).
func (t *Transport) RekeyChild(id uint64) error {
	return t.do(func(now time.Time, e *ike.Engine) error { return e.RekeyChild(now, id) })
}

// Clear removes every SA with peer (all when invalid), telling the peer if notify.
func (t *Transport) Clear(peer netip.Addr, notify bool) error {
	return t.do(func(now time.Time, e *ike.Engine) error { e.Clear(now, peer, notify); return nil })
}

// DPD sends an R-U-THERE to peer now.
func (t *Transport) DPD(peer netip.Addr) error {
	return t.do(func(now time.Time, e *ike.Engine) error { return e.DPD(now, peer) })
}

// SetConfig replaces the engine configuration atomically. The sockets stay
// as bound: a change of Port or NATTPort needs a new Transport.
func (t *Transport) SetConfig(c ike.Config) error {
	return t.do(func(now time.Time, e *ike.Engine) error { return e.SetConfig(c) })
}

// SetChildPolicies replaces the child policies atomically.
func (t *Transport) SetChildPolicies(ps []ike.ChildPolicy) error {
	return t.do(func(now time.Time, e *ike.Engine) error { return e.SetChildPolicies(ps) })
}

// Counters returns the engine's counters and admission gauges, without the
// SA lists of Snapshot.
func (t *Transport) Counters() (ike.Counters, error) {
	var c ike.Counters
	err := t.do(func(now time.Time, e *ike.Engine) error { c = e.Counters(); return nil })
	return c, err
}

// Snapshot lists SAs and counters.
func (t *Transport) Snapshot() (ike.Snapshot, error) {
	var s ike.Snapshot
	err := t.do(func(now time.Time, e *ike.Engine) error { s = e.Snapshot(now); return nil })
	return s, err
}

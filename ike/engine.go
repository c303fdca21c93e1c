// Package ike is spiagent's IKEv1 (ISAKMP) engine: Main Mode with
// pre-shared keys, Quick Mode (ESP, AH and AH+ESP bundles, tunnel and
// transport, optional PFS), Informational exchanges protected by HASH(1)
// (NOTIFY, DELETE, INITIAL-CONTACT, DPD R-U-THERE), and NAT traversal
// (RFC 3947/3948).
//
// The engine is sans-IO, like etcd's raft: it owns no socket, goroutine or
// clock. The caller feeds it received datagrams (HandlePacket), the passing
// of time (Tick, with the time from NextDeadline) and commands (Initiate,
// SendInvalidSPI, DeleteChild, Clear, DPD), then drains Ready for the
// datagrams to send, the child SAs to install or delete and the events. All
// randomness (cookies, nonces, SPIs, DH keys) comes from the io.Reader given
// to New, so tests are byte-for-byte deterministic. Rather than one
// Step(Input) Output function, each input kind is its own method and the
// output accumulates until Ready: commands then return their own errors.
//
// Locally initiated negotiations go through admission control
// (admission.go, IOS's "crypto call admission limit"): a bounded number in
// negotiation per role, the rest queued fairly across peers, one request
// per child policy tag, failures retried with backoff while there is
// demand.
//
// An Engine is not safe for concurrent use; ike/transport runs one on a
// goroutine with real sockets and a clock.
//
// The package must not know about the YANG model, the datastore, the agent
// or the dataplane: it takes and returns plain types in the vocabulary of
// package alg, which ipsec shares, and the agent translates.
package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike/wire"
)

type cookies struct{ i, r [8]byte }

type respKey struct {
	i      [8]byte
	remote netip.AddrPort
}

type spiKey struct {
	proto alg.Protocol
	spi   uint32
}

type outKey struct {
	peer  netip.Addr
	proto alg.Protocol
	spi   uint32
}

type peer struct {
	ikes     map[*ikeSA]struct{}
	children map[uint64]*child
	nEst     int    // established ISAKMP SAs in ikes
	newest   *ikeSA // newest established one (nil: recompute)
}

// Engine is one IKEv1 endpoint; see the package documentation.
type Engine struct {
	cfg  Config
	rand io.Reader

	policies   map[string]*ChildPolicy
	polsByPeer map[netip.Addr][]*ChildPolicy

	sas      map[cookies]*ikeSA
	initByI  map[[8]byte]*ikeSA
	respHalf map[respKey]*ikeSA
	peers    map[netip.Addr]*peer
	children map[uint64]*child
	byIn     map[spiKey]*child
	byOut    map[outKey]*child
	reserved map[spiKey]struct{}
	byTag    map[string]map[uint64]*child
	adm      admission // see admission.go
	clearing bool      // Clear is removing SAs: no failures to back off from
	halfOpen int
	nextID   uint64

	timers timerHeap
	out    Output
	ctr    Counters
}

// New returns an engine with cfg. rand supplies all randomness.
func New(cfg Config, rand io.Reader) (*Engine, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg: cfg, rand: rand,
		policies: map[string]*ChildPolicy{}, polsByPeer: map[netip.Addr][]*ChildPolicy{},
		sas: map[cookies]*ikeSA{}, initByI: map[[8]byte]*ikeSA{}, respHalf: map[respKey]*ikeSA{},
		peers: map[netip.Addr]*peer{}, children: map[uint64]*child{},
		byIn: map[spiKey]*child{}, byOut: map[outKey]*child{}, reserved: map[spiKey]struct{}{},
		byTag: map[string]map[uint64]*child{},
	}
	e.adm.init()
	return e, nil
}

// SetConfig replaces the configuration. SAs keep what they negotiated.
func (e *Engine) SetConfig(cfg Config) error {
	if err := cfg.normalize(); err != nil {
		return err
	}
	e.cfg = cfg
	return nil
}

// SetChildPolicies replaces the child policies (crypto map entries).
// Installed child SAs are not touched; negotiations queued for a tag that
// is gone are dropped when their turn comes.
func (e *Engine) SetChildPolicies(ps []ChildPolicy) error {
	byTag := make(map[string]*ChildPolicy, len(ps))
	byPeer := map[netip.Addr][]*ChildPolicy{}
	for i := range ps {
		p := ps[i]
		p.Proposals = append([]Transform(nil), p.Proposals...)
		if err := validateChild(&p); err != nil {
			return err
		}
		if _, dup := byTag[p.Tag]; dup {
			return fmt.Errorf("ike: duplicate child policy tag %q", p.Tag)
		}
		byTag[p.Tag] = &p
		byPeer[p.Peer.Unmap()] = append(byPeer[p.Peer.Unmap()], &p)
	}
	e.policies, e.polsByPeer = byTag, byPeer
	e.forgetNegs()
	return nil
}

// Ready returns and clears the accumulated output.
func (e *Engine) Ready() Output {
	o := e.out
	e.out = Output{}
	return o
}

// Counters returns the cumulative counters and the admission gauges.
func (e *Engine) Counters() Counters {
	c := e.ctr
	c.InNegotiationInitiated, c.InNegotiationResponded = e.adm.initiated, e.adm.responded
	c.Queued, c.Backoff = e.adm.queued, e.adm.backoff
	return c
}

// Tick fires the timers due at now (retransmissions, timeouts, rekeys,
// lifetimes, DPD, keepalives, retries) and admits queued negotiations.
func (e *Engine) Tick(now time.Time) {
	e.runTimers(now)
	e.admit(now)
}

func (e *Engine) random(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(e.rand, b); err != nil {
		panic(fmt.Sprintf("ike: random source failed: %v", err))
	}
	return b
}

func (e *Engine) randU32() uint32 { return binary.BigEndian.Uint32(e.random(4)) }

func (e *Engine) peer(a netip.Addr) *peer {
	p := e.peers[a]
	if p == nil {
		p = &peer{ikes: map[*ikeSA]struct{}{}, children: map[uint64]*child{}}
		e.peers[a] = p
	}
	return p
}

func (e *Engine) gcPeer(a netip.Addr) {
	if p := e.peers[a]; p != nil && len(p.ikes) == 0 && len(p.children) == 0 {
		delete(e.peers, a)
	}
}

func (e *Engine) send(local, remote netip.AddrPort, data []byte) {
	e.ctr.PacketsOut++
	if e.cfg.Trace != nil && len(data) >= wire.HeaderLen && data[19]&wire.FlagEncryption == 0 {
		e.cfg.Trace(true, data)
	}
	e.out.Send = append(e.out.Send, Packet{Local: local, Remote: remote, Data: data})
}

func (e *Engine) event(ev Event) {
	e.out.Events = append(e.out.Events, ev)
}

// HandlePacket processes one received datagram (without non-ESP marker).
func (e *Engine) HandlePacket(now time.Time, p Packet) {
	e.ctr.PacketsIn++
	e.runTimers(now)
	defer e.admit(now)
	p.Remote = netip.AddrPortFrom(p.Remote.Addr().Unmap(), p.Remote.Port())
	p.Local = netip.AddrPortFrom(p.Local.Addr().Unmap(), p.Local.Port())
	h, err := wire.ParseHeader(p.Data)
	if err != nil {
		e.ctr.Malformed++
		return
	}
	data := p.Data[:h.Length]
	if e.cfg.Trace != nil && h.Flags&wire.FlagEncryption == 0 {
		e.cfg.Trace(false, data)
	}
	switch h.Exchange {
	case wire.ExchangeMain:
		e.handleMain(now, p, h, data)
	case wire.ExchangeQuick:
		e.handleQuick(now, p, h, data)
	case wire.ExchangeInformational:
		e.handleInfo(now, p, h, data)
	default:
		e.ctr.Unknown++
	}
}

// ErrNoPolicy is returned by Initiate for an unknown tag.
var ErrNoPolicy = errors.New("ike: no such child policy")

// Initiate asks for a child SA for the policy with tag (traffic-triggered:
// an acquire). The request goes through admission control (see
// admission.go): it starts now or waits its turn, joins a negotiation for
// the tag that is queued, running or backing off, and is a no-op while the
// tag has a child SA that is up and not at its soft lifetime. Main Mode
// runs first when there is no ISAKMP SA with the peer. trigger, if not nil,
// narrows the selectors to the packet that triggered it (it must lie
// within the policy); nil uses the policy's. It returns ErrQueueFull when
// the queue is full (the request backs off; a re-raised acquire retries).
func (e *Engine) Initiate(now time.Time, tag string, trigger *[2]Selector) error {
	e.runTimers(now)
	defer e.admit(now)
	pol := e.policies[tag]
	if pol == nil {
		return fmt.Errorf("%w: %q", ErrNoPolicy, tag)
	}
	if trigger != nil {
		if !pol.LocalTS.Contains(trigger[0]) || !pol.RemoteTS.Contains(trigger[1]) {
			return fmt.Errorf("ike: trigger %v->%v outside policy %q", trigger[0], trigger[1], tag)
		}
		t := *trigger
		trigger = &t
	}
	if err := e.canInitiate(pol.Peer.Unmap()); err != nil {
		return err
	}
	return e.demand(now, pol, trigger)
}

// canInitiate checks what a negotiation with peer needs from the config.
func (e *Engine) canInitiate(peerAddr netip.Addr) error {
	if _, ok := e.cfg.key(peerAddr); !ok {
		return fmt.Errorf("ike: no pre-shared key for %v", peerAddr)
	}
	if len(e.cfg.Policies) == 0 {
		return errors.New("ike: no ISAKMP policy")
	}
	return nil
}

// InitiateNew is Initiate with a fresh Main Mode even when an ISAKMP SA
// with the peer exists (load tests, re-authentication). It bypasses the
// admission queue (its exchanges still count as in negotiation).
func (e *Engine) InitiateNew(now time.Time, tag string) error {
	e.runTimers(now)
	defer e.admit(now)
	pol := e.policies[tag]
	if pol == nil {
		return fmt.Errorf("%w: %q", ErrNoPolicy, tag)
	}
	sa, err := e.startMain(now, pol.Local.Unmap(), pol.Peer.Unmap())
	if err != nil {
		return err
	}
	sa.onUp = append(sa.onUp, func(now time.Time, sa *ikeSA) {
		e.startQuick(now, sa, pol, [2]Selector{pol.LocalTS, pol.RemoteTS}, nil)
	})
	return nil
}

// SendInvalidSPI sends an INVALID-SPI notification for (proto, spi) to
// peer in an Informational exchange protected by HASH(1), establishing an
// ISAKMP SA first when there is none. local is our address the offending
// packet was sent to.
func (e *Engine) SendInvalidSPI(now time.Time, local, peer netip.Addr, proto alg.Protocol, spi uint32) error {
	e.runTimers(now)
	defer e.admit(now)
	if proto != alg.ESP && proto != alg.AH {
		return fmt.Errorf("ike: invalid-spi for protocol %v", proto)
	}
	return e.withIKE(now, local, peer, func(now time.Time, sa *ikeSA) {
		var s [4]byte
		binary.BigEndian.PutUint32(s[:], spi)
		n := wire.Notify{DOI: wire.DOIIPsec, Protocol: protoWire(proto), Type: wire.NotifyInvalidSPI, SPI: s[:]}
		e.sendInfo(now, sa, wire.PayloadNotify, n.Encode())
		e.ctr.InvalidSPISent++
		e.cfg.Log.Info("ike: sent INVALID-SPI", "peer", peer, "proto", proto, "spi", fmt.Sprintf("0x%08x", spi))
	})
}

// DeleteChild deletes the child SA with id: it sends DELETE for its inbound
// SPIs to the peer (when an ISAKMP SA exists or can be set up) and emits a
// ChildDelete.
func (e *Engine) DeleteChild(now time.Time, id uint64) error {
	e.runTimers(now)
	defer e.admit(now)
	c := e.children[id]
	if c == nil {
		return fmt.Errorf("ike: no child SA %d", id)
	}
	e.notifyDelete(now, c)
	e.removeChild(c, ReasonLocal)
	return nil
}

// RekeyChild negotiates a replacement for child SA id, with the same
// policy and selectors (the caller's byte lifetime ran out, or an operator
// asked), through admission control like Initiate. The old SA stays until
// its own expiry or DeleteChild.
func (e *Engine) RekeyChild(now time.Time, id uint64) error {
	e.runTimers(now)
	defer e.admit(now)
	c := e.children[id]
	if c == nil {
		return fmt.Errorf("ike: no child SA %d", id)
	}
	pol := e.policies[c.Tag]
	if pol == nil {
		return fmt.Errorf("%w: %q (child SA %d)", ErrNoPolicy, c.Tag, id)
	}
	if err := e.canInitiate(pol.Peer.Unmap()); err != nil {
		return err
	}
	c.expiring = true
	return e.demand(now, pol, &[2]Selector{c.LocalTS, c.RemoteTS})
}

// Clear removes every SA with peer (all peers when peer is invalid). With
// notify, DELETE payloads are sent first; without, the peer is not told
// (the lab's "black hole").
func (e *Engine) Clear(now time.Time, peerAddr netip.Addr, notify bool) {
	e.runTimers(now)
	defer e.admit(now)
	e.clearing = true
	defer func() { e.clearing = false }()
	var addrs []netip.Addr
	if peerAddr.IsValid() {
		addrs = []netip.Addr{peerAddr.Unmap()}
	} else {
		for a := range e.peers {
			addrs = append(addrs, a)
		}
	}
	for _, a := range addrs {
		p := e.peers[a]
		if p == nil {
			continue
		}
		for _, c := range p.children {
			if notify {
				e.notifyDelete(now, c)
			}
			e.removeChild(c, ReasonLocal)
		}
		for sa := range p.ikes {
			if notify && sa.state == stateEstablished {
				e.sendDeleteIKE(now, sa)
			}
			e.removeIKE(now, sa, "cleared")
		}
	}
}

// DPD sends an R-U-THERE to peer now over its newest established ISAKMP SA.
func (e *Engine) DPD(now time.Time, peerAddr netip.Addr) error {
	e.runTimers(now)
	defer e.admit(now)
	sa := e.established(peerAddr.Unmap())
	if sa == nil {
		return fmt.Errorf("ike: no ISAKMP SA with %v", peerAddr)
	}
	e.sendRUThere(now, sa)
	return nil
}

// established returns the newest established ISAKMP SA with peer.
func (e *Engine) established(a netip.Addr) *ikeSA {
	p := e.peers[a]
	if p == nil || p.nEst == 0 {
		return nil
	}
	if p.newest != nil && !p.newest.deleted {
		return p.newest
	}
	var best *ikeSA
	for sa := range p.ikes {
		if sa.state == stateEstablished && !sa.deleted && (best == nil || sa.established.After(best.established) ||
			(sa.established.Equal(best.established) && sa.id > best.id)) {
			best = sa
		}
	}
	p.newest = best
	return best
}

// withIKE runs f with an established ISAKMP SA with peer, starting Main
// Mode (or joining one we already started) when there is none.
func (e *Engine) withIKE(now time.Time, local, peerAddr netip.Addr, f func(time.Time, *ikeSA)) error {
	peerAddr, local = peerAddr.Unmap(), local.Unmap()
	if sa := e.established(peerAddr); sa != nil {
		f(now, sa)
		return nil
	}
	if sa := e.pendingMain(peerAddr); sa != nil {
		sa.onUp = append(sa.onUp, f)
		return nil
	}
	if err := e.canInitiate(peerAddr); err != nil {
		return err
	}
	sa, err := e.startMain(now, local, peerAddr)
	if err != nil {
		return err
	}
	sa.onUp = append(sa.onUp, f)
	return nil
}

// Snapshot lists the SAs and counters.
func (e *Engine) Snapshot(now time.Time) Snapshot {
	s := Snapshot{Counters: e.Counters()}
	for _, sa := range e.sas {
		s.IKE = append(s.IKE, sa.info(now))
	}
	for _, sa := range e.initByI {
		if sa.rcookieZero() {
			s.IKE = append(s.IKE, sa.info(now))
		}
	}
	for _, c := range e.children {
		s.Children = append(s.Children, c.withoutKeys())
	}
	return s
}

func protoWire(p alg.Protocol) wire.ProtocolID {
	if p == alg.AH {
		return wire.ProtoAH
	}
	return wire.ProtoESP
}

func protoFromWire(p wire.ProtocolID) alg.Protocol {
	switch p {
	case wire.ProtoAH:
		return alg.AH
	case wire.ProtoESP:
		return alg.ESP
	}
	return 0
}

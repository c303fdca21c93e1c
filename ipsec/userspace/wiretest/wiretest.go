// Package wiretest is an in-memory network for the ciphertext side of
// userspace dataplanes: raw IPv4 packets (ESP, AH) routed by destination
// address, and ESP-in-UDP datagrams routed by destination address and port.
// Delivery is synchronous (the receiver's handler runs in the sender's
// goroutine, on a copy), so tests are deterministic. A test can record
// what crossed the wire, drop or rewrite it, and inject packets.
package wiretest

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"

	"github.com/spiagent/spiagent/ipsec/ipv4hdr"
)

// Packet is one recorded transmission.
type Packet struct {
	Data     []byte // the IPv4 packet, or the UDP payload for ESP-in-UDP
	UDP      bool
	Src, Dst netip.AddrPort // ports are zero for raw IP
}

// Network connects endpoints.
type Network struct {
	mu     sync.Mutex
	eps    map[netip.Addr]*Endpoint
	record bool
	log    []Packet
	filter func(*Packet) bool
}

// New returns an empty network.
func New() *Network { return &Network{eps: map[netip.Addr]*Endpoint{}} }

// Endpoint is one address on the network. It implements userspace.Link
// and userspace.UDPSender.
type Endpoint struct {
	n    *Network
	addr netip.Addr

	mu    sync.Mutex
	ip    func(pkt []byte)
	udp   func(pkt []byte, src, dst netip.AddrPort)
	count int
}

// Endpoint returns (creating if needed) the endpoint for addr.
func (n *Network) Endpoint(addr netip.Addr) *Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e := n.eps[addr]; e != nil {
		return e
	}
	e := &Endpoint{n: n, addr: addr}
	n.eps[addr] = e
	return e
}

// Record starts (or stops) recording transmissions.
func (n *Network) Record(on bool) {
	n.mu.Lock()
	n.record = on
	n.mu.Unlock()
}

// Log returns a copy of the recorded transmissions.
func (n *Network) Log() []Packet {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Packet(nil), n.log...)
}

// SetFilter installs fn, called on each transmission before delivery; it
// may modify the packet, and returning false drops it.
func (n *Network) SetFilter(fn func(*Packet) bool) {
	n.mu.Lock()
	n.filter = fn
	n.mu.Unlock()
}

// SetIPHandler sets the receiver of raw IPv4 packets addressed to e.
func (e *Endpoint) SetIPHandler(fn func(pkt []byte)) {
	e.mu.Lock()
	e.ip = fn
	e.mu.Unlock()
}

// SetUDPHandler sets the receiver of ESP-in-UDP datagrams addressed to e.
func (e *Endpoint) SetUDPHandler(fn func(pkt []byte, src, dst netip.AddrPort)) {
	e.mu.Lock()
	e.udp = fn
	e.mu.Unlock()
}

// Received is how many packets were delivered to e.
func (e *Endpoint) Received() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.count
}

// ErrNoRoute is returned when no endpoint has the destination address.
var ErrNoRoute = errors.New("wiretest: no endpoint for destination")

// Send transmits an IPv4 packet to the endpoint of its destination address.
func (e *Endpoint) Send(pkt []byte) error {
	if len(pkt) < ipv4hdr.MinLen {
		return errors.New("wiretest: short IPv4 packet")
	}
	p := Packet{Data: append([]byte(nil), pkt...), Src: netip.AddrPortFrom(ipv4hdr.Src(pkt), 0), Dst: netip.AddrPortFrom(ipv4hdr.Dst(pkt), 0)}
	return e.n.deliver(&p)
}

// SendESPInUDP transmits an ESP-in-UDP payload.
func (e *Endpoint) SendESPInUDP(b []byte, src, dst netip.AddrPort) error {
	p := Packet{Data: append([]byte(nil), b...), UDP: true, Src: src, Dst: dst}
	return e.n.deliver(&p)
}

// Inject delivers a packet as if it had been sent (not recorded).
func (n *Network) Inject(p Packet) error {
	p.Data = append([]byte(nil), p.Data...)
	return n.deliverTo(&p)
}

func (n *Network) deliver(p *Packet) error {
	n.mu.Lock()
	filter := n.filter
	if n.record {
		n.log = append(n.log, Packet{Data: append([]byte(nil), p.Data...), UDP: p.UDP, Src: p.Src, Dst: p.Dst})
	}
	n.mu.Unlock()
	if filter != nil && !filter(p) {
		return nil
	}
	return n.deliverTo(p)
}

func (n *Network) deliverTo(p *Packet) error {
	n.mu.Lock()
	e := n.eps[p.Dst.Addr()]
	n.mu.Unlock()
	if e == nil {
		return ErrNoRoute
	}
	e.mu.Lock()
	ip, udp := e.ip, e.udp
	e.count++
	e.mu.Unlock()
	switch {
	case p.UDP && udp != nil:
		udp(p.Data, p.Src, p.Dst)
	case !p.UDP && ip != nil:
		ip(p.Data)
	}
	return nil
}

// Protocol returns the IP protocol of a raw IPv4 packet (0 if too short).
func Protocol(pkt []byte) uint8 {
	if len(pkt) < ipv4hdr.MinLen {
		return 0
	}
	return pkt[ipv4hdr.OffsetProto]
}

// SPI returns the SPI of an ESP or AH packet (raw IPv4) or an ESP-in-UDP
// payload.
func SPI(p Packet) uint32 {
	b := p.Data
	if p.UDP {
		if len(b) < 4 {
			return 0
		}
		return binary.BigEndian.Uint32(b)
	}
	if len(b) < ipv4hdr.MinLen {
		return 0
	}
	ihl := ipv4hdr.HeaderLen(b)
	switch b[ipv4hdr.OffsetProto] {
	case 50:
		if len(b) >= ihl+4 {
			return binary.BigEndian.Uint32(b[ihl:])
		}
	case 51:
		if len(b) >= ihl+8 {
			return binary.BigEndian.Uint32(b[ihl+4:])
		}
	}
	return 0
}

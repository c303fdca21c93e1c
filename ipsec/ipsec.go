// Package ipsec holds the types shared by spiagent's IPsec dataplanes: security
// associations (SAD entries), security policies (SPD entries) with selectors,
// counters, the events a dataplane raises (acquire, expiry, invalid SPI) and
// the queue that carries them to the agent without loss or blocking
// (EventQueue), and the small Dataplane interface the agent drives.
//
// Protocols, modes, algorithms and the redacting key type are alg's, the
// vocabulary ipsec shares with ike.
//
// It must not know about IKE, the YANG model, the datastore or the agent: it
// imports nothing of spiagent but alg. Implementations live in ipsec/userspace
// (ESP and AH in Go over a TUN device) and ipsec/xfrm (the Linux kernel over
// netlink); ipsec/ipv4hdr names the IPv4 header fields both parse.
package ipsec

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/spiagent/spiagent/alg"
)

// Direction of an SA or a policy, seen from this host.
type Direction uint8

// Directions. Fwd is for policies on forwarded traffic (XFRM only).
const (
	DirIn Direction = iota
	DirOut
	DirFwd
)

func (d Direction) String() string {
	switch d {
	case DirIn:
		return "in"
	case DirOut:
		return "out"
	case DirFwd:
		return "fwd"
	}
	return fmt.Sprintf("dir-%d", uint8(d))
}

// UDPEncap describes ESP-in-UDP encapsulation (RFC 3948). Nil means raw ESP.
type UDPEncap struct {
	SrcPort uint16
	DstPort uint16
}

// SAKey identifies an SA in the SAD: destination, protocol and SPI.
type SAKey struct {
	Dst   netip.Addr
	Proto alg.Protocol
	SPI   uint32
}

func (k SAKey) String() string {
	return fmt.Sprintf("%s/%s/0x%08x", k.Dst, k.Proto, k.SPI)
}

// Lifetime limits an SA. Zero fields mean no limit. Soft limits raise an
// EventSoftExpire (time to rekey); hard limits delete the SA and raise
// EventHardExpire.
type Lifetime struct {
	SoftBytes, HardBytes uint64
	SoftTime, HardTime   time.Duration
}

// SA is one security association.
type SA struct {
	Src, Dst netip.Addr // outer addresses (tunnel endpoints or hosts)
	Proto    alg.Protocol
	SPI      uint32
	Dir      Direction
	Mode     alg.Mode
	Encap    *UDPEncap // ESP only

	// Cipher is ESP's (alg.ESPNull for integrity only; alg.CipherNone for
	// AH). CipherKey is exactly Cipher.KeyMatLen() bytes: for AES-GCM the
	// key then the 4-byte salt.
	Cipher    alg.Cipher
	CipherKey alg.Key
	Integ     alg.Integrity // alg.IntegNone with an AEAD
	IntegKey  alg.Key

	ReplayWindow uint32 // packets; 0 disables anti-replay (inbound only)
	Lifetime     Lifetime
	// ReqID ties SAs to the policies they serve. Both SAs of an AH+ESP
	// bundle, and the inbound and outbound SAs of one negotiation, share it.
	ReqID uint32
	// Selector is the traffic the SA carries (inner addresses in tunnel
	// mode), used to check decapsulated packets against policy.
	Selector Selector
}

// Key returns the SA's SAD key.
func (s *SA) Key() SAKey { return SAKey{Dst: s.Dst, Proto: s.Proto, SPI: s.SPI} }

// Validate checks that the SA is self-consistent: addresses, SPI, algorithm and
// key sizes. An unknown algorithm is an error. It never mentions key bytes in
// errors.
func (s *SA) Validate() error {
	if !s.Src.IsValid() || !s.Dst.IsValid() {
		return errors.New("ipsec: SA needs source and destination addresses")
	}
	if s.SPI < 256 {
		return fmt.Errorf("ipsec: SA %s: SPI 0x%x is reserved (RFC 4303 §2.1)", s.Key(), s.SPI)
	}
	if !s.Proto.Valid() {
		return fmt.Errorf("ipsec: SA %s: unsupported protocol %d", s.Key(), s.Proto)
	}
	if !s.Mode.Valid() {
		return fmt.Errorf("ipsec: SA %s: unknown mode %s", s.Key(), s.Mode)
	}
	if s.Proto == alg.AH {
		if s.Cipher != alg.CipherNone || len(s.CipherKey) != 0 {
			return fmt.Errorf("ipsec: SA %s: AH has no cipher", s.Key())
		}
		if s.Integ == alg.IntegNone {
			return fmt.Errorf("ipsec: SA %s: AH needs an integrity algorithm", s.Key())
		}
		if s.Encap != nil {
			return fmt.Errorf("ipsec: SA %s: AH cannot be UDP-encapsulated", s.Key())
		}
	} else if !s.Cipher.ValidESP() {
		return fmt.Errorf("ipsec: SA %s: ESP cipher %s: want a known cipher (null for integrity only)", s.Key(), s.Cipher)
	}
	if s.Integ != alg.IntegNone && !s.Integ.Valid() {
		return fmt.Errorf("ipsec: SA %s: unknown integrity algorithm %s", s.Key(), s.Integ)
	}
	if want := s.Cipher.KeyMatLen(); len(s.CipherKey) != want {
		salt := ""
		if n := s.Cipher.SaltLen(); n > 0 {
			salt = fmt.Sprintf(" (%d-byte key + %d-byte salt)", s.Cipher.KeyLen(), n)
		}
		return fmt.Errorf("ipsec: SA %s: %s key is %d bytes, want %d%s", s.Key(), s.Cipher, len(s.CipherKey), want, salt)
	}
	if want := s.Integ.KeyLen(); len(s.IntegKey) != want {
		return fmt.Errorf("ipsec: SA %s: %s key is %d bytes, want %d", s.Key(), s.Integ, len(s.IntegKey), want)
	}
	if s.Cipher.IsAEAD() && s.Integ != alg.IntegNone {
		return fmt.Errorf("ipsec: SA %s: %s takes no separate integrity algorithm", s.Key(), s.Cipher)
	}
	if s.Proto == alg.ESP && s.Cipher == alg.ESPNull && s.Integ == alg.IntegNone {
		return fmt.Errorf("ipsec: SA %s: ESP with neither encryption nor integrity", s.Key())
	}
	return nil
}

// PortRange is an inclusive range of transport ports; the zero value and
// {0, 65535} both mean any port.
type PortRange struct{ Lo, Hi uint16 }

// Any reports whether the range matches every port.
func (r PortRange) Any() bool { return r.Hi == 0 || (r.Lo == 0 && r.Hi == 65535) }

// Contains reports whether port p is in the range.
func (r PortRange) Contains(p uint16) bool { return r.Any() || (p >= r.Lo && p <= r.Hi) }

// Selector matches IPv4 traffic, as an extended access-list entry does.
// Proto 0 means any protocol.
type Selector struct {
	Src, Dst         netip.Prefix
	Proto            uint8
	SrcPort, DstPort PortRange
}

// Matches reports whether a packet's 5-tuple falls within the selector.
func (s Selector) Matches(src, dst netip.Addr, proto uint8, sport, dport uint16) bool {
	if !s.Src.Contains(src) || !s.Dst.Contains(dst) {
		return false
	}
	if s.Proto != 0 && s.Proto != proto {
		return false
	}
	return s.SrcPort.Contains(sport) && s.DstPort.Contains(dport)
}

// Mirror returns the selector for traffic in the opposite direction.
func (s Selector) Mirror() Selector {
	return Selector{Src: s.Dst, Dst: s.Src, Proto: s.Proto, SrcPort: s.DstPort, DstPort: s.SrcPort}
}

func (s Selector) String() string {
	return fmt.Sprintf("%s:%d-%d -> %s:%d-%d proto %d", s.Src, s.SrcPort.Lo, s.SrcPort.Hi, s.Dst, s.DstPort.Lo, s.DstPort.Hi, s.Proto)
}

// Action is what a policy does with matching traffic.
type Action uint8

// Actions.
const (
	ActionProtect Action = iota // apply the policy's templates (IPsec)
	ActionBypass                // send in the clear (an ACL deny entry)
	ActionDiscard               // drop
)

func (a Action) String() string {
	switch a {
	case ActionProtect:
		return "protect"
	case ActionBypass:
		return "bypass"
	case ActionDiscard:
		return "discard"
	}
	return fmt.Sprintf("action-%d", uint8(a))
}

// Template says which SA a protected packet needs: one per protocol of the
// bundle, innermost first (for the seed's AH+ESP: ESP, then AH).
type Template struct {
	Proto    alg.Protocol
	Mode     alg.Mode
	Src, Dst netip.Addr // tunnel endpoints (this router, the peer)
	ReqID    uint32
}

// PolicyKey identifies a policy.
type PolicyKey struct {
	Dir Direction
	ID  uint32
}

// Policy is one SPD entry. Lower Priority values are matched first.
type Policy struct {
	ID        uint32 // unique per direction, chosen by the caller
	Dir       Direction
	Priority  uint32
	Selector  Selector
	Action    Action
	Templates []Template
}

// Key returns the policy's SPD key.
func (p *Policy) Key() PolicyKey { return PolicyKey{Dir: p.Dir, ID: p.ID} }

// Counters are per-SA statistics.
type Counters struct {
	Packets      uint64
	Bytes        uint64 // payload bytes before encapsulation / after decapsulation
	AuthFailures uint64
	ReplayErrors uint64
	OtherErrors  uint64 // malformed, padding, policy mismatch after decap
	AddTime      time.Time
	LastUse      time.Time
}

// EventKind enumerates dataplane events.
type EventKind uint8

// Event kinds.
const (
	EventAcquire    EventKind = iota + 1 // traffic matched a protect policy with no SA
	EventSoftExpire                      // an SA reached a soft lifetime: rekey
	EventHardExpire                      // an SA reached a hard lifetime and is gone
	EventInvalidSPI                      // ESP/AH arrived for an SPI with no SA
)

func (k EventKind) String() string {
	switch k {
	case EventAcquire:
		return "acquire"
	case EventSoftExpire:
		return "soft-expire"
	case EventHardExpire:
		return "hard-expire"
	case EventInvalidSPI:
		return "invalid-spi"
	}
	return fmt.Sprintf("event-%d", uint8(k))
}

// Event is something the dataplane reports to the agent.
type Event struct {
	Kind EventKind
	Time time.Time

	// Acquire: the policy that matched and the packet that triggered it.
	Policy  PolicyKey
	Trigger Selector // the triggering packet as a host-to-host selector

	// Expiry: the SA concerned. Invalid SPI: destination, protocol and SPI
	// of the packet. Acquire: Dst and Proto of the missing SA's template
	// (the peer), SPI zero.
	SA SAKey

	// Invalid SPI: the outer source address (and port, for ESP-in-UDP).
	// Acquire: the template's local tunnel endpoint.
	Src     netip.Addr
	SrcPort uint16
}

// ErrNotFound is returned when deleting or reading an SA or policy that does
// not exist.
var ErrNotFound = errors.New("ipsec: not found")

// ErrExists is returned when adding an SA or policy whose key is in use.
var ErrExists = errors.New("ipsec: already exists")

// Dataplane is what the agent needs from an IPsec implementation.
type Dataplane interface {
	// Name says which implementation this is ("userspace", "xfrm").
	Name() string
	// AllocSPI reserves an unused inbound SPI for proto towards dst.
	AllocSPI(ctx context.Context, proto alg.Protocol, src, dst netip.Addr) (uint32, error)
	AddSA(ctx context.Context, sa SA) error
	DeleteSA(ctx context.Context, key SAKey) error
	AddPolicy(ctx context.Context, p Policy) error
	DeletePolicy(ctx context.Context, key PolicyKey) error
	// Counters reads one SA's statistics.
	Counters(ctx context.Context, key SAKey) (Counters, error)
	// Events delivers acquires, expiries and invalid SPIs. The channel is
	// closed by Close. A dataplane never blocks on a slow reader: its
	// EventQueue coalesces acquires and expiries per key (never dropping
	// them) and drops, and counts, invalid-SPI events over a bound.
	Events() <-chan Event
	// Flush removes every SA and policy this dataplane owns.
	Flush(ctx context.Context) error
	Close() error
}

// Optional capabilities. A dataplane has them or not; the agent asks with a
// type assertion (as wireguard-go's conn package does with its Bind
// capabilities) and never switches on a concrete dataplane type.

// UDPSender sends an ESP-in-UDP payload (starting at the SPI) from src to
// dst, normally from IKE's NAT-T socket so that NAT bindings and the peer
// see one flow (RFC 3948).
type UDPSender interface {
	SendESPInUDP(b []byte, src, dst netip.AddrPort) error
}

// ESPInUDPHandler is a dataplane that decapsulates ESP-in-UDP itself (the
// userspace one): IKE's NAT-T socket hands it every datagram that is not
// IKE, and it sends its own ESP-in-UDP through the UDPSender it is given.
type ESPInUDPHandler interface {
	HandleESPInUDP(pkt []byte, src, dst netip.AddrPort)
	SetUDPSender(UDPSender)
}

// UDPEncapSocket is a dataplane whose ESP-in-UDP is decapsulated by the
// kernel on IKE's own NAT-T socket (XFRM, UDP_ENCAP_ESPINUDP): the socket is
// handed over once it is bound.
type UDPEncapSocket interface {
	EnableUDPEncap(c syscall.Conn) error
}

// ForwardPolicies is a dataplane that checks decapsulated traffic it
// forwards against policies of direction DirFwd, and drops tunnel-mode
// traffic that has none (XFRM). A dataplane without it checks inbound
// policy itself and needs no fwd policies.
type ForwardPolicies interface {
	NeedsForwardPolicies() bool
}

// InvalidSPICounter is a dataplane that counts every packet with an unknown
// SPI it saw, before its own deduplication and rate limiting reduce them to
// events.
type InvalidSPICounter interface {
	InvalidSPISeen() uint64
}

// CounterDumper is a dataplane that reads the counters of every SA it owns
// at once (XFRM: one netlink dump rather than a request per SA, which at
// 10,000 tunnels is 20,000 requests per state refresh). The agent uses it
// to refresh its SA table.
type CounterDumper interface {
	AllCounters(ctx context.Context) (map[SAKey]Counters, error)
}

package ike

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/spiagent/spiagent/alg"
)

// Packet is a datagram received or to be sent. Data is the ISAKMP message
// without the RFC 3948 non-ESP marker: the transport adds it when sending
// from the NAT-T port and strips it on receipt. A one-byte 0xff Data is a
// NAT-keepalive and is sent as is.
type Packet struct {
	Local, Remote netip.AddrPort
	Data          []byte
}

// SA is one direction of one protocol of a child SA.
type SA struct {
	Proto       alg.Protocol
	SPI         uint32
	TransformID uint8 // IPsec DOI transform ID (ESP_AES=12, AH_SHA=3, ...)
	Cipher      alg.Cipher
	EncKey      alg.Key
	Integ       alg.Integrity
	IntegKey    alg.Key
}

// Encap describes ESP-in-UDP (RFC 3948); nil means none.
type Encap struct {
	LocalPort, RemotePort uint16
}

// ChildSA is an IPsec SA bundle negotiated by Quick Mode: inbound and
// outbound, AH before ESP when both are present.
type ChildSA struct {
	ID            uint64 // engine-assigned, stable for the SA's life
	Tag           string
	ReqID         uint32
	Local, Remote netip.Addr
	Mode          alg.Mode
	Encap         *Encap
	LocalTS       Selector
	RemoteTS      Selector
	In, Out       []SA
	PFS           alg.Group
	Lifetime      time.Duration
	LifetimeKB    uint64
	Initiator     bool
	Established   time.Time
}

// OutSPI returns the outbound SPI of proto, or 0.
func (c *ChildSA) OutSPI(p alg.Protocol) uint32 { return spiOf(c.Out, p) }

// InSPI returns the inbound SPI of proto, or 0.
func (c *ChildSA) InSPI(p alg.Protocol) uint32 { return spiOf(c.In, p) }

func spiOf(sas []SA, p alg.Protocol) uint32 {
	for _, s := range sas {
		if s.Proto == p {
			return s.SPI
		}
	}
	return 0
}

// withoutKeys returns a copy without key material (for deletes and snapshots).
func (c *ChildSA) withoutKeys() ChildSA {
	d := *c
	d.In = stripKeys(c.In)
	d.Out = stripKeys(c.Out)
	return d
}

func stripKeys(s []SA) []SA {
	out := make([]SA, len(s))
	for i, x := range s {
		x.EncKey, x.IntegKey = nil, nil
		out[i] = x
	}
	return out
}

// DeleteReason says why a child SA is removed.
type DeleteReason uint8

// Delete reasons.
const (
	ReasonLocal          DeleteReason = iota // DeleteChild or Clear
	ReasonPeerDelete                         // authenticated DELETE from the peer
	ReasonInvalidSPI                         // authenticated INVALID-SPI notify from the peer
	ReasonInitialContact                     // the peer sent INITIAL-CONTACT
	ReasonExpired                            // hard lifetime
	ReasonDPD                                // dead peer
)

func (r DeleteReason) String() string {
	return [...]string{"local", "peer-delete", "invalid-spi", "initial-contact", "expired", "dpd"}[r%6]
}

// ChildDelete asks the caller to remove a child SA (both directions, all
// protocols of the bundle). Key fields are empty.
type ChildDelete struct {
	ChildSA
	Reason DeleteReason
}

// EventKind classifies an Event.
type EventKind uint8

// Event kinds.
const (
	EventIKEUp EventKind = iota
	EventIKEDown
	EventNotify         // a notification was received (see Authenticated)
	EventDelete         // a DELETE payload was received
	EventDPDDead        // the peer did not answer DPD
	EventExchangeFailed // an exchange timed out or was refused
)

func (k EventKind) String() string {
	return [...]string{"ike-up", "ike-down", "notify", "delete", "dpd-dead", "exchange-failed"}[k%6]
}

// Event is something the telemetry wants to know.
type Event struct {
	Kind          EventKind
	Time          time.Time
	Local, Remote netip.Addr
	IKE           IKESAInfo // for IKE events
	NotifyType    uint16
	Proto         alg.Protocol // 0 for ISAKMP
	SPI           uint32
	Authenticated bool
	Reason        string
}

func (e Event) String() string {
	return fmt.Sprintf("%v peer=%v notify=%d proto=%v spi=%#x auth=%v %s", e.Kind, e.Remote, e.NotifyType, e.Proto, e.SPI, e.Authenticated, e.Reason)
}

// Output is what one or more steps produced; Ready drains it.
type Output struct {
	Send []Packet
	// Prepare holds the inbound SAs (In only; Out is empty) of Quick Modes
	// this engine answered: install them before sending Send, because the
	// initiator may use the SAs as soon as our second message reaches it
	// (strongSwan does). The same ID comes back in Install when the third
	// message arrives, or in Delete when it never does.
	Prepare []ChildSA
	// Install holds negotiated bundles. An initiator's come with Quick
	// Mode's third message in Send: install them first (the responder may
	// switch to them as soon as it has it).
	Install []ChildSA
	// Delete names bundles to remove, and prepared ones that will not be
	// installed.
	Delete []ChildDelete
	Events []Event
}

// Empty reports whether there is nothing to do.
func (o *Output) Empty() bool {
	return len(o.Send) == 0 && len(o.Prepare) == 0 && len(o.Install) == 0 && len(o.Delete) == 0 && len(o.Events) == 0
}

// Counters are cumulative engine counters, and the admission control
// gauges (marked as such), as IOS "show crypto call admission statistics"
// shows them.
type Counters struct {
	PacketsIn, PacketsOut       uint64
	Malformed                   uint64 // undecodable, bad hash, bad padding
	Unknown                     uint64 // for no SA we know, or out of state
	Duplicates                  uint64 // answered from the retransmit cache
	Retransmits                 uint64
	UnauthNotifies              uint64 // notifications without an authenticated SA: ignored
	NotifiesIn, NotifiesOut     uint64
	DeletesIn, DeletesOut       uint64
	InvalidSPISent              uint64
	IKEEstablished, IKEFailed   uint64
	ChildInstalled, ChildFailed uint64
	HalfOpenDropped             uint64
	PerPeerDropped              uint64
	NoProposal                  uint64
	DPDSent, DPDAcks            uint64
	Keepalives                  uint64

	// Admission control (Config.MaxInNegotiation, MaxQueued; admission.go).
	InNegotiationInitiated int    // gauge: Main/Quick Mode exchanges we started, in progress
	InNegotiationResponded int    // gauge: exchanges a peer started, in progress
	Queued                 int    // gauge: child negotiations waiting for admission
	Backoff                int    // gauge: failed or refused negotiations waiting to retry
	Admitted               uint64 // child negotiations started
	Coalesced              uint64 // requests that joined a queued, running or backing-off negotiation, or found the child SA up
	Refused                uint64 // requests refused because MaxQueued were waiting (they back off)
	OverLimitDropped       uint64 // Main/Quick Modes from peers dropped at the limit (the peer retransmits)
}

// IKESAInfo describes an IKE SA for telemetry.
type IKESAInfo struct {
	ICookie, RCookie [8]byte
	Local, Remote    netip.AddrPort
	Initiator        bool
	State            string
	Policy           Policy
	NATT             bool
	DPD              bool
	Established      time.Time
	LifetimeLeft     time.Duration
}

// Snapshot lists SAs for telemetry ("show crypto isakmp sa / ipsec sa").
type Snapshot struct {
	IKE      []IKESAInfo
	Children []ChildSA // without keys
	Counters Counters
}

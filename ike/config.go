package ike

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/spiagent/spiagent/alg"
)

// Policy is an ISAKMP (phase 1) policy, "crypto isakmp policy N". Only
// pre-shared key authentication exists here.
type Policy struct {
	Priority int
	Cipher   alg.Cipher
	Hash     alg.Hash
	Group    alg.Group
	Lifetime time.Duration
}

// Weak reports algorithms kept for compatibility only (DES, MD5, MODP
// groups below 2048 bits); they are accepted and logged as weak.
func (p Policy) Weak() bool {
	return p.Cipher.Weak() || p.Hash.Weak() || p.Group.Weak()
}

func (p Policy) String() string {
	return fmt.Sprintf("%v-%v-%v", p.Cipher, p.Hash, p.Group)
}

// NATTMode selects NAT traversal behaviour.
type NATTMode uint8

// NAT-T modes. NATTForce sends a faked NAT-D hash, as strongSwan's
// encap=yes does, so that both sides use ESP-in-UDP even without a NAT.
const (
	NATTOff NATTMode = iota
	NATTAuto
	NATTForce
)

// Config is the engine's configuration. It is replaced whole (SetConfig);
// established SAs keep what they negotiated.
type Config struct {
	// Policies are matched by ascending Priority.
	Policies []Policy
	// Keys holds pre-shared keys by peer address; the unspecified address
	// (0.0.0.0 or ::) is a wildcard. alg.Key never prints its bytes.
	Keys map[netip.Addr]alg.Key

	NATT         NATTMode
	NATKeepalive time.Duration // RFC 3948 keepalives when behind a NAT (0: 20 s)

	DPDInterval time.Duration // 0 disables periodic DPD (the vendor ID is always sent)
	DPDRetries  int           // unanswered R-U-THEREs before the peer is dead (0: 3)

	MaxHalfOpen   int // half-open IKE SAs (0: 1024)
	MaxSAsPerPeer int // IKE SAs per peer address (0: 8)

	// Admission control (see admission.go), like IOS "crypto call
	// admission limit ike in-negotiation-sa". MaxInNegotiation bounds the
	// Main and Quick Mode exchanges in negotiation, per role (0: 64);
	// MaxQueued bounds the locally initiated negotiations waiting for
	// admission, one per child policy tag (0: 16384). A failed or refused
	// negotiation is retried after RetryBase (0: 1 s), doubled per
	// consecutive failure up to RetryMax (0: 30 s), while there is demand.
	MaxInNegotiation int
	MaxQueued        int
	RetryBase        time.Duration
	RetryMax         time.Duration

	RetransmitBase  time.Duration // first retransmission timeout (0: 2 s), doubled each time
	RetransmitTries int           // retransmissions before an exchange fails (0: 4)
	ExchangeTimeout time.Duration // whole-exchange timeout (0: 30 s)

	// Port and NATTPort are the IKE ports, local and remote (0: 500 and 4500).
	Port, NATTPort uint16

	// Log receives one line per event; nil discards.
	Log *slog.Logger

	// Trace, if set, receives every ISAKMP message sent and received as
	// plaintext (decrypted bodies, the E flag cleared). For debugging and
	// for capturing fuzz corpora: it exposes nonces and KE values, never
	// the pre-shared key or derived keys.
	Trace func(sent bool, msg []byte)
}

// Transform is one IPsec proposal: AH and/or ESP (an AH+ESP bundle when
// both are set), like an IOS transform set.
type Transform struct {
	AH       alg.Integrity // alg.IntegNone: no AH
	ESP      alg.Cipher    // alg.CipherNone: no ESP
	ESPInteg alg.Integrity
	Mode     alg.Mode
}

// validate checks the combination of algorithms in t.
func (t Transform) validate() error {
	switch {
	case !t.Mode.Valid():
		return fmt.Errorf("transform %v: unknown mode", t)
	case t.AH == alg.IntegNone && t.ESP == alg.CipherNone:
		return errors.New("empty transform")
	case t.AH != alg.IntegNone && !t.AH.Valid():
		return fmt.Errorf("transform %v: unsupported AH algorithm", t)
	case t.ESP == alg.CipherNone:
		return nil
	case !t.ESP.ValidESP():
		return fmt.Errorf("transform %v: unsupported ESP cipher", t)
	case t.ESPInteg != alg.IntegNone && !t.ESPInteg.Valid():
		return fmt.Errorf("transform %v: unsupported ESP integrity algorithm", t)
	case t.ESP == alg.ESPNull && t.ESPInteg == alg.IntegNone:
		return fmt.Errorf("transform %v: ESP NULL needs an integrity algorithm", t)
	case t.ESP.IsAEAD() && t.ESPInteg != alg.IntegNone:
		return fmt.Errorf("transform %v: %v is an AEAD and takes no separate integrity algorithm", t, t.ESP)
	}
	return nil
}

func (t Transform) String() string {
	s := ""
	if t.AH != alg.IntegNone {
		s += "ah-" + t.AH.String() + " "
	}
	if t.ESP != alg.CipherNone {
		s += "esp-" + t.ESP.String() + " "
		if t.ESPInteg != alg.IntegNone {
			s += "esp-" + t.ESPInteg.String() + " "
		}
	}
	return s + t.Mode.String()
}

// Selector is one side of a traffic selector: an address or subnet, an IP
// protocol (0: any) and a port (0: any).
type Selector struct {
	Prefix netip.Prefix
	Proto  uint8
	Port   uint16
}

func (s Selector) String() string {
	return fmt.Sprintf("%v/%d/%d", s.Prefix, s.Proto, s.Port)
}

// Contains reports whether o is within s.
func (s Selector) Contains(o Selector) bool {
	return s.Prefix.Bits() <= o.Prefix.Bits() && s.Prefix.Contains(o.Prefix.Addr()) &&
		(s.Proto == 0 || s.Proto == o.Proto) && (s.Port == 0 || s.Port == o.Port)
}

// ChildPolicy is what a crypto map entry means to IKE: with which peer,
// for which traffic, with which proposals, PFS and lifetimes.
type ChildPolicy struct {
	Tag        string // opaque to the engine; returned on every ChildSA
	ReqID      uint32 // opaque to the engine; returned on every ChildSA
	Local      netip.Addr
	Peer       netip.Addr
	LocalTS    Selector
	RemoteTS   Selector
	Proposals  []Transform
	PFS        alg.Group // alg.GroupNone: no PFS
	Lifetime   time.Duration
	LifetimeKB uint64
}

// Defaults (implementation constants, IOS-like).
const (
	defaultNATKeepalive  = 20 * time.Second
	defaultDPDRetries    = 3
	defaultMaxHalfOpen   = 1024
	defaultMaxSAsPerPeer = 8
	// 64 exchanges in negotiation: a Main Mode costs about 1 ms of CPU per
	// side and a Quick Mode less, so 64 finish in well under the 2 s first
	// retransmission even on a loaded 2-core machine (no retransmissions
	// of our own making), while one RTT of 64 keeps a peer across a WAN
	// busy. The brief's and IOS deployments' usual order of magnitude.
	defaultMaxInNegotiation = 64
	// 16384 queued negotiations, one per child policy tag: room for a
	// burst on 10,000 crypto-map entries at a few hundred bytes each.
	defaultMaxQueued      = 16384
	defaultRetryBase      = time.Second
	defaultRetryMax       = 30 * time.Second
	defaultRetransmitBase = 2 * time.Second
	defaultRetransmits    = 4
	defaultExchange       = 30 * time.Second
	defaultIKELifetime    = 24 * time.Hour
	defaultChildLifetime  = time.Hour
	nonceLen              = 32
)

func (c *Config) normalize() error {
	if c.NATKeepalive == 0 {
		c.NATKeepalive = defaultNATKeepalive
	}
	if c.DPDRetries == 0 {
		c.DPDRetries = defaultDPDRetries
	}
	if c.MaxHalfOpen == 0 {
		c.MaxHalfOpen = defaultMaxHalfOpen
	}
	if c.MaxSAsPerPeer == 0 {
		c.MaxSAsPerPeer = defaultMaxSAsPerPeer
	}
	if c.MaxInNegotiation < 0 || c.MaxQueued < 0 || c.RetryBase < 0 || c.RetryMax < 0 {
		return errors.New("ike: admission limits and retry backoff must not be negative (0: the default)")
	}
	if c.MaxInNegotiation == 0 {
		c.MaxInNegotiation = defaultMaxInNegotiation
	}
	if c.MaxQueued == 0 {
		c.MaxQueued = defaultMaxQueued
	}
	if c.RetryBase == 0 {
		c.RetryBase = defaultRetryBase
	}
	if c.RetryMax == 0 {
		c.RetryMax = defaultRetryMax
	}
	if c.RetryMax < c.RetryBase {
		c.RetryMax = c.RetryBase
	}
	if c.RetransmitBase == 0 {
		c.RetransmitBase = defaultRetransmitBase
	}
	if c.RetransmitTries == 0 {
		c.RetransmitTries = defaultRetransmits
	}
	if c.ExchangeTimeout == 0 {
		c.ExchangeTimeout = defaultExchange
	}
	if c.Port == 0 {
		c.Port = 500
	}
	if c.NATTPort == 0 {
		c.NATTPort = 4500
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	ps := append([]Policy(nil), c.Policies...)
	slices.SortStableFunc(ps, func(a, b Policy) int { return cmp.Compare(a.Priority, b.Priority) })
	for i := range ps {
		p := &ps[i]
		if p.Cipher.ESPOnly() {
			return fmt.Errorf("ike: policy %d: cipher %v is ESP-only and cannot be a phase 1 (ISAKMP) cipher", p.Priority, p.Cipher)
		}
		if !p.Cipher.ValidP1() || !p.Hash.Valid() || !p.Group.Valid() {
			return fmt.Errorf("ike: policy %d: unsupported %v", p.Priority, p)
		}
		if p.Lifetime == 0 {
			p.Lifetime = defaultIKELifetime
		}
	}
	c.Policies = ps
	keys := make(map[netip.Addr]alg.Key, len(c.Keys))
	for a, k := range c.Keys {
		keys[a.Unmap()] = k.Clone()
	}
	c.Keys = keys
	return nil
}

func (c *Config) key(peer netip.Addr) (alg.Key, bool) {
	if k, ok := c.Keys[peer]; ok {
		return k, true
	}
	any := netip.IPv4Unspecified()
	if peer.Is6() {
		any = netip.IPv6Unspecified()
	}
	k, ok := c.Keys[any]
	return k, ok
}

func validateChild(p *ChildPolicy) error {
	if p.Tag == "" {
		return errors.New("ike: child policy without tag")
	}
	if !p.Peer.IsValid() || !p.LocalTS.Prefix.IsValid() || !p.RemoteTS.Prefix.IsValid() {
		return fmt.Errorf("ike: child policy %q: peer and selectors are required", p.Tag)
	}
	if len(p.Proposals) == 0 {
		return fmt.Errorf("ike: child policy %q: no proposals", p.Tag)
	}
	for _, t := range p.Proposals {
		if err := t.validate(); err != nil {
			return fmt.Errorf("ike: child policy %q: %w", p.Tag, err)
		}
	}
	if p.PFS != alg.GroupNone && !p.PFS.Valid() {
		return fmt.Errorf("ike: child policy %q: unsupported PFS group %d", p.Tag, p.PFS)
	}
	if p.Lifetime == 0 {
		p.Lifetime = defaultChildLifetime
	}
	p.LocalTS.Prefix = p.LocalTS.Prefix.Masked()
	p.RemoteTS.Prefix = p.RemoteTS.Prefix.Masked()
	return nil
}

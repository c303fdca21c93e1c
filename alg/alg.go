// Package alg is spiagent's IPsec vocabulary: the names of the security
// protocols (ESP, AH), the modes, the ciphers (ESP and IKE phase 1, each
// with its key size), the integrity algorithms, the phase 1 hash functions
// and the Diffie-Hellman groups, with the sizes their standards fix (key,
// salt, block, ICV and digest lengths). Key is the one type for secret key
// material, IPsec keys and pre-shared keys alike: it never prints its bytes.
//
// ike (and ike/suite, ike/transport) and ipsec (and its dataplanes) speak
// this vocabulary, so neither imports the other and nothing translates
// between them. alg holds names and sizes only: the cryptography lives in
// ike/suite and the dataplanes, and wire numbers (IKEv1 attribute values,
// XFRM algorithm names) live with the code that puts them on the wire.
//
// It imports nothing of spiagent.
package alg

import "fmt"

// Protocol is an IPsec security protocol, numbered as in the IP header.
type Protocol uint8

// IPsec protocols (IANA protocol numbers).
const (
	ESP Protocol = 50 // RFC 4303
	AH  Protocol = 51 // RFC 4302
)

// Valid reports whether p is ESP or AH.
func (p Protocol) Valid() bool { return p == ESP || p == AH }

func (p Protocol) String() string {
	switch p {
	case ESP:
		return "esp"
	case AH:
		return "ah"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// Mode is the IPsec encapsulation mode. The values are ordered as the
// IPsec DOI's Encapsulation Mode attribute (tunnel 1, transport 2) minus one.
type Mode uint8

// Modes.
const (
	Tunnel Mode = iota
	Transport
)

// Valid reports whether m is a known mode.
func (m Mode) Valid() bool { return m == Tunnel || m == Transport }

func (m Mode) String() string {
	switch m {
	case Tunnel:
		return "tunnel"
	case Transport:
		return "transport"
	}
	return fmt.Sprintf("mode-%d", uint8(m))
}

// Package wire is the ISAKMP (RFC 2408) message codec used by the IKEv1
// engine: the fixed header, the generic payload chain, and the payloads an
// IKEv1 Main Mode / Quick Mode / Informational exchange carries (SA with
// proposals and transforms and the IPsec DOI attributes of RFC 2407, KE, ID,
// HASH, NONCE, NOTIFY, DELETE, VENDOR ID, NAT-D and NAT-OA of RFC 3947).
//
// Every decoder checks every length against the bytes it was given, returns an
// error for malformed input and never panics (see the fuzz targets). The
// package knows nothing of encryption, keys or state: callers decrypt the body
// and hand the plaintext payload chain to ParsePayloads.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Specification constants (RFC 2408 §3.1, §3.2, RFC 2409, RFC 3947).
const (
	HeaderLen        = 28
	GenericHeaderLen = 4
	Version          = 0x10 // major 1, minor 0

	// MaxPayloads bounds the payloads accepted in one message (implementation
	// limit; real IKEv1 messages carry fewer than 16).
	MaxPayloads = 64
)

// PayloadType is an ISAKMP next-payload value.
type PayloadType uint8

// Payload types (RFC 2408 §3.1, RFC 3947 §3.2, draft-ietf-ipsec-nat-t-ike-02).
const (
	PayloadNone       PayloadType = 0
	PayloadSA         PayloadType = 1
	PayloadProposal   PayloadType = 2
	PayloadTransform  PayloadType = 3
	PayloadKE         PayloadType = 4
	PayloadID         PayloadType = 5
	PayloadCert       PayloadType = 6
	PayloadCertReq    PayloadType = 7
	PayloadHash       PayloadType = 8
	PayloadSig        PayloadType = 9
	PayloadNonce      PayloadType = 10
	PayloadNotify     PayloadType = 11
	PayloadDelete     PayloadType = 12
	PayloadVendor     PayloadType = 13
	PayloadNATD       PayloadType = 20
	PayloadNATOA      PayloadType = 21
	PayloadNATDDraft  PayloadType = 130
	PayloadNATOADraft PayloadType = 131
)

var payloadNames = map[PayloadType]string{
	PayloadNone: "NONE", PayloadSA: "SA", PayloadProposal: "P", PayloadTransform: "T",
	PayloadKE: "KE", PayloadID: "ID", PayloadCert: "CERT", PayloadCertReq: "CR",
	PayloadHash: "HASH", PayloadSig: "SIG", PayloadNonce: "NONCE", PayloadNotify: "N",
	PayloadDelete: "D", PayloadVendor: "VID", PayloadNATD: "NAT-D", PayloadNATOA: "NAT-OA",
	PayloadNATDDraft: "NAT-D(draft)", PayloadNATOADraft: "NAT-OA(draft)",
}

func (t PayloadType) String() string {
	if s, ok := payloadNames[t]; ok {
		return s
	}
	return fmt.Sprintf("PAYLOAD(%d)", uint8(t))
}

// ExchangeType is the ISAKMP exchange type.
type ExchangeType uint8

// Exchange types (RFC 2408 §3.1, RFC 2409 §9).
const (
	ExchangeMain          ExchangeType = 2 // Identity Protection
	ExchangeAggressive    ExchangeType = 4
	ExchangeInformational ExchangeType = 5
	ExchangeQuick         ExchangeType = 32
)

func (x ExchangeType) String() string {
	switch x {
	case ExchangeMain:
		return "MM"
	case ExchangeAggressive:
		return "AM"
	case ExchangeInformational:
		return "INFO"
	case ExchangeQuick:
		return "QM"
	}
	return fmt.Sprintf("EXCH(%d)", uint8(x))
}

// Header flags (RFC 2408 §3.1).
const (
	FlagEncryption = 0x01
	FlagCommit     = 0x02
	FlagAuthOnly   = 0x04
)

// Errors returned by the decoders. They are wrapped with context.
var (
	ErrShort     = errors.New("isakmp: truncated")
	ErrLength    = errors.New("isakmp: bad length")
	ErrVersion   = errors.New("isakmp: unsupported version")
	ErrMalformed = errors.New("isakmp: malformed")
)

// Header is the fixed ISAKMP header.
type Header struct {
	ICookie   [8]byte
	RCookie   [8]byte
	Next      PayloadType
	Version   uint8
	Exchange  ExchangeType
	Flags     uint8
	MessageID uint32
	Length    uint32
}

// ParseHeader decodes the fixed header of b and checks that the declared
// length is consistent with len(b). Trailing bytes beyond Length are allowed
// (and ignored by callers).
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, fmt.Errorf("isakmp: header: %w", ErrShort)
	}
	copy(h.ICookie[:], b[0:8])
	copy(h.RCookie[:], b[8:16])
	h.Next = PayloadType(b[16])
	h.Version = b[17]
	h.Exchange = ExchangeType(b[18])
	h.Flags = b[19]
	h.MessageID = binary.BigEndian.Uint32(b[20:24])
	h.Length = binary.BigEndian.Uint32(b[24:28])
	if h.Version>>4 != 1 {
		return h, fmt.Errorf("isakmp: header version %#x: %w", h.Version, ErrVersion)
	}
	if h.Length < HeaderLen || uint64(h.Length) > uint64(len(b)) {
		return h, fmt.Errorf("isakmp: header length %d of %d bytes: %w", h.Length, len(b), ErrLength)
	}
	return h, nil
}

// AppendTo appends the encoded header to b.
func (h *Header) AppendTo(b []byte) []byte {
	b = append(b, h.ICookie[:]...)
	b = append(b, h.RCookie[:]...)
	b = append(b, byte(h.Next), h.Version, byte(h.Exchange), h.Flags)
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	b = binary.BigEndian.AppendUint32(b, h.Length)
	return b
}

// RawPayload is one payload of a chain: its type and its body (without the
// generic header). Start and End are offsets of the whole payload (generic
// header included) in the chain it was parsed from; HASH computations of RFC
// 2409 need the exact bytes that follow the HASH payload.
type RawPayload struct {
	Type       PayloadType
	Body       []byte
	Start, End int
}

// ParsePayloads walks the generic payload chain in b that begins with a
// payload of type first. It stops at next-payload NONE and returns the offset
// where the chain ended: bytes after it (encryption padding) are not payloads.
func ParsePayloads(first PayloadType, b []byte) ([]RawPayload, int, error) {
	var out []RawPayload
	next, off := first, 0
	for next != PayloadNone {
		if len(out) >= MaxPayloads {
			return nil, 0, fmt.Errorf("isakmp: more than %d payloads: %w", MaxPayloads, ErrMalformed)
		}
		if len(b)-off < GenericHeaderLen {
			return nil, 0, fmt.Errorf("isakmp: payload %v header at %d: %w", next, off, ErrShort)
		}
		plen := int(binary.BigEndian.Uint16(b[off+2 : off+4]))
		if plen < GenericHeaderLen || plen > len(b)-off {
			return nil, 0, fmt.Errorf("isakmp: payload %v length %d at %d of %d: %w", next, plen, off, len(b), ErrLength)
		}
		out = append(out, RawPayload{Type: next, Body: b[off+GenericHeaderLen : off+plen], Start: off, End: off + plen})
		next = PayloadType(b[off])
		off += plen
	}
	return out, off, nil
}

// Find returns the first payload of type t, or nil.
func Find(ps []RawPayload, t PayloadType) *RawPayload {
	for i := range ps {
		if ps[i].Type == t {
			return &ps[i]
		}
	}
	return nil
}

// Builder assembles a payload chain. The first payload's type goes into the
// ISAKMP header (First), each later one into its predecessor's generic header.
type Builder struct {
	First   PayloadType
	Buf     []byte
	lastOff int
	n       int
}

// Add appends a payload of type t with the given body and returns the offset
// of its generic header in Buf.
func (b *Builder) Add(t PayloadType, body []byte) int {
	if b.n == 0 {
		b.First = t
	} else {
		b.Buf[b.lastOff] = byte(t)
	}
	off := len(b.Buf)
	b.Buf = append(b.Buf, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(b.Buf[off+2:], uint16(GenericHeaderLen+len(body)))
	b.Buf = append(b.Buf, body...)
	b.lastOff = off
	b.n++
	return off
}

// Message returns header || chain with the header's Next and Length set.
// The chain is not encrypted; see ike/suite for that.
func (b *Builder) Message(h Header) []byte {
	h.Next = b.First
	h.Version = Version
	h.Length = uint32(HeaderLen + len(b.Buf))
	out := h.AppendTo(make([]byte, 0, HeaderLen+len(b.Buf)))
	return append(out, b.Buf...)
}

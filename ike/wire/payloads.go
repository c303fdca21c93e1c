package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// DOI and situation (RFC 2407 §4.2, §4.6.1).
const (
	DOIIPsec           = 1
	SituationIdentOnly = 1
	maxProposals       = 64
	maxTransforms      = 64
	maxAttrs           = 32
	maxDeleteSPIs      = 256
)

// ProtocolID is the protocol of a proposal, notify or delete (RFC 2407 §4.4.1).
type ProtocolID uint8

// Protocol IDs.
const (
	ProtoISAKMP ProtocolID = 1
	ProtoAH     ProtocolID = 2
	ProtoESP    ProtocolID = 3
	ProtoIPComp ProtocolID = 4
)

func (p ProtocolID) String() string {
	switch p {
	case ProtoISAKMP:
		return "ISAKMP"
	case ProtoAH:
		return "AH"
	case ProtoESP:
		return "ESP"
	case ProtoIPComp:
		return "IPCOMP"
	}
	return fmt.Sprintf("PROTO(%d)", uint8(p))
}

// Phase 1 transform ID and attribute types (RFC 2409 Appendix A).
const (
	TransformKeyIKE = 1

	AttrEncryption = 1
	AttrHash       = 2
	AttrAuthMethod = 3
	AttrGroup      = 4
	AttrLifeType   = 11
	AttrLifeDur    = 12
	AttrKeyLength  = 14

	AuthPSK = 1

	LifeSeconds   = 1
	LifeKilobytes = 2
)

// Phase 2 (IPsec DOI) attribute types and values (RFC 2407 §4.5, RFC 3947 §5.2).
const (
	AttrSALifeType  = 1
	AttrSALifeDur   = 2
	AttrSAGroup     = 3
	AttrEncapMode   = 4
	AttrSAAuthAlg   = 5
	AttrSAKeyLength = 6

	EncapTunnel            = 1
	EncapTransport         = 2
	EncapUDPTunnel         = 3
	EncapUDPTransport      = 4
	EncapUDPTunnelDraft    = 61443
	EncapUDPTransportDraft = 61444
)

// Notify message types (RFC 2408 §3.14.1, RFC 2407 §4.6.3, RFC 3706).
const (
	NotifyInvalidPayloadType = 1
	NotifyInvalidCookie      = 4
	NotifyInvalidSPI         = 11
	NotifyNoProposalChosen   = 14
	NotifyPayloadMalformed   = 16
	NotifyInvalidID          = 18
	NotifyAuthFailed         = 24
	NotifyResponderLifetime  = 24576
	NotifyReplayStatus       = 24577
	NotifyInitialContact     = 24578
	NotifyRUThere            = 36136
	NotifyRUThereAck         = 36137
)

// ID types (RFC 2407 §4.6.2.1).
const (
	IDIPv4Addr   = 1
	IDFQDN       = 2
	IDUserFQDN   = 3
	IDIPv4Subnet = 4
	IDIPv6Addr   = 5
	IDIPv6Subnet = 6
	IDIPv4Range  = 7
	IDIPv6Range  = 8
	IDKeyID      = 11
)

// Attr is a data attribute (RFC 2408 §3.3). Values up to 8 bytes are decoded
// into Value; longer variable-length values are kept in Raw. Encoding uses the
// short (TV) form when Value fits 16 bits and Raw is nil.
type Attr struct {
	Type  uint16
	Value uint64
	Raw   []byte
}

// Transform is a transform payload body.
type Transform struct {
	Number uint8
	ID     uint8
	Attrs  []Attr
}

// Attr returns the value of the first attribute of type t.
func (t *Transform) Attr(typ uint16) (uint64, bool) {
	for _, a := range t.Attrs {
		if a.Type == typ {
			return a.Value, true
		}
	}
	return 0, false
}

// Proposal is a proposal payload.
type Proposal struct {
	Number     uint8
	Protocol   ProtocolID
	SPI        []byte
	Transforms []Transform
}

// SA is the body of an SA payload for the IPsec DOI.
type SA struct {
	DOI       uint32
	Situation uint32
	Proposals []Proposal
}

// DecodeSA decodes an SA payload body.
func DecodeSA(b []byte) (SA, error) {
	var sa SA
	if len(b) < 8 {
		return sa, fmt.Errorf("isakmp: SA: %w", ErrShort)
	}
	sa.DOI = binary.BigEndian.Uint32(b)
	sa.Situation = binary.BigEndian.Uint32(b[4:])
	if sa.DOI != DOIIPsec {
		return sa, fmt.Errorf("isakmp: SA DOI %d: %w", sa.DOI, ErrMalformed)
	}
	if sa.Situation != SituationIdentOnly {
		return sa, fmt.Errorf("isakmp: SA situation %#x: %w", sa.Situation, ErrMalformed)
	}
	ps, _, err := ParsePayloads(PayloadProposal, b[8:])
	if err != nil {
		return sa, fmt.Errorf("isakmp: SA proposals: %w", err)
	}
	for _, p := range ps {
		if p.Type != PayloadProposal || len(sa.Proposals) >= maxProposals {
			return sa, fmt.Errorf("isakmp: SA: %v inside SA: %w", p.Type, ErrMalformed)
		}
		prop, err := decodeProposal(p.Body)
		if err != nil {
			return sa, err
		}
		sa.Proposals = append(sa.Proposals, prop)
	}
	if len(sa.Proposals) == 0 {
		return sa, fmt.Errorf("isakmp: SA without proposal: %w", ErrMalformed)
	}
	return sa, nil
}

func decodeProposal(b []byte) (Proposal, error) {
	var p Proposal
	if len(b) < 4 {
		return p, fmt.Errorf("isakmp: proposal: %w", ErrShort)
	}
	p.Number, p.Protocol = b[0], ProtocolID(b[1])
	spiLen, nt := int(b[2]), int(b[3])
	if len(b) < 4+spiLen {
		return p, fmt.Errorf("isakmp: proposal SPI size %d: %w", spiLen, ErrLength)
	}
	if spiLen > 0 {
		p.SPI = append([]byte(nil), b[4:4+spiLen]...)
	}
	if nt == 0 {
		return p, fmt.Errorf("isakmp: proposal without transform: %w", ErrMalformed)
	}
	ts, _, err := ParsePayloads(PayloadTransform, b[4+spiLen:])
	if err != nil {
		return p, fmt.Errorf("isakmp: proposal %d transforms: %w", p.Number, err)
	}
	if len(ts) != nt || nt > maxTransforms {
		return p, fmt.Errorf("isakmp: proposal %d says %d transforms, has %d: %w", p.Number, nt, len(ts), ErrMalformed)
	}
	for _, t := range ts {
		if t.Type != PayloadTransform {
			return p, fmt.Errorf("isakmp: %v inside proposal: %w", t.Type, ErrMalformed)
		}
		tr, err := decodeTransform(t.Body)
		if err != nil {
			return p, err
		}
		p.Transforms = append(p.Transforms, tr)
	}
	return p, nil
}

func decodeTransform(b []byte) (Transform, error) {
	var t Transform
	if len(b) < 4 {
		return t, fmt.Errorf("isakmp: transform: %w", ErrShort)
	}
	t.Number, t.ID = b[0], b[1]
	attrs, err := DecodeAttrs(b[4:])
	if err != nil {
		return t, fmt.Errorf("isakmp: transform %d: %w", t.Number, err)
	}
	t.Attrs = attrs
	return t, nil
}

// DecodeAttrs decodes a sequence of data attributes.
func DecodeAttrs(b []byte) ([]Attr, error) {
	var out []Attr
	for len(b) > 0 {
		if len(out) >= maxAttrs {
			return nil, fmt.Errorf("attributes: more than %d: %w", maxAttrs, ErrMalformed)
		}
		if len(b) < 4 {
			return nil, fmt.Errorf("attribute: %w", ErrShort)
		}
		typ := binary.BigEndian.Uint16(b)
		if typ&0x8000 != 0 {
			out = append(out, Attr{Type: typ & 0x7fff, Value: uint64(binary.BigEndian.Uint16(b[2:]))})
			b = b[4:]
			continue
		}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if len(b) < 4+n {
			return nil, fmt.Errorf("attribute %d length %d: %w", typ, n, ErrLength)
		}
		a := Attr{Type: typ}
		v := b[4 : 4+n]
		if n <= 8 {
			for _, c := range v {
				a.Value = a.Value<<8 | uint64(c)
			}
		} else {
			a.Raw = append([]byte(nil), v...)
		}
		out = append(out, a)
		b = b[4+n:]
	}
	return out, nil
}

// AppendAttr appends the encoding of a to b.
func AppendAttr(b []byte, a Attr) []byte {
	if a.Raw == nil && a.Value <= 0xffff {
		b = binary.BigEndian.AppendUint16(b, a.Type|0x8000)
		return binary.BigEndian.AppendUint16(b, uint16(a.Value))
	}
	b = binary.BigEndian.AppendUint16(b, a.Type&0x7fff)
	if a.Raw != nil {
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Raw)))
		return append(b, a.Raw...)
	}
	if a.Value <= 0xffffffff {
		b = binary.BigEndian.AppendUint16(b, 4)
		return binary.BigEndian.AppendUint32(b, uint32(a.Value))
	}
	b = binary.BigEndian.AppendUint16(b, 8)
	return binary.BigEndian.AppendUint64(b, a.Value)
}

// Encode returns the SA payload body.
func (sa SA) Encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, sa.DOI)
	b = binary.BigEndian.AppendUint32(b, sa.Situation)
	var chain Builder
	for _, p := range sa.Proposals {
		body := []byte{p.Number, byte(p.Protocol), byte(len(p.SPI)), byte(len(p.Transforms))}
		body = append(body, p.SPI...)
		var tb Builder
		for _, t := range p.Transforms {
			tbody := []byte{t.Number, t.ID, 0, 0}
			for _, a := range t.Attrs {
				tbody = AppendAttr(tbody, a)
			}
			tb.Add(PayloadTransform, tbody)
		}
		chain.Add(PayloadProposal, append(body, tb.Buf...))
	}
	return append(b, chain.Buf...)
}

// ID is an identification payload body (RFC 2407 §4.6.2).
type ID struct {
	Type     uint8
	Protocol uint8
	Port     uint16
	Data     []byte
}

// DecodeID decodes an ID payload body and checks the address forms.
func DecodeID(b []byte) (ID, error) {
	var id ID
	if len(b) < 4 {
		return id, fmt.Errorf("isakmp: ID: %w", ErrShort)
	}
	id.Type, id.Protocol, id.Port = b[0], b[1], binary.BigEndian.Uint16(b[2:])
	id.Data = append([]byte(nil), b[4:]...)
	want := map[uint8]int{IDIPv4Addr: 4, IDIPv4Subnet: 8, IDIPv4Range: 8, IDIPv6Addr: 16, IDIPv6Subnet: 32, IDIPv6Range: 32}[id.Type]
	if want != 0 && len(id.Data) != want {
		return id, fmt.Errorf("isakmp: ID type %d with %d bytes: %w", id.Type, len(id.Data), ErrLength)
	}
	return id, nil
}

// Encode returns the ID payload body.
func (id *ID) Encode() []byte {
	b := []byte{id.Type, id.Protocol, 0, 0}
	binary.BigEndian.PutUint16(b[2:], id.Port)
	return append(b, id.Data...)
}

// Prefix returns the IPv4/IPv6 address or subnet an address ID names.
// Ranges are accepted only when they are exactly a prefix.
func (id *ID) Prefix() (netip.Prefix, error) {
	switch id.Type {
	case IDIPv4Addr, IDIPv6Addr:
		a, _ := netip.AddrFromSlice(id.Data)
		return netip.PrefixFrom(a, a.BitLen()), nil
	case IDIPv4Subnet, IDIPv6Subnet, IDIPv4Range, IDIPv6Range:
		n := len(id.Data) / 2
		a, _ := netip.AddrFromSlice(id.Data[:n])
		m := id.Data[n:]
		if id.Type == IDIPv4Range || id.Type == IDIPv6Range {
			return rangePrefix(a, m)
		}
		bits, ok := maskBits(m)
		if !ok {
			return netip.Prefix{}, fmt.Errorf("isakmp: ID mask %x: %w", m, ErrMalformed)
		}
		return netip.PrefixFrom(a, bits).Masked(), nil
	}
	return netip.Prefix{}, fmt.Errorf("isakmp: ID type %d is not an address: %w", id.Type, ErrMalformed)
}

func maskBits(m []byte) (int, bool) {
	bits, seenZero := 0, false
	for _, c := range m {
		for i := 7; i >= 0; i-- {
			if c&(1<<i) != 0 {
				if seenZero {
					return 0, false
				}
				bits++
			} else {
				seenZero = true
			}
		}
	}
	return bits, true
}

func rangePrefix(lo netip.Addr, hiB []byte) (netip.Prefix, error) {
	hi, _ := netip.AddrFromSlice(hiB)
	for bits := 0; bits <= lo.BitLen(); bits++ {
		p := netip.PrefixFrom(lo, bits)
		if p.Masked().Addr() == lo && lastAddr(p) == hi {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("isakmp: ID range %v-%v is not a prefix: %w", lo, hi, ErrMalformed)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// IDFromPrefix builds an address ID: a host prefix gives an ADDR ID, any
// other prefix a SUBNET ID.
func IDFromPrefix(p netip.Prefix, proto uint8, port uint16) ID {
	a := p.Addr().Unmap()
	id := ID{Protocol: proto, Port: port, Data: a.AsSlice()}
	if p.Bits() == a.BitLen() {
		id.Type = IDIPv4Addr
		if a.Is6() {
			id.Type = IDIPv6Addr
		}
		return id
	}
	id.Type = IDIPv4Subnet
	if a.Is6() {
		id.Type = IDIPv6Subnet
	}
	mask := make([]byte, len(id.Data))
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	id.Data = append(p.Masked().Addr().AsSlice(), mask...)
	return id
}

// Notify is a notification payload body (RFC 2408 §3.14).
type Notify struct {
	DOI      uint32
	Protocol ProtocolID
	Type     uint16
	SPI      []byte
	Data     []byte
}

// DecodeNotify decodes a notification payload body.
func DecodeNotify(b []byte) (Notify, error) {
	var n Notify
	if len(b) < 8 {
		return n, fmt.Errorf("isakmp: N: %w", ErrShort)
	}
	n.DOI = binary.BigEndian.Uint32(b)
	n.Protocol = ProtocolID(b[4])
	spiLen := int(b[5])
	n.Type = binary.BigEndian.Uint16(b[6:])
	if len(b) < 8+spiLen {
		return n, fmt.Errorf("isakmp: N SPI size %d: %w", spiLen, ErrLength)
	}
	n.SPI = append([]byte(nil), b[8:8+spiLen]...)
	n.Data = append([]byte(nil), b[8+spiLen:]...)
	return n, nil
}

// Encode returns the notification payload body.
func (n *Notify) Encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, n.DOI)
	b = append(b, byte(n.Protocol), byte(len(n.SPI)))
	b = binary.BigEndian.AppendUint16(b, n.Type)
	b = append(b, n.SPI...)
	return append(b, n.Data...)
}

// Delete is a delete payload body (RFC 2408 §3.15).
type Delete struct {
	DOI      uint32
	Protocol ProtocolID
	SPISize  uint8
	SPIs     [][]byte
}

// DecodeDelete decodes a delete payload body.
func DecodeDelete(b []byte) (Delete, error) {
	var d Delete
	if len(b) < 8 {
		return d, fmt.Errorf("isakmp: D: %w", ErrShort)
	}
	d.DOI = binary.BigEndian.Uint32(b)
	d.Protocol = ProtocolID(b[4])
	d.SPISize = b[5]
	n := int(binary.BigEndian.Uint16(b[6:]))
	if n > maxDeleteSPIs {
		return d, fmt.Errorf("isakmp: D with %d SPIs: %w", n, ErrMalformed)
	}
	if d.SPISize == 0 || len(b)-8 != n*int(d.SPISize) {
		return d, fmt.Errorf("isakmp: D %d SPIs of %d bytes in %d: %w", n, d.SPISize, len(b)-8, ErrLength)
	}
	for i := 0; i < n; i++ {
		off := 8 + i*int(d.SPISize)
		d.SPIs = append(d.SPIs, append([]byte(nil), b[off:off+int(d.SPISize)]...))
	}
	return d, nil
}

// Encode returns the delete payload body.
func (d *Delete) Encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, d.DOI)
	b = append(b, byte(d.Protocol), d.SPISize)
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.SPIs)))
	for _, s := range d.SPIs {
		b = append(b, s...)
	}
	return b
}

// NATOA is a NAT original address payload body (RFC 3947 §5.2).
type NATOA struct {
	Addr netip.Addr
}

// DecodeNATOA decodes a NAT-OA payload body.
func DecodeNATOA(b []byte) (NATOA, error) {
	if len(b) < 4 {
		return NATOA{}, fmt.Errorf("isakmp: NAT-OA: %w", ErrShort)
	}
	want := map[uint8]int{IDIPv4Addr: 4, IDIPv6Addr: 16}[b[0]]
	if want == 0 || len(b) != 4+want {
		return NATOA{}, fmt.Errorf("isakmp: NAT-OA type %d, %d bytes: %w", b[0], len(b), ErrMalformed)
	}
	a, _ := netip.AddrFromSlice(b[4:])
	return NATOA{Addr: a}, nil
}

// Encode returns the NAT-OA payload body.
func (n *NATOA) Encode() []byte {
	t := byte(IDIPv4Addr)
	if n.Addr.Is6() && !n.Addr.Is4In6() {
		t = IDIPv6Addr
	}
	return append([]byte{t, 0, 0, 0}, n.Addr.Unmap().AsSlice()...)
}

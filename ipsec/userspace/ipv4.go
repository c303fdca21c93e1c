package userspace

import (
	"encoding/binary"
	"net/netip"

	"github.com/spiagent/spiagent/ipsec"
	"github.com/spiagent/spiagent/ipsec/ipv4hdr"
)

// IPv4 header length and protocol numbers (RFC 791, IANA); the header's
// field offsets are package ipv4hdr's.
const (
	ipv4MinLen  = ipv4hdr.MinLen
	protoICMP   = 1
	protoIPIP   = 4 // next header of a tunnel-mode payload
	protoTCP    = 6
	protoUDP    = 17
	protoESP    = 50
	protoAH     = 51
	protoIPv6   = 41 // next header of an IPv6 tunnel payload
	protoNoNext = 59 // RFC 4303 §2.6 dummy packet
)

// flow is the 5-tuple of an IPv4 packet.
type flow struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
}

// parseIPv4 checks that pkt is one whole IPv4 packet (trimming link
// padding) and returns its header length and 5-tuple. Fragments other than
// the first report no ports.
func parseIPv4(pkt []byte) (p []byte, ihl int, f flow, ok bool) {
	if len(pkt) < ipv4MinLen || ipv4hdr.Version(pkt) != 4 {
		return nil, 0, f, false
	}
	ihl = ipv4hdr.HeaderLen(pkt)
	total := ipv4hdr.TotalLen(pkt)
	if ihl < ipv4MinLen || total < ihl || total > len(pkt) {
		return nil, 0, f, false
	}
	pkt = pkt[:total]
	f.src, f.dst = ipv4hdr.Src(pkt), ipv4hdr.Dst(pkt)
	f.proto = pkt[ipv4hdr.OffsetProto]
	if ipv4hdr.FragOff(pkt) == 0 && (f.proto == protoTCP || f.proto == protoUDP) && total >= ihl+4 {
		f.sport = binary.BigEndian.Uint16(pkt[ihl:])
		f.dport = binary.BigEndian.Uint16(pkt[ihl+2:])
	}
	return pkt, ihl, f, true
}

// isFragment reports whether the IPv4 packet is a fragment.
func isFragment(pkt []byte) bool {
	return ipv4hdr.IsFragment(pkt)
}

// writeIPv4 writes a 20-byte header for a packet of total bytes.
func writeIPv4(h []byte, src, dst netip.Addr, proto uint8, total int, id uint16, tos uint8) {
	h[ipv4hdr.OffsetVersionIHL] = ipv4hdr.VersionIHL5
	h[ipv4hdr.OffsetTOS] = tos
	binary.BigEndian.PutUint16(h[ipv4hdr.OffsetTotalLen:], uint16(total))
	binary.BigEndian.PutUint16(h[ipv4hdr.OffsetID:], id)
	binary.BigEndian.PutUint16(h[ipv4hdr.OffsetFragment:], 0)
	h[ipv4hdr.OffsetTTL] = 64
	h[ipv4hdr.OffsetProto] = proto
	s, d := src.As4(), dst.As4()
	copy(h[ipv4hdr.OffsetSrc:], s[:])
	copy(h[ipv4hdr.OffsetDst:], d[:])
	setChecksum(h[:ipv4MinLen])
}

// setLenProto rewrites the total length and protocol of the header at h
// (ihl bytes) and its checksum.
func setLenProto(h []byte, ihl, total int, proto uint8) {
	binary.BigEndian.PutUint16(h[ipv4hdr.OffsetTotalLen:], uint16(total))
	h[ipv4hdr.OffsetProto] = proto
	setChecksum(h[:ihl])
}

func setChecksum(h []byte) {
	binary.BigEndian.PutUint16(h[ipv4hdr.OffsetChecksum:], 0)
	binary.BigEndian.PutUint16(h[ipv4hdr.OffsetChecksum:], ^foldSum(h))
}

func foldSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// selector is the host-to-host selector of one packet's 5-tuple, as an
// acquire's trigger.
func (f flow) selector() ipsec.Selector {
	s := ipsec.Selector{Src: netip.PrefixFrom(f.src, 32), Dst: netip.PrefixFrom(f.dst, 32), Proto: f.proto}
	if f.proto == protoTCP || f.proto == protoUDP {
		s.SrcPort = ipsec.PortRange{Lo: f.sport, Hi: f.sport}
		s.DstPort = ipsec.PortRange{Lo: f.dport, Hi: f.dport}
	}
	return s
}

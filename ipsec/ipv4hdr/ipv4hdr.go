// Package ipv4hdr names the fields of the IPv4 header (RFC 791 §3.1) for
// the code that reads and writes packets by hand: the dataplanes' packet
// paths (ipsec/userspace and its tun, ah and rawnet pieces, ipsec/xfrm's
// invalid-SPI watcher) index headers with these offsets instead of
// numbers, as wireguard-go does with IPv4offsetSrc and IPv4offsetDst.
//
// Accessors take a slice the caller has checked is at least MinLen long
// (and, for fields after the fixed header, HeaderLen long); they do not
// check again, so they cost what the indexing they replace cost.
//
// It imports nothing of spiagent.
package ipv4hdr

import (
	"encoding/binary"
	"net/netip"
)

// Field offsets in the IPv4 header, and its fixed length.
const (
	OffsetVersionIHL = 0  // version (high nibble), header length in words (low)
	OffsetTOS        = 1  // DSCP and ECN
	OffsetTotalLen   = 2  // 16 bits
	OffsetID         = 4  // 16 bits
	OffsetFragment   = 6  // flags (3 bits) and fragment offset (13 bits)
	OffsetTTL        = 8  //
	OffsetProto      = 9  //
	OffsetChecksum   = 10 // 16 bits
	OffsetSrc        = 12 // 4 bytes
	OffsetDst        = 16 // 4 bytes
	MinLen           = 20 // without options
)

// Fragment field bits (at OffsetFragment, 16 bits big-endian).
const (
	FlagMF     = 0x2000 // more fragments
	FragOffset = 0x1fff // fragment offset, in 8-byte units
)

// VersionIHL5 is the first byte of a header without options: version 4,
// five 32-bit words.
const VersionIHL5 = 0x45

// Version is the IP version of the packet.
func Version(b []byte) int { return int(b[OffsetVersionIHL] >> 4) }

// HeaderLen is the header length in bytes, options included.
func HeaderLen(b []byte) int { return int(b[OffsetVersionIHL]&0x0f) * 4 }

// TotalLen is the total length field.
func TotalLen(b []byte) int { return int(binary.BigEndian.Uint16(b[OffsetTotalLen:])) }

// Src is the source address.
func Src(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[OffsetSrc : OffsetSrc+4])) }

// Dst is the destination address.
func Dst(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[OffsetDst : OffsetDst+4])) }

// FragOff is the fragment offset (0 for an unfragmented packet or a first
// fragment).
func FragOff(b []byte) uint16 { return binary.BigEndian.Uint16(b[OffsetFragment:]) & FragOffset }

// IsFragment reports whether the packet is a fragment (first or later).
func IsFragment(b []byte) bool {
	return binary.BigEndian.Uint16(b[OffsetFragment:])&(FlagMF|FragOffset) != 0
}

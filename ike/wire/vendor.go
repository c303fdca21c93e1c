package wire

import "bytes"

// Vendor IDs this engine sends or recognises.
var (
	// VendorNATTRFC3947 is MD5("RFC 3947").
	VendorNATTRFC3947 = []byte{0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45, 0x2f}
	// VendorNATTDraft02 is MD5("draft-ietf-ipsec-nat-t-ike-02").
	VendorNATTDraft02 = []byte{0xcd, 0x60, 0x46, 0x43, 0x35, 0xdf, 0x21, 0xf8, 0x7c, 0xfd, 0xb2, 0xfc, 0x68, 0xb6, 0xa4, 0x48}
	// VendorNATTDraft02N is MD5("draft-ietf-ipsec-nat-t-ike-02\n").
	VendorNATTDraft02N = []byte{0x90, 0xcb, 0x80, 0x91, 0x3e, 0xbb, 0x69, 0x6e, 0x08, 0x63, 0x81, 0xb5, 0xec, 0x42, 0x7b, 0x1f}
	// VendorNATTDraft03 is MD5("draft-ietf-ipsec-nat-t-ike-03").
	VendorNATTDraft03 = []byte{0x7d, 0x94, 0x19, 0xa6, 0x53, 0x10, 0xca, 0x6f, 0x2c, 0x17, 0x9d, 0x92, 0x15, 0x52, 0x9d, 0x56}
	// VendorDPD is the RFC 3706 vendor ID (version 1.0).
	VendorDPD = []byte{0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00}
)

// NATTVariant is the NAT-T dialect both peers announced.
type NATTVariant uint8

// NAT-T dialects, best last.
const (
	NATTNone NATTVariant = iota
	NATTDraft
	NATTRFC
)

// VendorNATT classifies a vendor ID payload body as a NAT-T vendor ID.
func VendorNATT(v []byte) NATTVariant {
	switch {
	case bytes.Equal(v, VendorNATTRFC3947):
		return NATTRFC
	case bytes.Equal(v, VendorNATTDraft02), bytes.Equal(v, VendorNATTDraft02N), bytes.Equal(v, VendorNATTDraft03):
		return NATTDraft
	}
	return NATTNone
}

// IsDPD reports whether v is the RFC 3706 vendor ID (any minor version).
func IsDPD(v []byte) bool {
	return len(v) == 16 && bytes.Equal(v[:15], VendorDPD[:15])
}

package ipv4hdr

import (
	"net/netip"
	"testing"
)

func TestFields(t *testing.T) {
	// 20-byte header: 84 bytes, ID 0x1234, DF, TTL 64, UDP,
	// 192.0.2.1 -> 198.51.100.7 (checksum not checked here).
	h := []byte{0x45, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0, 0, 192, 0, 2, 1, 198, 51, 100, 7}
	if Version(h) != 4 || HeaderLen(h) != MinLen || TotalLen(h) != 84 || h[OffsetProto] != 17 || h[OffsetTTL] != 64 {
		t.Fatalf("version %d ihl %d total %d", Version(h), HeaderLen(h), TotalLen(h))
	}
	if Src(h) != netip.MustParseAddr("192.0.2.1") || Dst(h) != netip.MustParseAddr("198.51.100.7") {
		t.Fatalf("src %v dst %v", Src(h), Dst(h))
	}
	if IsFragment(h) || FragOff(h) != 0 {
		t.Fatal("DF alone is not a fragment")
	}
	h[OffsetFragment] = 0x20 // MF: a first fragment
	if !IsFragment(h) || FragOff(h) != 0 {
		t.Fatal("first fragment")
	}
	h[OffsetFragment], h[OffsetFragment+1] = 0x00, 0xb9 // offset 185 * 8: a later one
	if !IsFragment(h) || FragOff(h) != 185 {
		t.Fatal("later fragment")
	}
	h[OffsetVersionIHL] = 0x46
	if HeaderLen(h) != 24 {
		t.Fatal("options")
	}
}

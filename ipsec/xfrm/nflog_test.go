package xfrm

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// ipv4 builds an IPv4 header (20 bytes, no options) followed by l4.
func ipv4(proto byte, src, dst string, l4 []byte) []byte {
	b := make([]byte, 20, 20+len(l4))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(l4)))
	b[8], b[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	return append(b, l4...)
}

func be32(v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.BigEndian.AppendUint32(b, x)
	}
	return b
}

func TestParseSPIPacket(t *testing.T) {
	udp := append([]byte{0x11, 0x94, 0x11, 0x94, 0, 20, 0, 0}, be32(0xdeadbeef, 1)...)
	ike := append([]byte{0x11, 0x94, 0x11, 0x94, 0, 20, 0, 0}, be32(0, 0x12345678)...)
	frag := ipv4(50, "192.0.2.1", "192.0.2.2", be32(0x1001, 1))
	binary.BigEndian.PutUint16(frag[6:], 100) // offset 800: a later fragment
	for _, tc := range []struct {
		desc string
		pkt  []byte
		want spiPacket
		err  bool
	}{
		{"esp", ipv4(50, "192.0.2.1", "192.0.2.2", be32(0x1001, 7)), spiPacket{src: peerA, dst: netip.MustParseAddr("192.0.2.2"), proto: alg.ESP, spi: 0x1001}, false},
		{"ah", ipv4(51, "192.0.2.1", "192.0.2.2", be32(0x04060000, 0x2002, 1)), spiPacket{src: peerA, dst: netip.MustParseAddr("192.0.2.2"), proto: alg.AH, spi: 0x2002}, false},
		{"esp in udp", ipv4(17, "192.0.2.1", "192.0.2.2", udp), spiPacket{src: peerA, dst: netip.MustParseAddr("192.0.2.2"), sport: 4500, proto: alg.ESP, spi: 0xdeadbeef}, false},
		{"ike non-esp marker", ipv4(17, "192.0.2.1", "192.0.2.2", ike), spiPacket{}, true},
		{"truncated esp", ipv4(50, "192.0.2.1", "192.0.2.2", []byte{1, 2}), spiPacket{}, true},
		{"tcp", ipv4(6, "192.0.2.1", "192.0.2.2", make([]byte, 20)), spiPacket{}, true},
		{"ipv6", append([]byte{0x60}, make([]byte, 60)...), spiPacket{}, true},
		{"bad ihl", append([]byte{0x4f}, make([]byte, 30)...), spiPacket{}, true},
		{"later fragment", frag, spiPacket{}, true},
		{"empty", nil, spiPacket{}, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := parseSPIPacket(tc.pkt)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// nflogMsg builds an NFULNL_MSG_PACKET payload: nfgenmsg, a prefix and a payload attribute.
func nflogMsg(pkt []byte) []byte {
	b := []byte{2, 0, 0x0a, 0x9e} // AF_INET, version, res_id 2718
	b = append(b, nflogAttr(10, []byte("spiagent-esp\x00"))...)
	return append(b, nflogAttr(nfulaPayload, pkt)...)
}

func TestNFLOGPayload(t *testing.T) {
	pkt := ipv4(50, "192.0.2.1", "192.0.2.2", be32(0x1001, 7))
	p, ok := nflogPayload(nflogMsg(pkt))
	if !ok || string(p) != string(pkt) {
		t.Fatalf("payload %x %v", p, ok)
	}
	if _, ok := nflogPayload([]byte{2, 0, 0, 0}); ok {
		t.Error("payload found in a message without one")
	}
	bad := nflogMsg(pkt)
	binary.NativeEndian.PutUint16(bad[4:], 2000)
	if _, ok := nflogPayload(bad); ok {
		t.Error("overlong attribute accepted")
	}
}

func TestHandleNFLOG(t *testing.T) {
	d := &Dataplane{events: testQueue(t, 8), known: map[ipsec.SAKey]bool{}, det: NewDetector(DetectorConfig{})}
	d.cfg.log = discardLogger()
	known := ipsec.SAKey{Dst: netip.MustParseAddr("192.0.2.2"), Proto: alg.ESP, SPI: 0x1001}
	d.known[known] = true
	typ := uint16(nfnlSubsysULOG<<8 | nfulnlMsgPacket)
	d.handleNFLOG(typ, nflogMsg(ipv4(50, "192.0.2.1", "192.0.2.2", be32(0x1001, 1)))) // known: raced with AddSA
	d.handleNFLOG(typ, nflogMsg(ipv4(50, "192.0.2.1", "192.0.2.2", be32(0x2002, 1))))
	d.handleNFLOG(typ, nflogMsg(ipv4(6, "192.0.2.1", "192.0.2.2", make([]byte, 20))))
	d.handleNFLOG(typ+1, nflogMsg(ipv4(50, "192.0.2.1", "192.0.2.2", be32(0x3003, 1)))) // not a packet message
	evs := drain(d.events)
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	if e := evs[0]; e.SA.SPI != 0x2002 || e.Src != peerA {
		t.Errorf("event %+v", e)
	}
	s := d.Stats()
	if s.WatchPackets != 3 || s.WatchKnown != 1 || s.WatchUnparsed != 1 || s.InvalidSPI.Reported != 1 {
		t.Errorf("stats %+v", s)
	}
}

func FuzzParseNFLOG(f *testing.F) {
	udp := append([]byte{0x11, 0x94, 0x11, 0x94, 0, 20, 0, 0}, be32(0xdeadbeef, 1)...)
	f.Add(nflogMsg(ipv4(50, "192.0.2.1", "192.0.2.2", be32(0x1001, 7))))
	f.Add(nflogMsg(ipv4(51, "192.0.2.1", "192.0.2.2", be32(0x04060000, 0x2002, 1))))
	f.Add(nflogMsg(ipv4(17, "192.0.2.1", "192.0.2.2", udp)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, ok := nflogPayload(b); ok {
			if len(p) > len(b) {
				t.Fatal("payload longer than the message")
			}
			_, _ = parseSPIPacket(p)
		}
		if pk, err := parseSPIPacket(b); err == nil && pk.spi == 0 {
			t.Fatal("SPI 0 accepted")
		}
	})
}

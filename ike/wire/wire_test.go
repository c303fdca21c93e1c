package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func sampleSA() SA {
	return SA{DOI: DOIIPsec, Situation: SituationIdentOnly, Proposals: []Proposal{
		{Number: 1, Protocol: ProtoAH, SPI: []byte{1, 2, 3, 4}, Transforms: []Transform{
			{Number: 1, ID: 3, Attrs: []Attr{{Type: AttrSALifeType, Value: 1}, {Type: AttrSALifeDur, Value: 3600}, {Type: AttrEncapMode, Value: EncapTunnel}, {Type: AttrSAAuthAlg, Value: 2}}},
		}},
		{Number: 1, Protocol: ProtoESP, SPI: []byte{5, 6, 7, 8}, Transforms: []Transform{
			{Number: 1, ID: 2, Attrs: []Attr{{Type: AttrSALifeType, Value: 2}, {Type: AttrSALifeDur, Value: 4608000}, {Type: AttrSAAuthAlg, Value: 2}}},
			{Number: 2, ID: 12, Attrs: []Attr{{Type: AttrSAKeyLength, Value: 256}, {Type: 99, Raw: bytes.Repeat([]byte{7}, 12)}}},
		}},
	}}
}

func TestSARoundTrip(t *testing.T) {
	sa := sampleSA()
	got, err := DecodeSA(sa.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(sa, got); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
	// The long life duration must have been encoded as a TLV.
	if !bytes.Contains(sa.Encode(), []byte{0x00, 0x02, 0x00, 0x04, 0x00, 0x46, 0x50, 0x00}) {
		t.Fatal("4608000 not encoded as a 4-byte TLV")
	}
}

func TestDecodeErrors(t *testing.T) {
	good := sampleSA().Encode()
	tests := []struct {
		desc string
		in   []byte
		want error
	}{
		{"empty SA", nil, ErrShort},
		{"bad DOI", append([]byte{0, 0, 0, 2}, good[4:]...), ErrMalformed},
		{"truncated proposal", good[:20], ErrLength},
		{"no proposals", good[:8], ErrShort},
		{"wrong transform count", func() []byte { b := append([]byte{}, good...); b[8+4+3] = 5; return b }(), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := DecodeSA(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestHeaderAndChain(t *testing.T) {
	var b Builder
	b.Add(PayloadSA, sampleSA().Encode())
	b.Add(PayloadVendor, VendorNATTRFC3947)
	n := Notify{DOI: DOIIPsec, Protocol: ProtoESP, Type: NotifyInvalidSPI, SPI: []byte{0xde, 0xad, 0xbe, 0xef}}
	b.Add(PayloadNotify, n.Encode())
	h := Header{ICookie: [8]byte{1}, Exchange: ExchangeMain, MessageID: 7}
	msg := b.Message(h)
	msg = append(msg, 0, 0, 0) // trailing bytes beyond Length are ignored
	got, err := ParseHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got.Next != PayloadSA || got.Exchange != ExchangeMain || got.MessageID != 7 || int(got.Length) != len(msg)-3 {
		t.Fatalf("header %+v", got)
	}
	ps, end, err := ParsePayloads(got.Next, msg[HeaderLen:got.Length])
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 || ps[1].Type != PayloadVendor || VendorNATT(ps[1].Body) != NATTRFC || end != int(got.Length)-HeaderLen {
		t.Fatalf("payloads %+v end %d", ps, end)
	}
	n2, err := DecodeNotify(Find(ps, PayloadNotify).Body)
	if err != nil || cmp.Diff(n, n2, cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) })) != "" {
		t.Fatalf("notify %+v %v", n2, err)
	}
	if _, err := ParseHeader(msg[:27]); !errors.Is(err, ErrShort) {
		t.Fatal("short header accepted")
	}
	bad := append([]byte{}, msg...)
	bad[17] = 0x20
	if _, err := ParseHeader(bad); !errors.Is(err, ErrVersion) {
		t.Fatal("version 2 accepted")
	}
	bad = append([]byte{}, msg...)
	bad[27] = 0xff
	if _, err := ParseHeader(bad); !errors.Is(err, ErrLength) {
		t.Fatal("overlong length accepted")
	}
	// A payload length that runs past the buffer.
	chain := append([]byte{}, msg[HeaderLen:got.Length]...)
	chain[3] = 0xff
	chain[2] = 0xff
	if _, _, err := ParsePayloads(PayloadSA, chain); !errors.Is(err, ErrLength) {
		t.Fatalf("bad payload length accepted: %v", err)
	}
}

func TestIDs(t *testing.T) {
	tests := []struct {
		p    string
		typ  uint8
		data int
	}{
		{"192.0.2.1/32", IDIPv4Addr, 4},
		{"198.51.100.0/24", IDIPv4Subnet, 8},
		{"0.0.0.0/0", IDIPv4Subnet, 8},
		{"2001:db8::/32", IDIPv6Subnet, 32},
	}
	for _, tc := range tests {
		p := netip.MustParsePrefix(tc.p)
		id := IDFromPrefix(p, 17, 500)
		if id.Type != tc.typ || len(id.Data) != tc.data {
			t.Fatalf("%v: %+v", p, id)
		}
		got, err := DecodeID(id.Encode())
		if err != nil {
			t.Fatal(err)
		}
		gp, err := got.Prefix()
		if err != nil || gp != p || got.Protocol != 17 || got.Port != 500 {
			t.Fatalf("%v: got %v %v %+v", p, gp, err, got)
		}
	}
	rng := ID{Type: IDIPv4Range, Data: []byte{10, 0, 0, 0, 10, 0, 0, 255}}
	if p, err := rng.Prefix(); err != nil || p != netip.MustParsePrefix("10.0.0.0/24") {
		t.Fatalf("range: %v %v", p, err)
	}
	rng.Data = []byte{10, 0, 0, 1, 10, 0, 0, 255}
	if _, err := rng.Prefix(); err == nil {
		t.Fatal("non-prefix range accepted")
	}
	bad := ID{Type: IDIPv4Subnet, Data: []byte{10, 0, 0, 0, 255, 0, 255, 0}}
	if _, err := bad.Prefix(); err == nil {
		t.Fatal("non-contiguous mask accepted")
	}
	if _, err := DecodeID([]byte{IDIPv4Addr, 0, 0, 0, 1, 2}); err == nil {
		t.Fatal("short IPv4 ID accepted")
	}
}

func TestDeleteAndNATOA(t *testing.T) {
	d := Delete{DOI: DOIIPsec, Protocol: ProtoESP, SPISize: 4, SPIs: [][]byte{{1, 2, 3, 4}, {5, 6, 7, 8}}}
	got, err := DecodeDelete(d.Encode())
	if err != nil || cmp.Diff(d, got) != "" {
		t.Fatalf("delete: %v %+v", err, got)
	}
	b := d.Encode()
	if _, err := DecodeDelete(b[:len(b)-1]); err == nil {
		t.Fatal("truncated delete accepted")
	}
	oa := NATOA{Addr: netip.MustParseAddr("192.0.2.1")}
	got2, err := DecodeNATOA(oa.Encode())
	if err != nil || got2 != oa {
		t.Fatalf("NAT-OA %v %v", got2, err)
	}
}

func TestAttrForms(t *testing.T) {
	var b []byte
	b = AppendAttr(b, Attr{Type: 1, Value: 7})
	b = AppendAttr(b, Attr{Type: 2, Value: 1 << 40})
	b = AppendAttr(b, Attr{Type: 3, Value: 1 << 20})
	got, err := DecodeAttrs(b)
	if err != nil || len(got) != 3 || got[1].Value != 1<<40 || got[2].Value != 1<<20 {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := DecodeAttrs([]byte{0, 1, 0, 9, 1}); err == nil {
		t.Fatal("overlong TLV accepted")
	}
}

// Every message captured from strongSwan 5.9.8 (decrypted, see
// lab/interop IKE_CORPUS_DIR) decodes completely, payload by payload.
func TestCharonCaptures(t *testing.T) {
	files, _ := filepath.Glob("testdata/fuzz/FuzzDecode/charon-*")
	if len(files) < 10 {
		t.Fatalf("only %d captured messages", len(files))
	}
	seen := map[PayloadType]int{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(raw), "\n", 3)
		lit := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
		s, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		msg := []byte(s)
		h, err := ParseHeader(msg)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ps, _, err := ParsePayloads(h.Next, msg[HeaderLen:h.Length])
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range ps {
			seen[p.Type]++
			var err error
			switch p.Type {
			case PayloadSA:
				_, err = DecodeSA(p.Body)
			case PayloadID:
				var id ID
				if id, err = DecodeID(p.Body); err == nil {
					_, err = id.Prefix()
				}
			case PayloadNotify:
				_, err = DecodeNotify(p.Body)
			case PayloadDelete:
				_, err = DecodeDelete(p.Body)
			}
			if err != nil {
				t.Errorf("%s: %v: %v", f, p.Type, err)
			}
		}
	}
	for _, want := range []PayloadType{PayloadSA, PayloadKE, PayloadNonce, PayloadID, PayloadHash, PayloadVendor, PayloadNATD, PayloadNotify, PayloadDelete} {
		if seen[want] == 0 {
			t.Errorf("no %v payload in the captures", want)
		}
	}
}

// ESP_AES_GCM_16 (20) with Key Length 128/256 and no Authentication
// Algorithm, ESP_NULL (11) with one: byte layout and round trip.
func TestESPGCMNullTransformRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		tr   Transform
		want []byte // the attribute TVs after the 8-byte transform header
	}{
		{Transform{Number: 1, ID: 20, Attrs: []Attr{{Type: AttrEncapMode, Value: EncapTunnel}, {Type: AttrSAKeyLength, Value: 128}}},
			[]byte{0x80, 0x04, 0x00, 0x01, 0x80, 0x06, 0x00, 0x80}},
		{Transform{Number: 1, ID: 20, Attrs: []Attr{{Type: AttrEncapMode, Value: EncapUDPTransport}, {Type: AttrSAKeyLength, Value: 256}}},
			[]byte{0x80, 0x04, 0x00, 0x04, 0x80, 0x06, 0x01, 0x00}},
		{Transform{Number: 1, ID: 11, Attrs: []Attr{{Type: AttrEncapMode, Value: EncapTunnel}, {Type: AttrSAAuthAlg, Value: 2}}},
			[]byte{0x80, 0x04, 0x00, 0x01, 0x80, 0x05, 0x00, 0x02}},
	} {
		sa := SA{DOI: DOIIPsec, Situation: SituationIdentOnly, Proposals: []Proposal{
			{Number: 1, Protocol: ProtoESP, SPI: []byte{5, 6, 7, 8}, Transforms: []Transform{tc.tr}}}}
		enc := sa.Encode()
		got, err := DecodeSA(enc)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(sa, got); d != "" {
			t.Fatalf("round trip (-want +got):\n%s", d)
		}
		if !bytes.HasSuffix(enc, tc.want) || enc[len(enc)-len(tc.want)-3] != tc.tr.ID {
			t.Fatalf("transform %d encoded as % x", tc.tr.ID, enc)
		}
	}
}

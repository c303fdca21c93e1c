package wire

import (
	"bytes"
	"testing"
)

// FuzzDecode runs every decoder over arbitrary input: the header, the
// payload chain, and each typed payload decoder on every payload found. The
// input is treated as a whole plaintext ISAKMP message (captured packets in
// testdata/fuzz/FuzzDecode are decrypted messages from strongSwan runs).
// Decoders must never panic, and what decodes must re-encode to something
// that decodes to the same value.
func FuzzDecode(f *testing.F) {
	var b Builder
	sa := sampleSA()
	b.Add(PayloadSA, sa.Encode())
	b.Add(PayloadVendor, VendorDPD)
	f.Add(b.Message(Header{Exchange: ExchangeMain}))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data)
		if err != nil {
			return
		}
		ps, _, err := ParsePayloads(h.Next, data[HeaderLen:h.Length])
		if err != nil {
			return
		}
		for _, p := range ps {
			decodeAny(t, p.Type, p.Body)
		}
	})
}

// FuzzPayload decodes one payload body of the type given by the first byte.
func FuzzPayload(f *testing.F) {
	f.Add(append([]byte{byte(PayloadSA)}, sampleSA().Encode()...))
	f.Add(append([]byte{byte(PayloadID)}, 4, 17, 1, 244, 198, 51, 100, 0, 255, 255, 255, 0))
	f.Add(append([]byte{byte(PayloadDelete)}, 0, 0, 0, 1, 3, 4, 0, 1, 1, 2, 3, 4))
	f.Add(append([]byte{byte(PayloadNotify)}, 0, 0, 0, 1, 3, 4, 0, 11, 1, 2, 3, 4))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		decodeAny(t, PayloadType(data[0]), data[1:])
	})
}

func decodeAny(t *testing.T, typ PayloadType, body []byte) {
	switch typ {
	case PayloadSA:
		sa, err := DecodeSA(body)
		if err != nil {
			return
		}
		sa2, err := DecodeSA(sa.Encode())
		if err != nil {
			t.Fatalf("re-decode SA: %v", err)
		}
		if !bytes.Equal(sa.Encode(), sa2.Encode()) {
			t.Fatal("SA re-encoding differs")
		}
	case PayloadID:
		id, err := DecodeID(body)
		if err == nil {
			id.Prefix()
			if _, err := DecodeID(id.Encode()); err != nil {
				t.Fatalf("re-decode ID: %v", err)
			}
		}
	case PayloadNotify:
		n, err := DecodeNotify(body)
		if err == nil && !bytes.Equal(n.Encode(), body) {
			t.Fatal("notify re-encoding differs")
		}
	case PayloadDelete:
		d, err := DecodeDelete(body)
		if err == nil && !bytes.Equal(d.Encode(), body) {
			t.Fatal("delete re-encoding differs")
		}
	case PayloadNATOA, PayloadNATOADraft:
		DecodeNATOA(body)
	case PayloadVendor:
		VendorNATT(body)
		IsDPD(body)
	}
}

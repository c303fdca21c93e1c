package ipsec

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/spiagent/spiagent/alg"
)

func validSA() SA {
	return SA{
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
		Proto: alg.ESP, SPI: 0x1000, Dir: DirOut,
		Cipher: alg.AES128, CipherKey: make(alg.Key, 16),
		Integ: alg.HMACSHA1, IntegKey: make(alg.Key, 20),
	}
}

func TestSAValidate(t *testing.T) {
	tests := []struct {
		desc    string
		mod     func(*SA)
		wantErr string
	}{
		{"valid esp", func(*SA) {}, ""},
		{"valid gcm 256", func(s *SA) {
			s.Cipher, s.CipherKey, s.Integ, s.IntegKey = alg.AESGCM256, make(alg.Key, 36), alg.IntegNone, nil
		}, ""},
		{"valid null+sha2", func(s *SA) {
			s.Cipher, s.CipherKey, s.Integ, s.IntegKey = alg.ESPNull, nil, alg.HMACSHA512, make(alg.Key, 64)
		}, ""},
		{"valid ah", func(s *SA) { s.Proto, s.Cipher, s.CipherKey = alg.AH, alg.CipherNone, nil }, ""},
		{"valid esp-in-udp", func(s *SA) { s.Encap = &UDPEncap{SrcPort: 4500, DstPort: 4500} }, ""},
		{"no src", func(s *SA) { s.Src = netip.Addr{} }, "addresses"},
		{"reserved spi", func(s *SA) { s.SPI = 255 }, "reserved"},
		{"bad proto", func(s *SA) { s.Proto = 6 }, "unsupported protocol"},
		{"ah with cipher", func(s *SA) { s.Proto = alg.AH }, "AH has no cipher"},
		{"ah without integ", func(s *SA) {
			s.Proto, s.Cipher, s.CipherKey, s.Integ, s.IntegKey = alg.AH, alg.CipherNone, nil, alg.IntegNone, nil
		}, "needs an integrity"},
		{"ah in udp", func(s *SA) { s.Proto, s.Cipher, s.CipherKey, s.Encap = alg.AH, alg.CipherNone, nil, &UDPEncap{} }, "UDP"},
		{"aes key 15", func(s *SA) { s.CipherKey = make(alg.Key, 15) }, "key is 15 bytes"},
		{"des key 16", func(s *SA) { s.Cipher, s.CipherKey = alg.DES, make(alg.Key, 16) }, "want 8"},
		{"3des key 8", func(s *SA) { s.Cipher, s.CipherKey = alg.TripleDES, make(alg.Key, 8) }, "want 24"},
		{"gcm without salt", func(s *SA) {
			s.Cipher, s.CipherKey, s.Integ, s.IntegKey = alg.AESGCM128, make(alg.Key, 16), alg.IntegNone, nil
		}, "salt"},
		{"gcm with hmac", func(s *SA) { s.Cipher, s.CipherKey = alg.AESGCM128, make(alg.Key, 20) }, "no separate integrity"},
		{"sha256 key short", func(s *SA) { s.Integ = alg.HMACSHA256 }, "want 32"},
		{"null null", func(s *SA) { s.Cipher, s.CipherKey, s.Integ, s.IntegKey = alg.ESPNull, nil, alg.IntegNone, nil }, "neither"},
		{"unknown cipher", func(s *SA) { s.Cipher = 99 }, "known cipher"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			sa := validSA()
			tc.mod(&sa)
			err := sa.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestKeyRedacted(t *testing.T) {
	sa := validSA()
	sa.CipherKey = alg.Key("supersecretkey16")
	for _, s := range []string{sa.CipherKey.String(), sa.CipherKey.GoString()} {
		if strings.Contains(s, "secret") {
			t.Fatalf("key printed: %s", s)
		}
	}
	sa.CipherKey = alg.Key("supersecretkey1")
	if err := sa.Validate(); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Validate error %v", err)
	}
}

func TestSelector(t *testing.T) {
	a := netip.MustParseAddr
	sel := Selector{
		Src: netip.MustParsePrefix("198.51.100.0/24"), Dst: netip.MustParsePrefix("203.0.113.0/24"),
		Proto: 17, DstPort: PortRange{Lo: 500, Hi: 600},
	}
	tests := []struct {
		desc         string
		src, dst     string
		proto        uint8
		sport, dport uint16
		want         bool
	}{
		{"inside", "198.51.100.7", "203.0.113.9", 17, 1234, 500, true},
		{"port hi edge", "198.51.100.7", "203.0.113.9", 17, 1, 600, true},
		{"port above", "198.51.100.7", "203.0.113.9", 17, 1, 601, false},
		{"port below", "198.51.100.7", "203.0.113.9", 17, 1, 499, false},
		{"wrong proto", "198.51.100.7", "203.0.113.9", 6, 1, 500, false},
		{"src outside", "198.51.101.7", "203.0.113.9", 17, 1, 500, false},
		{"dst outside", "198.51.100.7", "192.0.2.1", 17, 1, 500, false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := sel.Matches(a(tc.src), a(tc.dst), tc.proto, tc.sport, tc.dport); got != tc.want {
				t.Fatalf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
	m := sel.Mirror()
	if !m.Matches(a("203.0.113.9"), a("198.51.100.7"), 17, 550, 9) || m.Matches(a("198.51.100.7"), a("203.0.113.9"), 17, 9, 550) {
		t.Fatal("Mirror does not swap")
	}
	anyProto := Selector{Src: netip.MustParsePrefix("0.0.0.0/0"), Dst: netip.MustParsePrefix("0.0.0.0/0")}
	if !anyProto.Matches(a("192.0.2.1"), a("192.0.2.2"), 1, 0, 0) {
		t.Fatal("any selector does not match")
	}
	if (PortRange{}).Contains(0) != true || !(PortRange{Lo: 0, Hi: 65535}).Any() || (PortRange{Lo: 5, Hi: 5}).Contains(6) {
		t.Fatal("PortRange")
	}
	if !strings.Contains(sel.String(), "203.0.113.0/24:500-600") {
		t.Fatalf("String %q", sel.String())
	}
}

func TestStrings(t *testing.T) {
	for _, s := range []string{alg.ESP.String(), alg.AH.String(), alg.Transport.String(), DirFwd.String(),
		alg.AESGCM128.String(), alg.HMACSHA384.String(), ActionDiscard.String(), EventInvalidSPI.String()} {
		if s == "" || strings.Contains(s, "-%") {
			t.Fatalf("bad String %q", s)
		}
	}
	k := SAKey{Dst: netip.MustParseAddr("192.0.2.2"), Proto: alg.ESP, SPI: 0x1234}
	if k.String() != "192.0.2.2/esp/0x00001234" {
		t.Fatalf("SAKey %s", k)
	}
}

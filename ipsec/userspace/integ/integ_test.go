package integ

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/spiagent/spiagent/alg"
)

// Known answers: RFC 2202 test case 2 (HMAC-MD5, HMAC-SHA-1) and RFC 4231
// test case 2 (HMAC-SHA-256/384/512), key "Jefe", truncated as RFC 2403,
// RFC 2404 and RFC 4868 §2.3 say. The key is padded to the algorithm's key
// length with zero bytes, which HMAC treats as the same key (RFC 2104 §2).
func TestKnownAnswers(t *testing.T) {
	data := []byte("what do ya want for nothing?")
	tests := []struct {
		alg  alg.Integrity
		full string
	}{
		{alg.HMACMD5, "750c783e6ab0b503eaa86e310a5db738"},
		{alg.HMACSHA1, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"},
		{alg.HMACSHA256, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{alg.HMACSHA384, "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"},
		{alg.HMACSHA512, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
	}
	for _, tc := range tests {
		t.Run(tc.alg.String(), func(t *testing.T) {
			key := make([]byte, tc.alg.KeyLen())
			copy(key, "Jefe")
			m, err := New(tc.alg, key)
			if err != nil {
				t.Fatal(err)
			}
			full, _ := hex.DecodeString(tc.full)
			want := full[:m.Size()]
			for range 2 { // twice: Reset must really reset
				m.Reset()
				m.Write(data)
				got := make([]byte, m.Size())
				m.Sum(got)
				if !bytes.Equal(got, want) {
					t.Fatalf("ICV %x, want %x", got, want)
				}
				m.Reset()
				m.Write(data)
				if !m.Verify(want) {
					t.Fatal("Verify rejected the right ICV")
				}
				bad := bytes.Clone(want)
				bad[len(bad)-1] ^= 1
				m.Reset()
				m.Write(data)
				if m.Verify(bad) {
					t.Fatal("Verify accepted a wrong ICV")
				}
			}
		})
	}
}

func TestBadKey(t *testing.T) {
	if _, err := New(alg.HMACSHA1, make([]byte, 16)); err == nil {
		t.Fatal("short key accepted")
	}
	if _, err := New(alg.IntegNone, nil); err == nil {
		t.Fatal("IntegNone accepted")
	}
}

package esp

import (
	"bytes"
	"testing"

	"github.com/spiagent/spiagent/alg"
)

func fuzzSAs(t testing.TB) []*SA {
	var sas []*SA
	for _, c := range []struct {
		c  alg.Cipher
		kl int
		ig alg.Integrity
	}{
		{alg.ESPNull, 0, alg.IntegNone},
		{alg.ESPNull, 0, alg.HMACSHA1},
		{alg.AES128, 16, alg.IntegNone},
		{alg.AES128, 16, alg.HMACSHA1},
		{alg.DES, 8, alg.HMACMD5},
		{alg.AESGCM128, 20, alg.IntegNone},
	} {
		sa, err := New(0x4321, c.c, key(c.kl, 3), c.ig, key(c.ig.KeyLen(), 9))
		if err != nil {
			t.Fatal(err)
		}
		sas = append(sas, sa)
	}
	return sas
}

// FuzzESPDecap feeds arbitrary bytes to Open under several SAs (it must
// never panic, and a returned payload must lie inside the packet) and
// checks that Seal then Open gives the input back.
func FuzzESPDecap(f *testing.F) {
	for _, k := range kats {
		f.Add(unhex(f, k.packet))
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0x43, 0x21, 0, 0, 0, 1})
	sas := fuzzSAs(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, sa := range sas {
			in := bytes.Clone(b)
			p, _, err := sa.Open(in)
			if err == nil && len(p) > len(in) {
				t.Fatalf("payload longer than packet")
			}
			buf := make([]byte, sa.HeaderLen()+len(b), sa.SealedLen(len(b)))
			copy(buf[sa.HeaderLen():], b)
			pkt, err := sa.Seal(buf, len(b), 7, 41)
			if err != nil {
				t.Fatal(err)
			}
			got, nh, err := sa.Open(pkt)
			if err != nil || nh != 41 || !bytes.Equal(got, b) {
				t.Fatalf("round trip: err %v nh %d", err, nh)
			}
		}
	})
}

func benchSA(b *testing.B, c alg.Cipher, kl int, ig alg.Integrity) *SA {
	sa, err := New(0x1000, c, key(kl, 1), ig, key(ig.KeyLen(), 2))
	if err != nil {
		b.Fatal(err)
	}
	return sa
}

// BenchmarkESPEncryptDecrypt seals and opens one 1400-byte payload per
// iteration, in memory, on one core.
func BenchmarkESPEncryptDecrypt(b *testing.B) {
	for _, bc := range []struct {
		name string
		c    alg.Cipher
		kl   int
		ig   alg.Integrity
	}{
		{"aes-gcm-128", alg.AESGCM128, 20, alg.IntegNone},
		{"aes-gcm-256", alg.AESGCM256, 36, alg.IntegNone},
		{"aes-cbc-128-hmac-sha1", alg.AES128, 16, alg.HMACSHA1},
		{"aes-cbc-256-hmac-sha256", alg.AES256, 32, alg.HMACSHA256},
		{"des-cbc-hmac-sha1", alg.DES, 8, alg.HMACSHA1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tx := benchSA(b, bc.c, bc.kl, bc.ig)
			rx := benchSA(b, bc.c, bc.kl, bc.ig)
			const n = 1400
			buf := make([]byte, 2048)
			b.SetBytes(n)
			b.ReportAllocs()
			seq := uint32(0)
			for b.Loop() {
				seq++
				pkt, err := tx.Seal(buf, n, seq, 4)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := rx.Open(pkt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

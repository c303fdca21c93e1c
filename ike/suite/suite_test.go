package suite

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"math/big"
	"math/rand"
	"testing"

	"github.com/spiagent/spiagent/alg"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hmacSHA1(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha1.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

func TestMODPPrimesAreSafePrimes(t *testing.T) {
	bits := map[alg.Group]int{1: 768, 2: 1024, 5: 1536, 14: 2048, 15: 3072, 16: 4096}
	for g, want := range bits {
		p := modp(g)
		if p.BitLen() != want {
			t.Errorf("%v: %d bits, want %d", g, p.BitLen(), want)
		}
		// RFC 2409 §6 / RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) pi) + k):
		// the top and bottom 64 bits are all ones.
		low := new(big.Int).And(p, new(big.Int).SetUint64(^uint64(0)))
		if low.Uint64() != ^uint64(0) || new(big.Int).Rsh(p, uint(want-64)).Uint64() != ^uint64(0) {
			t.Errorf("%v: top/bottom 64 bits not all ones", g)
		}
		if !p.ProbablyPrime(10) || !new(big.Int).Rsh(p, 1).ProbablyPrime(10) {
			t.Errorf("%v: not a safe prime", g)
		}
	}
}

func TestDHAgreementAllGroups(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, g := range alg.Groups {
		a, err := GenerateKey(g, r)
		if err != nil {
			t.Fatalf("%v: %v", g, err)
		}
		b, err := GenerateKey(g, r)
		if err != nil {
			t.Fatalf("%v: %v", g, err)
		}
		if len(a.Public()) != PublicLen(g) {
			t.Errorf("%v: public %d bytes, want %d", g, len(a.Public()), PublicLen(g))
		}
		za, err := a.Shared(b.Public())
		if err != nil {
			t.Fatal(err)
		}
		zb, err := b.Shared(a.Public())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(za, zb) || len(za) == 0 {
			t.Errorf("%v: shared secrets differ", g)
		}
		if _, err := a.Shared(make([]byte, PublicLen(g))); err == nil {
			t.Errorf("%v: zero public value accepted", g)
		}
		if _, err := a.Shared([]byte{1, 2, 3}); err == nil {
			t.Errorf("%v: short public value accepted", g)
		}
	}
}

// RFC 5903 §8.1 test vector for ECP-256: KE data is x||y and the shared
// secret is the x coordinate.
func TestECP256RFC5903Vector(t *testing.T) {
	i := unhex(t, "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433")
	gi := unhex(t, "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180"+
		"5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3")
	gr := unhex(t, "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63"+
		"56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB")
	gir := unhex(t, "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE")
	k, err := GenerateKey(alg.ECP256, bytes.NewReader(i))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Public(), gi) {
		t.Fatalf("g^i = %x, want %x", k.Public(), gi)
	}
	z, err := k.Shared(gr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(z, gir) {
		t.Fatalf("g^ir = %x, want %x", z, gir)
	}
}

func TestMODPSharedMatchesFormula(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	a, _ := GenerateKey(alg.MODP1024, r)
	b, _ := GenerateKey(alg.MODP1024, r)
	p := modp(alg.MODP1024)
	want := new(big.Int).Exp(new(big.Int).SetBytes(b.Public()), a.x, p)
	got, _ := a.Shared(b.Public())
	if !bytes.Equal(got, want.FillBytes(make([]byte, 128))) {
		t.Fatal("g^xy differs from the formula")
	}
	if gx := new(big.Int).Exp(big.NewInt(2), a.x, p); !bytes.Equal(a.Public(), gx.FillBytes(make([]byte, 128))) {
		t.Fatal("g^x differs")
	}
}

// Known answers, written out from RFC 2409 §5 with HMAC-SHA1 directly.
func TestPhase1KeysSHA1(t *testing.T) {
	psk := []byte("s3cr3t-psk-for-tests")
	ni, nr := bytes.Repeat([]byte{0x11}, 20), bytes.Repeat([]byte{0x22}, 20)
	gxy := bytes.Repeat([]byte{0x33}, 256)
	ci, cr := []byte("ICOOKIE1"), []byte("RCOOKIE2")

	skeyid := hmacSHA1(psk, append(append([]byte{}, ni...), nr...))
	if got := SKEYIDPSK(alg.SHA1, psk, ni, nr); !bytes.Equal(got, skeyid) {
		t.Fatalf("SKEYID %x want %x", got, skeyid)
	}
	d := hmacSHA1(skeyid, gxy, ci, cr, []byte{0})
	a := hmacSHA1(skeyid, d, gxy, ci, cr, []byte{1})
	e := hmacSHA1(skeyid, a, gxy, ci, cr, []byte{2})
	k := Derive(alg.SHA1, alg.AES128, skeyid, gxy, ci, cr)
	if !bytes.Equal(k.D, d) || !bytes.Equal(k.A, a) || !bytes.Equal(k.E, e) {
		t.Fatal("SKEYID_d/a/e differ")
	}
	if !bytes.Equal(k.EncKey, e[:16]) {
		t.Fatal("AES128 key is not the first 16 bytes of SKEYID_e")
	}
	// AES-256 needs 32 bytes from a 20-byte SKEYID_e: Appendix B expansion.
	k1 := hmacSHA1(e, []byte{0})
	k2 := hmacSHA1(e, k1)
	k256 := Derive(alg.SHA1, alg.AES256, skeyid, gxy, ci, cr)
	if want := append(append([]byte{}, k1...), k2...)[:32]; !bytes.Equal(k256.EncKey, want) {
		t.Fatalf("expanded key %x want %x", k256.EncKey, want)
	}
	// 3DES with MD5 (16-byte SKEYID_e, 24-byte key) also expands.
	if got := ExpandKey(alg.MD5, bytes.Repeat([]byte{1}, 16), 24); len(got) != 24 || bytes.Equal(got[:16], bytes.Repeat([]byte{1}, 16)) {
		t.Fatal("MD5/3DES key not expanded")
	}
}

// A pinned regression value: SHA-256 PRF, computed once from the formula
// above and kept, so a change of Derive's argument order is caught.
func TestPhase1KeysSHA256Pinned(t *testing.T) {
	skeyid := SKEYIDPSK(alg.SHA256, []byte("k"), []byte("ni"), []byte("nr"))
	m := hmac.New(sha256.New, []byte("k"))
	m.Write([]byte("ninr"))
	if !bytes.Equal(skeyid, m.Sum(nil)) {
		t.Fatal("SKEYID sha256 differs")
	}
}

func TestIVs(t *testing.T) {
	gxi, gxr := []byte("gxi"), []byte("gxr")
	h := sha1.Sum([]byte("gxigxr"))
	if got := Phase1IV(alg.SHA1, alg.AES128, gxi, gxr); !bytes.Equal(got, h[:16]) {
		t.Fatalf("phase 1 IV %x", got)
	}
	if got := Phase1IV(alg.SHA1, alg.TripleDES, gxi, gxr); !bytes.Equal(got, h[:8]) {
		t.Fatalf("phase 1 IV 3des %x", got)
	}
	last := bytes.Repeat([]byte{0xab}, 16)
	h2 := sha1.Sum(append(append([]byte{}, last...), 0x12, 0x34, 0x56, 0x78))
	if got := Phase2IV(alg.SHA1, alg.AES128, last, 0x12345678); !bytes.Equal(got, h2[:16]) {
		t.Fatalf("phase 2 IV %x", got)
	}
}

func TestKeyMat(t *testing.T) {
	d := []byte("skeyid_d")
	ni, nr, g := []byte("NI"), []byte("NR"), []byte("GQM")
	spi := []byte{0xde, 0xad, 0xbe, 0xef}
	k1 := hmacSHA1(d, g, []byte{3}, spi, ni, nr)
	k2 := hmacSHA1(d, k1, g, []byte{3}, spi, ni, nr)
	want := append(append([]byte{}, k1...), k2...)[:36] // aes128 + sha1
	if got := KeyMat(alg.SHA1, d, g, 3, 0xdeadbeef, ni, nr, 36); !bytes.Equal(got, want) {
		t.Fatalf("KEYMAT %x want %x", got, want)
	}
	k1 = hmacSHA1(d, []byte{2}, spi, ni, nr)
	if got := KeyMat(alg.SHA1, d, nil, 2, 0xdeadbeef, ni, nr, 20); !bytes.Equal(got, k1) {
		t.Fatal("KEYMAT without PFS differs")
	}
}

// NIST SP 800-38A F.2.1 CBC-AES128 first block, then IV chaining.
func TestCBC(t *testing.T) {
	key := unhex(t, "2b7e151628aed2a6abf7158809cf4f3c")
	iv := unhex(t, "000102030405060708090a0b0c0d0e0f")
	pt := unhex(t, "6bc1bee22e409f96e93d7e117393172a")
	ct, next, err := Encrypt(alg.AES128, key, iv, pt)
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "7649abac8119b246cee98e9b12e9197d"); !bytes.Equal(ct, want) || !bytes.Equal(next, want) {
		t.Fatalf("ct %x", ct)
	}
	for _, c := range []alg.Cipher{alg.DES, alg.TripleDES, alg.AES128, alg.AES192, alg.AES256} {
		k := bytes.Repeat([]byte{7}, c.KeyLen())
		iv := bytes.Repeat([]byte{9}, c.BlockSize())
		ct, next, err := Encrypt(c, k, iv, []byte("hello, isakmp"))
		if err != nil || len(ct)%c.BlockSize() != 0 {
			t.Fatalf("%v: %v", c, err)
		}
		pt, next2, err := Decrypt(c, k, iv, ct)
		if err != nil || !bytes.HasPrefix(pt, []byte("hello, isakmp")) || !bytes.Equal(next, next2) {
			t.Fatalf("%v: round trip", c)
		}
		if _, _, err := Decrypt(c, k, iv, ct[:len(ct)-1]); err == nil {
			t.Fatalf("%v: partial block accepted", c)
		}
	}
}

func TestAttributeMaps(t *testing.T) {
	for _, c := range []alg.Cipher{alg.DES, alg.TripleDES, alg.AES128, alg.AES192, alg.AES256} {
		id, kb := P1ID(c)
		if got, ok := CipherFromP1(uint64(id), uint64(kb)); !ok || got != c {
			t.Errorf("p1 %v", c)
		}
		eid, kb := ESPID(c)
		if got, ok := CipherFromESP(eid, uint64(kb)); !ok || got != c {
			t.Errorf("esp %v", c)
		}
	}
	for _, h := range alg.Hashes {
		if got, ok := HashFromP1(uint64(HashP1ID(h))); !ok || got != h || NewHash(h).Size() != h.Size() {
			t.Errorf("hash %v", h)
		}
	}
}

func TestFixedBaseMatchesExp(t *testing.T) {
	r := rand.New(rand.NewSource(6))
	for g := range modpPrimes {
		f := fixedBaseOf(g)
		for i := 0; i < 10; i++ {
			x := new(big.Int).Rand(r, new(big.Int).Lsh(big.NewInt(1), expBits))
			if i == 0 {
				x.SetInt64(0)
			}
			if i == 1 {
				x.Sub(new(big.Int).Lsh(big.NewInt(1), expBits), big.NewInt(1))
			}
			if want := new(big.Int).Exp(big.NewInt(2), x, modp(g)); f.exp(x).Cmp(want) != 0 {
				t.Fatalf("%v: 2^x differs for i=%d", g, i)
			}
		}
	}
}

func BenchmarkKeygen2048(b *testing.B) {
	r := rand.New(rand.NewSource(7))
	x := new(big.Int).Rand(r, new(big.Int).Lsh(big.NewInt(1), expBits))
	p := modp(alg.MODP2048)
	f := fixedBaseOf(alg.MODP2048)
	b.Run("big.Exp", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			new(big.Int).Exp(big.NewInt(2), x, p)
		}
	})
	b.Run("fixed-base", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			f.exp(x)
		}
	})
}

// ESP-only ciphers: IPsec DOI IDs (ESP_NULL = 11, ESP_AES_GCM_16 = 20 with
// Key Length 128/256), key and salt lengths, and no phase 1 use.
func TestESPOnlyCiphers(t *testing.T) {
	for _, tc := range []struct {
		c                 alg.Cipher
		id                uint8
		bits              uint16
		key, salt, keymat int
		name              string
	}{
		{alg.ESPNull, 11, 0, 0, 0, 0, "null"},
		{alg.AESGCM128, 20, 128, 16, 4, 20, "aes128gcm16"},
		{alg.AESGCM256, 20, 256, 32, 4, 36, "aes256gcm16"},
	} {
		id, bits := ESPID(tc.c)
		if id != tc.id || bits != tc.bits || tc.c.KeyLen() != tc.key || tc.c.SaltLen() != tc.salt || tc.c.KeyMatLen() != tc.keymat || tc.c.String() != tc.name {
			t.Errorf("%v: id %d bits %d key %d salt %d keymat %d", tc.c, id, bits, tc.c.KeyLen(), tc.c.SaltLen(), tc.c.KeyMatLen())
		}
		if got, ok := CipherFromESP(id, uint64(bits)); !ok || got != tc.c {
			t.Errorf("%v: CipherFromESP %v %v", tc.c, got, ok)
		}
		if !tc.c.ESPOnly() || tc.c.ValidP1() || !tc.c.ValidESP() || tc.c.BlockSize() != 0 || tc.c.IsAESCBC() {
			t.Errorf("%v: classification", tc.c)
		}
		if id, _ := P1ID(tc.c); id != 0 {
			t.Errorf("%v: phase 1 ID %d", tc.c, id)
		}
		if _, _, err := Encrypt(tc.c, make([]byte, 32), make([]byte, 16), []byte("x")); err == nil {
			t.Errorf("%v: used as a phase 1 CBC cipher", tc.c)
		}
	}
	for _, bad := range [][2]uint64{{20, 0}, {20, 192}, {11, 128}} {
		if c, ok := CipherFromESP(uint8(bad[0]), bad[1]); ok {
			t.Errorf("ESP id %d key length %d gave %v", bad[0], bad[1], c)
		}
	}
	for _, c := range []alg.Cipher{alg.DES, alg.TripleDES, alg.AES128, alg.AES192, alg.AES256} {
		if c.ESPOnly() || !c.ValidP1() || !c.ValidESP() || c.SaltLen() != 0 || c.KeyMatLen() != c.KeyLen() || c.IsAEAD() {
			t.Errorf("%v: classification", c)
		}
	}
	if alg.CipherNone.ValidESP() || alg.CipherNone.ValidP1() || alg.CipherNone.KeyLen() != 0 {
		t.Error("CipherNone")
	}
}

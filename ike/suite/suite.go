// Package suite holds the IKEv1 cryptography: phase 1 CBC encryption, hash
// functions and HMAC PRFs, Diffie-Hellman in the MODP (1, 2, 5, 14, 15, 16)
// and ECP (19, 20, 21) groups, the key derivations of RFC 2409 (SKEYID for
// pre-shared keys, SKEYID_d/a/e, key expansion of Appendix B, IV derivation
// and CBC chaining, Quick Mode KEYMAT), and the IKEv1 attribute numbers of
// ciphers and hashes. The algorithms themselves are named by package alg
// (alg.Cipher, alg.Hash, alg.Group), which ike and ipsec share; suite
// implements them. It knows nothing of messages or state; randomness always
// comes from an io.Reader given by the caller.
package suite

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"github.com/spiagent/spiagent/alg"
)

// Phase 1 encryption algorithm IDs (RFC 2409 App. A) and ESP transform IDs (RFC 2407 §4.4.4).
const (
	p1DES   = 1
	p1TDES  = 5
	p1AES   = 7
	espDES  = 2
	esp3DES = 3
	espAES  = 12
	espNull = 11
	espGCM  = 20 // ESP_AES_GCM_16 (RFC 4106)
)

// P1ID returns the phase 1 encryption attribute value and key length
// attribute (0 if none); (0, 0) for a cipher that is not ValidP1.
func P1ID(c alg.Cipher) (id, keyBits uint16) {
	switch {
	case c == alg.DES:
		return p1DES, 0
	case c == alg.TripleDES:
		return p1TDES, 0
	case c.IsAESCBC():
		return p1AES, uint16(c.KeyLen() * 8)
	}
	return 0, 0
}

// ESPID returns the ESP transform ID and key length attribute (0 if none);
// (0, 0) for a cipher that is not ValidESP.
func ESPID(c alg.Cipher) (id uint8, keyBits uint16) {
	switch {
	case c == alg.DES:
		return espDES, 0
	case c == alg.TripleDES:
		return esp3DES, 0
	case c == alg.ESPNull:
		return espNull, 0
	case c.IsAEAD():
		return espGCM, uint16(c.KeyLen() * 8)
	case c.IsAESCBC():
		return espAES, uint16(c.KeyLen() * 8)
	}
	return 0, 0
}

// CipherFromP1 maps phase 1 attributes back to a cipher.
func CipherFromP1(id, keyBits uint64) (alg.Cipher, bool) {
	switch id {
	case p1DES:
		return alg.DES, keyBits == 0
	case p1TDES:
		return alg.TripleDES, keyBits == 0
	case p1AES:
		return aesBits(keyBits)
	}
	return alg.CipherNone, false
}

// CipherFromESP maps an ESP transform ID and key length back to a cipher.
func CipherFromESP(id uint8, keyBits uint64) (alg.Cipher, bool) {
	switch id {
	case espDES:
		return alg.DES, keyBits == 0
	case esp3DES:
		return alg.TripleDES, keyBits == 0
	case espAES:
		return aesBits(keyBits)
	case espNull:
		return alg.ESPNull, keyBits == 0
	case espGCM:
		switch keyBits {
		case 128:
			return alg.AESGCM128, true
		case 256:
			return alg.AESGCM256, true
		}
	}
	return alg.CipherNone, false
}

func aesBits(b uint64) (alg.Cipher, bool) {
	switch b {
	case 128:
		return alg.AES128, true
	case 192:
		return alg.AES192, true
	case 256:
		return alg.AES256, true
	}
	return alg.CipherNone, false
}

func block(c alg.Cipher, key []byte) (cipher.Block, error) {
	switch {
	case c == alg.DES:
		return des.NewCipher(key)
	case c == alg.TripleDES:
		return des.NewTripleDESCipher(key)
	case c.IsAESCBC():
		return aes.NewCipher(key)
	}
	return nil, fmt.Errorf("suite: cipher %v has no block cipher", c)
}

// ErrBlock is returned for ciphertext that is not a whole number of blocks.
var ErrBlock = errors.New("suite: ciphertext is not a multiple of the block size")

// Encrypt CBC-encrypts plain (zero-padded to a whole number of blocks, as
// RFC 2409 allows) with iv, and returns the ciphertext and the next IV (its
// last block).
func Encrypt(c alg.Cipher, key, iv, plain []byte) (ct, next []byte, err error) {
	b, err := block(c, key)
	if err != nil {
		return nil, nil, err
	}
	bs := b.BlockSize()
	n := (len(plain) + bs - 1) / bs * bs
	if n == 0 {
		n = bs
	}
	ct = make([]byte, n)
	copy(ct, plain)
	cipher.NewCBCEncrypter(b, iv[:bs]).CryptBlocks(ct, ct)
	return ct, append([]byte(nil), ct[n-bs:]...), nil
}

// Decrypt CBC-decrypts ct with iv and returns the plaintext and the next IV
// (the last ciphertext block).
func Decrypt(c alg.Cipher, key, iv, ct []byte) (plain, next []byte, err error) {
	b, err := block(c, key)
	if err != nil {
		return nil, nil, err
	}
	bs := b.BlockSize()
	if len(ct) == 0 || len(ct)%bs != 0 {
		return nil, nil, ErrBlock
	}
	next = append([]byte(nil), ct[len(ct)-bs:]...)
	plain = make([]byte, len(ct))
	cipher.NewCBCDecrypter(b, iv[:bs]).CryptBlocks(plain, ct)
	return plain, next, nil
}

// NewHash returns a new hash.Hash for h; it panics for an invalid Hash
// (callers validate first).
func NewHash(h alg.Hash) hash.Hash {
	switch h {
	case alg.MD5:
		return md5.New()
	case alg.SHA1:
		return sha1.New()
	case alg.SHA256:
		return sha256.New()
	case alg.SHA384:
		return sha512.New384()
	case alg.SHA512:
		return sha512.New()
	}
	panic("suite: hash " + h.String() + " used without validation")
}

// HashP1ID is the phase 1 hash attribute value (RFC 2409 App. A, RFC 4868);
// 0 for an invalid Hash.
func HashP1ID(h alg.Hash) uint16 {
	if !h.Valid() {
		return 0
	}
	return [...]uint16{0, 1, 2, 4, 5, 6}[h]
}

// HashFromP1 maps a phase 1 hash attribute value to a Hash.
func HashFromP1(v uint64) (alg.Hash, bool) {
	for _, h := range alg.Hashes {
		if uint64(HashP1ID(h)) == v {
			return h, true
		}
	}
	return alg.HashNone, false
}

// Sum hashes the concatenation of parts with h.
func Sum(h alg.Hash, parts ...[]byte) []byte {
	d := NewHash(h)
	for _, p := range parts {
		d.Write(p)
	}
	return d.Sum(nil)
}

// PRF is HMAC-h(key, concatenation of parts).
func PRF(h alg.Hash, key []byte, parts ...[]byte) []byte {
	m := hmac.New(func() hash.Hash { return NewHash(h) }, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// Keys are the phase 1 keying material of RFC 2409 §5.
type Keys struct {
	SKEYID, D, A, E []byte
	EncKey          []byte // SKEYID_e, expanded/truncated to the cipher key length
}

// SKEYIDPSK is SKEYID = prf(pre-shared-key, Ni_b | Nr_b) (RFC 2409 §5).
func SKEYIDPSK(h alg.Hash, psk, ni, nr []byte) []byte { return PRF(h, psk, ni, nr) }

// Derive computes SKEYID_d/a/e from SKEYID and the encryption key for c.
func Derive(h alg.Hash, c alg.Cipher, skeyid, gxy, cki, ckr []byte) Keys {
	k := Keys{SKEYID: skeyid}
	k.D = PRF(h, skeyid, gxy, cki, ckr, []byte{0})
	k.A = PRF(h, skeyid, k.D, gxy, cki, ckr, []byte{1})
	k.E = PRF(h, skeyid, k.A, gxy, cki, ckr, []byte{2})
	k.EncKey = ExpandKey(h, k.E, c.KeyLen())
	return k
}

// ExpandKey implements RFC 2409 Appendix B: when SKEYID_e is shorter than the
// key, Ka = K1 | K2 | ... with K1 = prf(SKEYID_e, 0) and Kn = prf(SKEYID_e,
// K(n-1)); the key is the first n bytes. When it is long enough, the key is
// its first n bytes.
func ExpandKey(h alg.Hash, e []byte, n int) []byte {
	if len(e) >= n {
		return append([]byte(nil), e[:n]...)
	}
	var out []byte
	k := PRF(h, e, []byte{0})
	for {
		out = append(out, k...)
		if len(out) >= n {
			return out[:n]
		}
		k = PRF(h, e, k)
	}
}

// Phase1IV is hash(g^xi | g^xr) truncated to the block size (RFC 2409 App. B).
func Phase1IV(h alg.Hash, c alg.Cipher, gxi, gxr []byte) []byte {
	return Sum(h, gxi, gxr)[:c.BlockSize()]
}

// Phase2IV is hash(last phase 1 CBC block | M-ID), the first IV of a Quick
// Mode or Informational exchange (RFC 2409 App. B).
func Phase2IV(h alg.Hash, c alg.Cipher, lastP1 []byte, msgID uint32) []byte {
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], msgID)
	return Sum(h, lastP1, m[:])[:c.BlockSize()]
}

// KeyMat computes n bytes of Quick Mode KEYMAT (RFC 2409 §5.5):
// K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b),
// Kn = prf(SKEYID_d, K(n-1) | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b).
func KeyMat(h alg.Hash, skeyidD, gqm []byte, proto uint8, spi uint32, ni, nr []byte, n int) []byte {
	var s [4]byte
	binary.BigEndian.PutUint32(s[:], spi)
	var out, k []byte
	for len(out) < n {
		k = PRF(h, skeyidD, k, gqm, []byte{proto}, s[:], ni, nr)
		out = append(out, k...)
	}
	return out[:n]
}

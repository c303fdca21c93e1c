// Package suite holds the IKEv1 cryptography: the phase 1 ciphers, hash
// functions and HMAC PRFs, the Diffie-Hellman groups (MODP 1, 2, 5, 14, 15,
// 16 and ECP 19, 20, 21), and the key derivations of RFC 2409 (SKEYID for
// pre-shared keys, SKEYID_d/a/e, key expansion of Appendix B, IV derivation
// and CBC chaining, Quick Mode KEYMAT). It knows nothing of messages or state;
// randomness always comes from an io.Reader given by the caller.
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
)

// Cipher is a phase 1 (and ESP) encryption algorithm. DES, TripleDES and
// AES128/192/256 (CBC) serve both phase 1 and ESP; ESPNull, AESGCM128 and
// AESGCM256 are ESP-only (ESPOnly reports it) and are refused as phase 1
// ciphers.
type Cipher uint8

// Ciphers. The values are this package's; P1ID and ESPID map them to
// RFC 2409 and the IPsec DOI. CipherNone means "no ESP" in a transform.
const (
	CipherNone Cipher = iota
	DES
	TripleDES
	AES128
	AES192
	AES256
	// ESPNull is ESP without encryption (RFC 2410, ESP_NULL = 11); it needs
	// an integrity algorithm.
	ESPNull
	// AESGCM128 and AESGCM256 are AES-GCM with a 16-byte ICV (RFC 4106,
	// ESP_AES_GCM_16 = 20, Key Length 128 or 256). They are AEADs: no
	// separate integrity algorithm, and their KEYMAT is the AES key
	// followed by a 4-byte salt (RFC 4106 §8.1).
	AESGCM128
	AESGCM256
)

var cipherNames = [...]string{"none", "des", "3des", "aes128", "aes192", "aes256", "null", "aes128gcm16", "aes256gcm16"}

func (c Cipher) String() string {
	if int(c) < len(cipherNames) {
		return cipherNames[c]
	}
	return fmt.Sprintf("cipher(%d)", uint8(c))
}

// KeyLen is the cipher key length in bytes (for AES-GCM, without the salt;
// for ESPNull, 0).
func (c Cipher) KeyLen() int {
	switch c {
	case DES:
		return 8
	case TripleDES, AES192:
		return 24
	case AES128, AESGCM128:
		return 16
	case AES256, AESGCM256:
		return 32
	}
	return 0
}

// SaltLen is the length of the salt taken from KEYMAT after the key: 4 for
// AES-GCM (RFC 4106 §8.1), 0 otherwise.
func (c Cipher) SaltLen() int {
	if c.IsAEAD() {
		return 4
	}
	return 0
}

// KeyMatLen is how many bytes of ESP KEYMAT the cipher takes: KeyLen plus
// SaltLen (20 or 36 for AES-GCM, key then salt).
func (c Cipher) KeyMatLen() int { return c.KeyLen() + c.SaltLen() }

// BlockSize is the CBC block size in bytes; 0 for ciphers that are not
// phase 1 block ciphers (CipherNone and the ESP-only ciphers).
func (c Cipher) BlockSize() int {
	switch c {
	case DES, TripleDES:
		return 8
	case AES128, AES192, AES256:
		return 16
	}
	return 0
}

// IsAES reports whether c is an AES-CBC variant (which carries a key length attribute).
func (c Cipher) IsAES() bool { return c >= AES128 && c <= AES256 }

// IsAEAD reports whether c is a combined-mode (AES-GCM) ESP cipher.
func (c Cipher) IsAEAD() bool { return c == AESGCM128 || c == AESGCM256 }

// ESPOnly reports whether c exists for ESP only and cannot protect phase 1.
func (c Cipher) ESPOnly() bool { return c >= ESPNull && c <= AESGCM256 }

// ValidP1 reports whether c can be a phase 1 cipher.
func (c Cipher) ValidP1() bool { return c >= DES && c <= AES256 }

// ValidESP reports whether c can be an ESP cipher.
func (c Cipher) ValidESP() bool { return c >= DES && c <= AESGCM256 }

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
func (c Cipher) P1ID() (id, keyBits uint16) {
	switch c {
	case DES:
		return p1DES, 0
	case TripleDES:
		return p1TDES, 0
	}
	if !c.IsAES() {
		return 0, 0
	}
	return p1AES, uint16(c.KeyLen() * 8)
}

// ESPID returns the ESP transform ID and key length attribute (0 if none).
func (c Cipher) ESPID() (id uint8, keyBits uint16) {
	switch c {
	case DES:
		return espDES, 0
	case TripleDES:
		return esp3DES, 0
	case ESPNull:
		return espNull, 0
	case AESGCM128, AESGCM256:
		return espGCM, uint16(c.KeyLen() * 8)
	}
	return espAES, uint16(c.KeyLen() * 8)
}

// CipherFromP1 maps phase 1 attributes back to a Cipher.
func CipherFromP1(id, keyBits uint64) (Cipher, bool) {
	switch id {
	case p1DES:
		return DES, keyBits == 0
	case p1TDES:
		return TripleDES, keyBits == 0
	case p1AES:
		return aesBits(keyBits)
	}
	return CipherNone, false
}

// CipherFromESP maps an ESP transform ID and key length back to a Cipher.
func CipherFromESP(id uint8, keyBits uint64) (Cipher, bool) {
	switch id {
	case espDES:
		return DES, keyBits == 0
	case esp3DES:
		return TripleDES, keyBits == 0
	case espAES:
		return aesBits(keyBits)
	case espNull:
		return ESPNull, keyBits == 0
	case espGCM:
		switch keyBits {
		case 128:
			return AESGCM128, true
		case 256:
			return AESGCM256, true
		}
	}
	return CipherNone, false
}

func aesBits(b uint64) (Cipher, bool) {
	switch b {
	case 128:
		return AES128, true
	case 192:
		return AES192, true
	case 256:
		return AES256, true
	}
	return CipherNone, false
}

func (c Cipher) block(key []byte) (cipher.Block, error) {
	switch c {
	case DES:
		return des.NewCipher(key)
	case TripleDES:
		return des.NewTripleDESCipher(key)
	case AES128, AES192, AES256:
		return aes.NewCipher(key)
	}
	return nil, fmt.Errorf("suite: cipher %v has no block cipher", c)
}

// ErrBlock is returned for ciphertext that is not a whole number of blocks.
var ErrBlock = errors.New("suite: ciphertext is not a multiple of the block size")

// Encrypt CBC-encrypts plain (zero-padded to a whole number of blocks, as
// RFC 2409 allows) with iv, and returns the ciphertext and the next IV (its
// last block).
func (c Cipher) Encrypt(key, iv, plain []byte) (ct, next []byte, err error) {
	b, err := c.block(key)
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
func (c Cipher) Decrypt(key, iv, ct []byte) (plain, next []byte, err error) {
	b, err := c.block(key)
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

// Hash is a phase 1 hash algorithm (and the HMAC PRF built from it).
type Hash uint8

// Hash algorithms.
const (
	HashNone Hash = iota
	MD5
	SHA1
	SHA256
	SHA384
	SHA512
)

var hashNames = [...]string{"none", "md5", "sha1", "sha256", "sha384", "sha512"}

func (h Hash) String() string {
	if int(h) < len(hashNames) {
		return hashNames[h]
	}
	return fmt.Sprintf("hash(%d)", uint8(h))
}

// New returns a new hash.Hash.
func (h Hash) New() hash.Hash {
	switch h {
	case MD5:
		return md5.New()
	case SHA1:
		return sha1.New()
	case SHA256:
		return sha256.New()
	case SHA384:
		return sha512.New384()
	case SHA512:
		return sha512.New()
	}
	panic("suite: hash " + h.String() + " used without validation")
}

// Valid reports whether h is a usable hash.
func (h Hash) Valid() bool { return h >= MD5 && h <= SHA512 }

// Size is the output length in bytes.
func (h Hash) Size() int { return [...]int{0, 16, 20, 32, 48, 64}[h%6] }

// P1ID is the phase 1 hash attribute value (RFC 2409 App. A, RFC 4868).
func (h Hash) P1ID() uint16 { return [...]uint16{0, 1, 2, 4, 5, 6}[h%6] }

// HashFromP1 maps a phase 1 hash attribute value to a Hash.
func HashFromP1(v uint64) (Hash, bool) {
	for h := MD5; h <= SHA512; h++ {
		if uint64(h.P1ID()) == v {
			return h, true
		}
	}
	return HashNone, false
}

// Sum hashes the concatenation of parts.
func (h Hash) Sum(parts ...[]byte) []byte {
	d := h.New()
	for _, p := range parts {
		d.Write(p)
	}
	return d.Sum(nil)
}

// PRF is HMAC-h(key, concatenation of parts).
func (h Hash) PRF(key []byte, parts ...[]byte) []byte {
	m := hmac.New(h.New, key)
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
func SKEYIDPSK(h Hash, psk, ni, nr []byte) []byte { return h.PRF(psk, ni, nr) }

// Derive computes SKEYID_d/a/e from SKEYID and the encryption key for c.
func Derive(h Hash, c Cipher, skeyid, gxy, cki, ckr []byte) Keys {
	k := Keys{SKEYID: skeyid}
	k.D = h.PRF(skeyid, gxy, cki, ckr, []byte{0})
	k.A = h.PRF(skeyid, k.D, gxy, cki, ckr, []byte{1})
	k.E = h.PRF(skeyid, k.A, gxy, cki, ckr, []byte{2})
	k.EncKey = ExpandKey(h, k.E, c.KeyLen())
	return k
}

// ExpandKey implements RFC 2409 Appendix B: when SKEYID_e is shorter than the
// key, Ka = K1 | K2 | ... with K1 = prf(SKEYID_e, 0) and Kn = prf(SKEYID_e,
// K(n-1)); the key is the first n bytes. When it is long enough, the key is
// its first n bytes.
func ExpandKey(h Hash, e []byte, n int) []byte {
	if len(e) >= n {
		return append([]byte(nil), e[:n]...)
	}
	var out []byte
	k := h.PRF(e, []byte{0})
	for {
		out = append(out, k...)
		if len(out) >= n {
			return out[:n]
		}
		k = h.PRF(e, k)
	}
}

// Phase1IV is hash(g^xi | g^xr) truncated to the block size (RFC 2409 App. B).
func Phase1IV(h Hash, c Cipher, gxi, gxr []byte) []byte {
	return h.Sum(gxi, gxr)[:c.BlockSize()]
}

// Phase2IV is hash(last phase 1 CBC block | M-ID), the first IV of a Quick
// Mode or Informational exchange (RFC 2409 App. B).
func Phase2IV(h Hash, c Cipher, lastP1 []byte, msgID uint32) []byte {
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], msgID)
	return h.Sum(lastP1, m[:])[:c.BlockSize()]
}

// KeyMat computes n bytes of Quick Mode KEYMAT (RFC 2409 §5.5):
// K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b),
// Kn = prf(SKEYID_d, K(n-1) | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b).
func KeyMat(h Hash, skeyidD, gqm []byte, proto uint8, spi uint32, ni, nr []byte, n int) []byte {
	var s [4]byte
	binary.BigEndian.PutUint32(s[:], spi)
	var out, k []byte
	for len(out) < n {
		k = h.PRF(skeyidD, k, gqm, []byte{proto}, s[:], ni, nr)
		out = append(out, k...)
	}
	return out[:n]
}

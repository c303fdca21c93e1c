package alg

import "fmt"

// Integrity is an AH or ESP integrity algorithm: an HMAC truncated to the
// ICV length its RFC fixes.
type Integrity uint8

// Integrity algorithms. IntegNone is the absence of one (an AEAD, or a
// transform without AH).
const (
	IntegNone  Integrity = iota
	HMACMD5              // HMAC-MD5-96 (RFC 2403); weak
	HMACSHA1             // HMAC-SHA1-96 (RFC 2404)
	HMACSHA256           // HMAC-SHA-256-128 (RFC 4868)
	HMACSHA384           // HMAC-SHA-384-192 (RFC 4868)
	HMACSHA512           // HMAC-SHA-512-256 (RFC 4868)
)

// Integrities lists every integrity algorithm, IntegNone excluded.
var Integrities = []Integrity{HMACMD5, HMACSHA1, HMACSHA256, HMACSHA384, HMACSHA512}

var integNames = [...]string{"none", "hmac-md5-96", "hmac-sha1-96", "hmac-sha2-256-128", "hmac-sha2-384-192", "hmac-sha2-512-256"}

// String is the algorithm's name as IANA's IKEv2 registry spells it
// (AUTH_HMAC_SHA2_256_128 is "hmac-sha2-256-128").
func (i Integrity) String() string {
	if int(i) < len(integNames) {
		return integNames[i]
	}
	return fmt.Sprintf("integ(%d)", uint8(i))
}

// Valid reports whether i is a known algorithm (IntegNone is not one).
func (i Integrity) Valid() bool { return i >= HMACMD5 && i <= HMACSHA512 }

// KeyLen is the HMAC key length in bytes (0 for IntegNone).
func (i Integrity) KeyLen() int {
	if !i.Valid() {
		return 0
	}
	return [...]int{0, 16, 20, 32, 48, 64}[i]
}

// ICVLen is the truncated ICV length in bytes (0 for IntegNone).
func (i Integrity) ICVLen() int {
	if !i.Valid() {
		return 0
	}
	return [...]int{0, 12, 12, 16, 24, 32}[i]
}

// MaxICVLen is the longest ICV of any Integrity (HMAC-SHA-512-256).
const MaxICVLen = 32

// Weak reports algorithms kept for compatibility only (HMAC-MD5).
func (i Integrity) Weak() bool { return i == HMACMD5 }

// Hash is an IKE phase 1 hash function (and the HMAC PRF built on it).
type Hash uint8

// Hash functions.
const (
	HashNone Hash = iota
	MD5           // weak
	SHA1
	SHA256
	SHA384
	SHA512
)

// Hashes lists every hash function, HashNone excluded.
var Hashes = []Hash{MD5, SHA1, SHA256, SHA384, SHA512}

var hashNames = [...]string{"none", "md5", "sha1", "sha256", "sha384", "sha512"}

func (h Hash) String() string {
	if int(h) < len(hashNames) {
		return hashNames[h]
	}
	return fmt.Sprintf("hash(%d)", uint8(h))
}

// Valid reports whether h is a known hash function.
func (h Hash) Valid() bool { return h >= MD5 && h <= SHA512 }

// Size is the digest length in bytes (0 for an invalid Hash).
func (h Hash) Size() int {
	if !h.Valid() {
		return 0
	}
	return [...]int{0, 16, 20, 32, 48, 64}[h]
}

// Weak reports hash functions kept for compatibility only (MD5).
func (h Hash) Weak() bool { return h == MD5 }

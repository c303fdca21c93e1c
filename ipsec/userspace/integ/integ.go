// Package integ prepares the truncated HMACs that ESP and AH use as
// integrity check values: HMAC-MD5-96 (RFC 2403), HMAC-SHA1-96 (RFC 2404)
// and HMAC-SHA-256-128, -384-192, -512-256 (RFC 4868).
//
// A MAC is built once per SA and reused for every packet (Reset, Write,
// Sum into a fixed scratch buffer), so computing an ICV allocates nothing.
// A MAC is not safe for concurrent use: the caller serialises.
package integ

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"

	"github.com/spiagent/spiagent/alg"
)

// MaxICV is the longest ICV of any supported algorithm (HMAC-SHA-512-256).
const MaxICV = alg.MaxICVLen

// MAC is one SA's prepared integrity transform.
type MAC struct {
	h       hash.Hash
	icv     int
	scratch [sha512.Size]byte
}

// New prepares a with key. The key length must be the algorithm's
// (alg.Integrity.KeyLen); an unknown algorithm is an error, and key bytes
// never appear in errors.
func New(a alg.Integrity, key []byte) (*MAC, error) {
	var fn func() hash.Hash
	switch a {
	case alg.HMACMD5:
		fn = md5.New
	case alg.HMACSHA1:
		fn = sha1.New
	case alg.HMACSHA256:
		fn = sha256.New
	case alg.HMACSHA384:
		fn = sha512.New384
	case alg.HMACSHA512:
		fn = sha512.New
	case alg.IntegNone:
		return nil, errors.New("integ: no algorithm")
	default:
		return nil, fmt.Errorf("integ: unsupported algorithm %s", a)
	}
	if want := a.KeyLen(); len(key) != want {
		return nil, fmt.Errorf("integ: %s key is %d bytes, want %d", a, len(key), want)
	}
	return &MAC{h: hmac.New(fn, key), icv: a.ICVLen()}, nil
}

// Size is the ICV length in bytes.
func (m *MAC) Size() int { return m.icv }

// Reset starts a new ICV computation.
func (m *MAC) Reset() { m.h.Reset() }

// Write adds data to the ICV computation.
func (m *MAC) Write(b []byte) { m.h.Write(b) }

// Sum writes the truncated ICV into dst[:Size()].
func (m *MAC) Sum(dst []byte) {
	sum := m.h.Sum(m.scratch[:0])
	copy(dst[:m.icv], sum)
}

// Verify reports, in constant time, whether icv is the ICV of the data
// written since Reset.
func (m *MAC) Verify(icv []byte) bool {
	if len(icv) != m.icv {
		return false
	}
	sum := m.h.Sum(m.scratch[:0])
	return subtle.ConstantTimeCompare(sum[:m.icv], icv) == 1
}

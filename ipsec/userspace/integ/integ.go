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

	"github.com/spiagent/spiagent/ipsec"
)

// MaxICV is the longest ICV of any supported algorithm (HMAC-SHA-512-256).
const MaxICV = 32

// MAC is one SA's prepared integrity transform.
type MAC struct {
	h       hash.Hash
	icv     int
	scratch [sha512.Size]byte
}

// New prepares alg with key. The key length must be the algorithm's
// (ipsec.IntegKeyLen); key bytes never appear in errors.
func New(alg ipsec.Integrity, key []byte) (*MAC, error) {
	var fn func() hash.Hash
	var icv int
	switch alg {
	case ipsec.IntegHMACMD596:
		fn, icv = md5.New, 12
	case ipsec.IntegHMACSHA196:
		fn, icv = sha1.New, 12
	case ipsec.IntegHMACSHA256128:
		fn, icv = sha256.New, 16
	case ipsec.IntegHMACSHA384192:
		fn, icv = sha512.New384, 24
	case ipsec.IntegHMACSHA512256:
		fn, icv = sha512.New, 32
	case ipsec.IntegNone:
		return nil, errors.New("integ: no algorithm")
	default:
		return nil, fmt.Errorf("integ: unsupported algorithm %s", alg)
	}
	if want := ipsec.IntegKeyLen(alg); len(key) != want {
		return nil, fmt.Errorf("integ: %s key is %d bytes, want %d", alg, len(key), want)
	}
	return &MAC{h: hmac.New(fn, key), icv: icv}, nil
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

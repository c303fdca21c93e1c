// Package ah is the Authentication Header transform (RFC 4302) for one SA
// over IPv4: it computes and verifies the ICV of a whole IPv4 packet with
// the mutable header fields (TOS, flags and fragment offset, TTL, header
// checksum: RFC 4302 §3.3.3.1.1.1) taken as zero.
//
// The integrity algorithms are package integ's truncated HMACs, whose ICVs
// (12, 16, 24 or 32 bytes) keep the AH header a multiple of 32 bits, so no
// ICV padding is ever needed for IPv4. IPv4 options are not supported (a
// packet carrying them is refused as malformed). It knows nothing of SA
// databases or anti-replay.
package ah

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec/ipv4hdr"
	"github.com/spiagent/spiagent/ipsec/userspace/integ"
)

// Specification constants (RFC 4302 §2, RFC 791).
const (
	FixedLen = 12 // next header, payload length, reserved, SPI, sequence
	ipv4Len  = ipv4hdr.MinLen
	Protocol = 51
)

// Errors Open returns.
var (
	ErrShort     = errors.New("ah: packet too short")
	ErrAuth      = errors.New("ah: integrity check failed")
	ErrMalformed = errors.New("ah: malformed header")
)

// SA is the prepared AH transform of one security association. Seal and
// Open may be called from several goroutines.
type SA struct {
	spi  uint32
	mu   sync.Mutex
	mac  *integ.MAC
	hdr  [ipv4Len]byte
	zero [integ.MaxICV]byte
}

// New prepares the transform.
func New(spi uint32, ig alg.Integrity, key []byte) (*SA, error) {
	m, err := integ.New(ig, key)
	if err != nil {
		return nil, fmt.Errorf("ah: %w", err)
	}
	return &SA{spi: spi, mac: m}, nil
}

// HeaderLen is the AH header length including the ICV.
func (s *SA) HeaderLen() int { return FixedLen + s.mac.Size() }

// Seal writes the AH header into pkt[20:20+HeaderLen()] and its ICV. pkt is
// a complete IPv4 packet without options: the caller has set the protocol
// to 51, the total length, addresses and identification, and put the
// protected payload after the AH header.
func (s *SA) Seal(pkt []byte, seq uint32, nextHdr uint8) error {
	hl := s.HeaderLen()
	if len(pkt) < ipv4Len+hl || pkt[ipv4hdr.OffsetVersionIHL] != ipv4hdr.VersionIHL5 {
		return ErrShort
	}
	a := pkt[ipv4Len : ipv4Len+hl]
	a[0] = nextHdr
	a[1] = byte(hl/4 - 2)
	a[2], a[3] = 0, 0
	binary.BigEndian.PutUint32(a[4:], s.spi)
	binary.BigEndian.PutUint32(a[8:], seq)
	s.mu.Lock()
	s.sum(pkt, hl)
	s.mac.Sum(a[FixedLen:])
	s.mu.Unlock()
	return nil
}

// sum feeds the packet to the MAC with mutable fields and the ICV zeroed.
func (s *SA) sum(pkt []byte, hl int) {
	copy(s.hdr[:], pkt[:ipv4Len])
	h := s.hdr[:]
	h[ipv4hdr.OffsetTOS] = 0
	binary.BigEndian.PutUint16(h[ipv4hdr.OffsetFragment:], 0) // flags, fragment offset
	h[ipv4hdr.OffsetTTL] = 0
	binary.BigEndian.PutUint16(h[ipv4hdr.OffsetChecksum:], 0)
	s.mac.Reset()
	s.mac.Write(s.hdr[:])
	s.mac.Write(pkt[ipv4Len : ipv4Len+FixedLen])
	s.mac.Write(s.zero[:hl-FixedLen])
	s.mac.Write(pkt[ipv4Len+hl:])
}

// Open verifies the ICV of pkt, an IPv4 packet carrying AH right after its
// header. It returns the next header and the offset of the payload. The
// caller checks the SPI (see ParseHeader) and the anti-replay window.
func (s *SA) Open(pkt []byte) (nextHdr uint8, payloadOff int, err error) {
	hl := s.HeaderLen()
	if len(pkt) < ipv4Len+hl {
		return 0, 0, ErrShort
	}
	if pkt[ipv4hdr.OffsetVersionIHL] != ipv4hdr.VersionIHL5 || int(pkt[ipv4Len+1]) != hl/4-2 {
		return 0, 0, ErrMalformed
	}
	s.mu.Lock()
	s.sum(pkt, hl)
	ok := s.mac.Verify(pkt[ipv4Len+FixedLen : ipv4Len+hl])
	s.mu.Unlock()
	if !ok {
		return 0, 0, ErrAuth
	}
	return pkt[ipv4Len], ipv4Len + hl, nil
}

// ParseHeader returns the SPI and sequence number of the AH header that
// starts at a.
func ParseHeader(a []byte) (spi, seq uint32, ok bool) {
	if len(a) < FixedLen {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(a[4:]), binary.BigEndian.Uint32(a[8:]), true
}

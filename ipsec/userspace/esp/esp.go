// Package esp is the Encapsulating Security Payload transform (RFC 4303)
// for one SA: it turns a payload into an ESP packet (header, IV, encrypted
// payload, padding and trailer, ICV) and back, in place, in a buffer the
// caller owns.
//
// Ciphers: null (RFC 2410), DES-CBC (RFC 2405), 3DES-CBC (RFC 2451),
// AES-CBC (RFC 3602), AES-GCM with a 16-byte ICV (RFC 4106). Integrity:
// the truncated HMACs of package integ. Sequence numbers are 32 bits (no
// ESN). It knows nothing of IP headers, SA databases or anti-replay: the
// dataplane does those. Cipher and MAC objects are prepared once in New;
// Seal and Open do not allocate.
package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec/userspace/integ"
)

// Specification constants (RFC 4303 §2, RFC 4106 §3).
const (
	HeaderLen  = 8 // SPI and sequence number
	TrailerLen = 2 // pad length and next header
	gcmIVLen   = 8 // RFC 4106 §3.1 explicit IV
	gcmSaltLen = 4 // RFC 4106 §8.1
	minAlign   = 4 // RFC 4303 §2.4: the trailer ends on a 4-byte boundary
)

// MaxOverhead bounds what Seal adds to a payload: header, the longest IV,
// padding up to a 16-byte block, trailer and the longest ICV.
const MaxOverhead = HeaderLen + aes.BlockSize + (aes.BlockSize - 1) + TrailerLen + integ.MaxICV

// Errors Open returns. They are values, so the packet path can count them
// without allocating.
var (
	ErrShort     = errors.New("esp: packet too short")
	ErrAuth      = errors.New("esp: integrity check failed")
	ErrMalformed = errors.New("esp: bad length or padding")
)

type ivSetter interface{ SetIV([]byte) }

// SA is the prepared ESP transform of one security association. Seal and
// Open may be called from several goroutines.
type SA struct {
	spi    uint32
	cipher alg.Cipher
	ivLen  int
	align  int
	icvLen int

	aead cipher.AEAD // aes-gcm-16
	salt [gcmSaltLen]byte

	mu    sync.Mutex // guards enc, dec, mac and scratch
	enc   cipher.BlockMode
	dec   cipher.BlockMode
	mac   *integ.MAC
	nonce [gcmSaltLen + gcmIVLen]byte
	ivbuf [aes.BlockSize]byte

	ivGen cipher.Block  // CBC IVs: a random-keyed AES of a counter
	ivCtr atomic.Uint64 // CBC IV and GCM IV counter, random start
}

// New prepares the transform. Keys must have the lengths ipsec.SA.Validate
// checks (alg.Cipher.KeyMatLen, alg.Integrity.KeyLen); an unknown algorithm
// is an error, and key bytes never appear in errors.
func New(spi uint32, c alg.Cipher, ckey []byte, ig alg.Integrity, ikey []byte) (*SA, error) {
	s := &SA{spi: spi, cipher: c, align: minAlign}
	if !c.ValidESP() {
		return nil, fmt.Errorf("esp: unsupported cipher %s", c)
	}
	if len(ckey) != c.KeyMatLen() {
		return nil, fmt.Errorf("esp: %s key is %d bytes, want %d", c, len(ckey), c.KeyMatLen())
	}
	var b cipher.Block
	var err error
	switch {
	case c == alg.ESPNull:
	case c == alg.DES:
		b, err = des.NewCipher(ckey)
	case c == alg.TripleDES:
		b, err = des.NewTripleDESCipher(ckey)
	case c.IsAESCBC():
		b, err = aes.NewCipher(ckey)
	case c.IsAEAD():
		key, salt := ckey[:c.KeyLen()], ckey[c.KeyLen():]
		if b, err = aes.NewCipher(key); err == nil {
			s.aead, err = cipher.NewGCMWithTagSize(b, c.ICVLen())
		}
		copy(s.salt[:], salt)
		s.ivLen, s.icvLen = gcmIVLen, c.ICVLen()
		b = nil
	}
	if err != nil {
		return nil, fmt.Errorf("esp: %s: bad key length %d", c, len(ckey))
	}
	if b != nil {
		s.ivLen, s.align = b.BlockSize(), b.BlockSize()
		zero := make([]byte, b.BlockSize())
		s.enc = cipher.NewCBCEncrypter(b, zero)
		s.dec = cipher.NewCBCDecrypter(b, zero)
	}
	if ig != alg.IntegNone {
		if c.IsAEAD() {
			return nil, fmt.Errorf("esp: %s takes no separate integrity algorithm", c)
		}
		if s.mac, err = integ.New(ig, ikey); err != nil {
			return nil, fmt.Errorf("esp: %w", err)
		}
		s.icvLen = s.mac.Size()
	}
	if err := s.initIV(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *SA) initIV() error {
	var seed [aes.BlockSize + 8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return fmt.Errorf("esp: IV seed: %w", err)
	}
	var err error
	s.ivGen, err = aes.NewCipher(seed[:aes.BlockSize])
	s.ivCtr.Store(binary.BigEndian.Uint64(seed[aes.BlockSize:]))
	return err
}

// SPI is the SA's SPI.
func (s *SA) SPI() uint32 { return s.spi }

// HeaderLen is the ESP header plus IV: where the payload starts.
func (s *SA) HeaderLen() int { return HeaderLen + s.ivLen }

// ICVLen is the length of the integrity check value.
func (s *SA) ICVLen() int { return s.icvLen }

// SealedLen is the length of the ESP packet that carries n payload bytes.
func (s *SA) SealedLen(n int) int {
	body := (n + TrailerLen + s.align - 1) / s.align * s.align
	return s.HeaderLen() + body + s.icvLen
}

// Seal turns b[HeaderLen():HeaderLen()+n], the payload, into an ESP packet
// in place and returns it (b[:SealedLen(n)]); cap(b) must be at least
// SealedLen(n). It picks a fresh IV.
func (s *SA) Seal(b []byte, n int, seq uint32, nextHdr uint8) ([]byte, error) {
	return s.seal(b, n, seq, nextHdr, nil)
}

// SealIV is Seal with a caller-chosen IV (ivLen bytes), for known-answer
// tests. Reusing an IV breaks the cipher: never use it on the packet path.
func (s *SA) SealIV(b []byte, n int, seq uint32, nextHdr uint8, iv []byte) ([]byte, error) {
	if len(iv) != s.ivLen {
		return nil, fmt.Errorf("esp: IV is %d bytes, want %d", len(iv), s.ivLen)
	}
	return s.seal(b, n, seq, nextHdr, iv)
}

func (s *SA) seal(b []byte, n int, seq uint32, nextHdr uint8, iv []byte) ([]byte, error) {
	total := s.SealedLen(n)
	hl := s.HeaderLen()
	if n < 0 || cap(b) < total {
		return nil, ErrShort
	}
	b = b[:total]
	binary.BigEndian.PutUint32(b[0:], s.spi)
	binary.BigEndian.PutUint32(b[4:], seq)
	// RFC 4303 §2.4: default padding is 1, 2, 3, ...
	body := b[hl : total-s.icvLen]
	pad := len(body) - n - TrailerLen
	for i := 0; i < pad; i++ {
		body[n+i] = byte(i + 1)
	}
	body[len(body)-2] = byte(pad)
	body[len(body)-1] = nextHdr

	s.mu.Lock()
	defer s.mu.Unlock()
	if iv != nil {
		copy(b[HeaderLen:hl], iv)
	} else {
		s.nextIV(b[HeaderLen:hl])
	}
	if s.aead != nil {
		copy(s.nonce[:gcmSaltLen], s.salt[:])
		copy(s.nonce[gcmSaltLen:], b[HeaderLen:hl])
		s.aead.Seal(body[:0], s.nonce[:], body, b[:HeaderLen])
		return b, nil
	}
	if s.enc != nil {
		s.enc.(ivSetter).SetIV(b[HeaderLen:hl])
		s.enc.CryptBlocks(body, body)
	}
	if s.mac != nil {
		s.mac.Reset()
		s.mac.Write(b[:total-s.icvLen])
		s.mac.Sum(b[total-s.icvLen:])
	}
	return b, nil
}

// nextIV fills iv: for GCM a counter (unique per key, RFC 4106 §3.1), for
// CBC the encryption of a counter under a random key (unpredictable, as
// RFC 3602 §2.3 asks). Called with mu held.
func (s *SA) nextIV(iv []byte) {
	c := s.ivCtr.Add(1)
	if s.aead != nil {
		binary.BigEndian.PutUint64(iv, c)
		return
	}
	if len(iv) == 0 {
		return
	}
	binary.BigEndian.PutUint64(s.ivbuf[:8], c)
	binary.BigEndian.PutUint64(s.ivbuf[8:], ^c)
	s.ivGen.Encrypt(s.ivbuf[:], s.ivbuf[:])
	copy(iv, s.ivbuf[:])
}

// Open verifies and decrypts the ESP packet b (starting at the SPI) in
// place. It returns the payload (a slice of b) and the next header. The
// caller checks the SPI and the anti-replay window.
func (s *SA) Open(b []byte) (payload []byte, nextHdr uint8, err error) {
	hl := s.HeaderLen()
	if len(b) < hl+TrailerLen+s.icvLen {
		return nil, 0, ErrShort
	}
	body := b[hl : len(b)-s.icvLen]
	if len(body)%s.align != 0 || len(body) == 0 {
		return nil, 0, ErrMalformed
	}
	s.mu.Lock()
	if s.aead != nil {
		copy(s.nonce[:gcmSaltLen], s.salt[:])
		copy(s.nonce[gcmSaltLen:], b[HeaderLen:hl])
		_, err := s.aead.Open(body[:0], s.nonce[:], b[hl:], b[:HeaderLen])
		s.mu.Unlock()
		if err != nil {
			return nil, 0, ErrAuth
		}
	} else {
		if s.mac != nil {
			s.mac.Reset()
			s.mac.Write(b[:len(b)-s.icvLen])
			if !s.mac.Verify(b[len(b)-s.icvLen:]) {
				s.mu.Unlock()
				return nil, 0, ErrAuth
			}
		}
		if s.dec != nil {
			s.dec.(ivSetter).SetIV(b[HeaderLen:hl])
			s.dec.CryptBlocks(body, body)
		}
		s.mu.Unlock()
	}
	pad := int(body[len(body)-2])
	if pad+TrailerLen > len(body) {
		return nil, 0, ErrMalformed
	}
	return body[:len(body)-TrailerLen-pad], body[len(body)-1], nil
}

// ParseHeader returns the SPI and sequence number of the ESP packet b.
func ParseHeader(b []byte) (spi, seq uint32, ok bool) {
	if len(b) < HeaderLen {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:]), true
}

package suite

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"github.com/spiagent/spiagent/alg"
)

var (
	modpOnce  sync.Once
	modpCache map[alg.Group]*big.Int
)

// modp is the group's prime, nil for a group that is not MODP.
func modp(g alg.Group) *big.Int {
	modpOnce.Do(func() {
		modpCache = map[alg.Group]*big.Int{}
		for k, v := range modpPrimes {
			p, ok := new(big.Int).SetString(v, 16)
			if !ok {
				panic("suite: bad MODP prime constant")
			}
			modpCache[k] = p
		}
	})
	return modpCache[g]
}

func curve(g alg.Group) ecdh.Curve {
	switch g {
	case alg.ECP256:
		return ecdh.P256()
	case alg.ECP384:
		return ecdh.P384()
	case alg.ECP521:
		return ecdh.P521()
	}
	return nil
}

// PublicLen is the length of a KE payload's key exchange data in group g;
// 0 for an unsupported group.
func PublicLen(g alg.Group) int {
	if p := modp(g); p != nil {
		return (p.BitLen() + 7) / 8
	}
	switch g {
	case alg.ECP256:
		return 64
	case alg.ECP384:
		return 96
	case alg.ECP521:
		return 132
	}
	return 0
}

// DHKey is an ephemeral Diffie-Hellman private key.
type DHKey struct {
	g   alg.Group
	x   *big.Int         // MODP
	ec  *ecdh.PrivateKey // ECP
	pub []byte
}

// ErrPeerKey is returned for an invalid peer public value.
var ErrPeerKey = errors.New("suite: invalid Diffie-Hellman public value")

// GenerateKey draws a private key from r. MODP exponents are 256 bits
// (enough for every group here, as other implementations do); ECP scalars
// are drawn until valid.
func GenerateKey(g alg.Group, r io.Reader) (*DHKey, error) {
	if p := modp(g); p != nil {
		var buf [32]byte
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return nil, fmt.Errorf("suite: DH %v key: %w", g, err)
		}
		x := new(big.Int).SetBytes(buf[:])
		x.SetBit(x, expBits-1, 1)
		y := fixedBaseOf(g).exp(x)
		return &DHKey{g: g, x: x, pub: y.FillBytes(make([]byte, PublicLen(g)))}, nil
	}
	c := curve(g)
	if c == nil {
		return nil, fmt.Errorf("suite: DH group %d not supported", uint16(g))
	}
	n := PublicLen(g) / 2
	for i := 0; i < 64; i++ {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("suite: DH %v key: %w", g, err)
		}
		if g == alg.ECP521 {
			buf[0] &= 1
		}
		k, err := c.NewPrivateKey(buf)
		if err != nil {
			continue
		}
		return &DHKey{g: g, ec: k, pub: k.PublicKey().Bytes()[1:]}, nil
	}
	return nil, fmt.Errorf("suite: DH %v: no valid scalar from random source", g)
}

// Group returns the key's group.
func (k *DHKey) Group() alg.Group { return k.g }

// Public returns the KE payload data: g^x padded to the prime length, or
// x || y for ECP groups (RFC 5903 §7).
func (k *DHKey) Public() []byte { return k.pub }

// Shared computes g^xy (padded to the prime length) or, for ECP, the x
// coordinate of the shared point (RFC 5903 §7).
func (k *DHKey) Shared(peer []byte) ([]byte, error) {
	if len(peer) != PublicLen(k.g) {
		return nil, ErrPeerKey
	}
	if p := modp(k.g); p != nil {
		y := new(big.Int).SetBytes(peer)
		if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(new(big.Int).Sub(p, big.NewInt(1))) >= 0 {
			return nil, ErrPeerKey
		}
		z := new(big.Int).Exp(y, k.x, p)
		return z.FillBytes(make([]byte, PublicLen(k.g))), nil
	}
	pk, err := curve(k.g).NewPublicKey(append([]byte{4}, peer...))
	if err != nil {
		return nil, ErrPeerKey
	}
	z, err := k.ec.ECDH(pk)
	if err != nil {
		return nil, ErrPeerKey
	}
	return z, nil
}

package suite

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"
)

// Group is an IKE Diffie-Hellman group number (RFC 2409 §6, RFC 3526, RFC 5903).
type Group uint16

// Supported groups.
const (
	GroupNone Group = 0
	MODP768   Group = 1
	MODP1024  Group = 2
	MODP1536  Group = 5
	MODP2048  Group = 14
	MODP3072  Group = 15
	MODP4096  Group = 16
	ECP256    Group = 19
	ECP384    Group = 20
	ECP521    Group = 21
)

// Groups lists every supported group.
var Groups = []Group{MODP768, MODP1024, MODP1536, MODP2048, MODP3072, MODP4096, ECP256, ECP384, ECP521}

func (g Group) String() string {
	switch g {
	case GroupNone:
		return "none"
	case ECP256:
		return "ecp256"
	case ECP384:
		return "ecp384"
	case ECP521:
		return "ecp521"
	}
	if _, ok := modpPrimes[g]; ok {
		return fmt.Sprintf("modp%d", g.modp().BitLen())
	}
	return fmt.Sprintf("group(%d)", uint16(g))
}

// Valid reports whether g is supported.
func (g Group) Valid() bool {
	_, ok := modpPrimes[g]
	return ok || g.curve() != nil
}

// Weak reports groups below 2048-bit MODP strength.
func (g Group) Weak() bool { return g == MODP768 || g == MODP1024 || g == MODP1536 }

var (
	modpOnce  sync.Once
	modpCache map[Group]*big.Int
)

func (g Group) modp() *big.Int {
	modpOnce.Do(func() {
		modpCache = map[Group]*big.Int{}
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

func (g Group) curve() ecdh.Curve {
	switch g {
	case ECP256:
		return ecdh.P256()
	case ECP384:
		return ecdh.P384()
	case ECP521:
		return ecdh.P521()
	}
	return nil
}

// PublicLen is the length of a KE payload's key exchange data.
func (g Group) PublicLen() int {
	if p := g.modp(); p != nil {
		return (p.BitLen() + 7) / 8
	}
	switch g {
	case ECP256:
		return 64
	case ECP384:
		return 96
	case ECP521:
		return 132
	}
	return 0
}

// DHKey is an ephemeral Diffie-Hellman private key.
type DHKey struct {
	g   Group
	x   *big.Int         // MODP
	ec  *ecdh.PrivateKey // ECP
	pub []byte
}

// ErrPeerKey is returned for an invalid peer public value.
var ErrPeerKey = errors.New("suite: invalid Diffie-Hellman public value")

// GenerateKey draws a private key from r. MODP exponents are 256 bits
// (enough for every group here, as other implementations do); ECP scalars
// are drawn until valid.
func (g Group) GenerateKey(r io.Reader) (*DHKey, error) {
	if p := g.modp(); p != nil {
		var buf [32]byte
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return nil, fmt.Errorf("suite: DH %v key: %w", g, err)
		}
		x := new(big.Int).SetBytes(buf[:])
		x.SetBit(x, expBits-1, 1)
		y := g.fixedBase().exp(x)
		return &DHKey{g: g, x: x, pub: y.FillBytes(make([]byte, g.PublicLen()))}, nil
	}
	c := g.curve()
	if c == nil {
		return nil, fmt.Errorf("suite: DH group %d not supported", uint16(g))
	}
	n := g.PublicLen() / 2
	for i := 0; i < 64; i++ {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("suite: DH %v key: %w", g, err)
		}
		if g == ECP521 {
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
func (k *DHKey) Group() Group { return k.g }

// Public returns the KE payload data: g^x padded to the prime length, or
// x || y for ECP groups (RFC 5903 §7).
func (k *DHKey) Public() []byte { return k.pub }

// Shared computes g^xy (padded to the prime length) or, for ECP, the x
// coordinate of the shared point (RFC 5903 §7).
func (k *DHKey) Shared(peer []byte) ([]byte, error) {
	if len(peer) != k.g.PublicLen() {
		return nil, ErrPeerKey
	}
	if p := k.g.modp(); p != nil {
		y := new(big.Int).SetBytes(peer)
		if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(new(big.Int).Sub(p, big.NewInt(1))) >= 0 {
			return nil, ErrPeerKey
		}
		z := new(big.Int).Exp(y, k.x, p)
		return z.FillBytes(make([]byte, k.g.PublicLen())), nil
	}
	pk, err := k.g.curve().NewPublicKey(append([]byte{4}, peer...))
	if err != nil {
		return nil, ErrPeerKey
	}
	z, err := k.ec.ECDH(pk)
	if err != nil {
		return nil, ErrPeerKey
	}
	return z, nil
}

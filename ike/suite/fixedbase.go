package suite

import (
	"math/big"
	"sync"

	"github.com/spiagent/spiagent/alg"
)

// Fixed-base exponentiation for the MODP generator 2: g^x for a 256-bit x
// is the product of one precomputed power per 4-bit window of x
// (t[i][j] = 2^(j * 16^i) mod p), 63 modular multiplications instead of
// about 320 Montgomery steps in big.Int.Exp. Key generation is half of the
// Diffie-Hellman cost of a negotiation, and DH is nearly all of its CPU.
// A table is built on first use of a group: 64 x 15 values of the
// prime's size (240 KiB for modp2048).

const expBits = 256 // private exponent size, see GenerateKey

type fixedBase struct {
	p *big.Int
	t [expBits / 4][16]*big.Int
}

var (
	fixedMu     sync.Mutex
	fixedTables = map[alg.Group]*fixedBase{}
)

func fixedBaseOf(g alg.Group) *fixedBase {
	fixedMu.Lock()
	defer fixedMu.Unlock()
	if f := fixedTables[g]; f != nil {
		return f
	}
	p := modp(g)
	f := &fixedBase{p: p}
	base := big.NewInt(2)
	for i := range f.t {
		f.t[i][0] = big.NewInt(1)
		f.t[i][1] = new(big.Int).Set(base)
		for j := 2; j < 16; j++ {
			f.t[i][j] = new(big.Int).Mul(f.t[i][j-1], base)
			f.t[i][j].Mod(f.t[i][j], p)
		}
		// next base = base^16
		base = new(big.Int).Mul(f.t[i][15], base)
		base.Mod(base, p)
	}
	fixedTables[g] = f
	return f
}

// exp returns 2^x mod p for 0 <= x < 2^expBits.
func (f *fixedBase) exp(x *big.Int) *big.Int {
	acc := big.NewInt(1)
	words := x.Bits()
	for i := range f.t {
		bit := 4 * i
		w := bit / (8 * 8)
		var nib uint
		if w < len(words) {
			nib = uint(words[w]>>(uint(bit)%64)) & 15
		}
		if nib != 0 {
			acc.Mul(acc, f.t[i][nib])
			acc.Mod(acc, f.p)
		}
	}
	return acc
}

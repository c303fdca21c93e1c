package userspace

import (
	"context"
	"fmt"
	"testing"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// BenchmarkSAD: installing and removing one inbound/outbound SA pair in a
// SAD of n pairs (what one negotiated tunnel costs the dataplane).
func BenchmarkSAD(b *testing.B) {
	sa := func(i int, dir ipsec.Direction) ipsec.SA {
		s := ipsec.SA{Src: addrA, Dst: addrB, Proto: alg.ESP, SPI: uint32(0x1000 + i), Dir: dir, Mode: alg.Tunnel,
			Cipher: alg.AES128, CipherKey: testKey(16, byte(i)), Integ: alg.HMACSHA1, IntegKey: testKey(20, byte(i)), ReqID: uint32(i + 1)}
		if dir == ipsec.DirIn {
			s.Src, s.Dst, s.ReplayWindow = addrB, addrA, 64
		}
		return s
	}
	for _, n := range []int{10, 1000, 10_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			d, err := New(Config{SweepInterval: -1, Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			ctx := context.Background()
			for i := range n {
				for _, dir := range []ipsec.Direction{ipsec.DirIn, ipsec.DirOut} {
					if err := d.AddSA(ctx, sa(i, dir)); err != nil {
						b.Fatal(err)
					}
				}
			}
			in, out := sa(n, ipsec.DirIn), sa(n, ipsec.DirOut)
			for b.Loop() {
				for _, s := range []ipsec.SA{in, out} {
					if err := d.AddSA(ctx, s); err != nil {
						b.Fatal(err)
					}
				}
				for _, s := range []ipsec.SA{in, out} {
					if err := d.DeleteSA(ctx, s.Key()); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

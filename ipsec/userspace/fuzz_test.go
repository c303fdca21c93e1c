package userspace

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// FuzzInbound feeds arbitrary bytes to HandleIP and HandleESPInUDP of a
// dataplane holding SAs that fuzzing can reach inside (AES-CBC without
// integrity, so any ciphertext decrypts to something; tunnel and
// transport; ESP, AH, ESP-in-UDP). Nothing may panic, and whatever reaches
// the TUN must be one well-formed IPv4 packet.
func FuzzInbound(f *testing.F) {
	tun := newDiscardTUN()
	tun.verify = func(b []byte) bool {
		p, _, _, ok := parseIPv4(b)
		return ok && len(p) == len(b)
	}
	d, err := New(Config{TUN: tun, SweepInterval: -1, Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	for i, sa := range []ipsec.SA{
		{SPI: 0x100, Proto: alg.ESP, Mode: alg.Tunnel, Cipher: alg.AES128, CipherKey: testKey(16, 1)},
		{SPI: 0x101, Proto: alg.ESP, Mode: alg.Transport, Cipher: alg.AES128, CipherKey: testKey(16, 2)},
		{SPI: 0x102, Proto: alg.ESP, Mode: alg.Tunnel, Cipher: alg.AES128, CipherKey: testKey(16, 3), Encap: &ipsec.UDPEncap{SrcPort: 4500, DstPort: 4500}},
		{SPI: 0x103, Proto: alg.AH, Mode: alg.Tunnel, Integ: alg.HMACSHA1, IntegKey: testKey(20, 4)},
	} {
		sa.Src, sa.Dst, sa.Dir, sa.ReqID = addrA, addrB, ipsec.DirIn, uint32(i+1)
		if err := d.AddSA(ctx, sa); err != nil {
			f.Fatal(err)
		}
	}
	for _, spi := range []uint32{0x100, 0x101, 0x103} {
		p := make([]byte, 20+16+64)
		proto := uint8(protoESP)
		if spi == 0x103 {
			proto = protoAH
		}
		writeIPv4(p, addrA, addrB, proto, len(p), 1, 0)
		binary.BigEndian.PutUint32(p[20:], spi)
		if proto == protoAH {
			p[21] = 4
			binary.BigEndian.PutUint32(p[24:], spi)
		}
		f.Add(p)
	}
	f.Add([]byte{0, 0, 1, 2, 0, 0, 0, 1})
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		d.HandleIP(bytes.Clone(b))
		d.HandleESPInUDP(bytes.Clone(b), netip.AddrPortFrom(addrA, 4500), netip.AddrPortFrom(addrB, 4500))
		if tun.bad != 0 {
			t.Fatalf("malformed packet written to the TUN")
		}
	})
}

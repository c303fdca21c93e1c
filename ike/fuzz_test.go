package ike

import (
	"net/netip"
	"testing"
)

// FuzzHandlePacket feeds arbitrary datagrams to both engines of an
// established pair (seeded with the real messages of the negotiation, so
// mutations reach Quick alg.Mode and Informational decoding with valid
// cookies). Nothing may panic, and the established child SA must survive
// anything unauthenticated.
func FuzzHandlePacket(f *testing.F) {
	p := established(&testing.T{})
	for _, n := range []*node{p.a, p.b} {
		for _, s := range n.sent {
			f.Add(s.Data, n == p.a)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, toB bool) {
		p := established(t)
		to, from := p.a, p.b
		if toB {
			to, from = p.b, p.a
		}
		for _, port := range []uint16{500, 4500} {
			to.e.HandlePacket(p.now, Packet{Local: netip.AddrPortFrom(to.addr, port), Remote: netip.AddrPortFrom(from.addr, port), Data: data})
			o := to.e.Ready()
			if len(o.Delete) != 0 {
				t.Fatalf("a fuzzed packet (made without keys) deleted a child SA: %v", o.Delete[0].Reason)
			}
		}
	})
}

package userspace

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"testing"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// discardTUN is a TUN whose writes go nowhere, without copying.
type discardTUN struct {
	done    chan struct{}
	written int
	verify  func([]byte) bool // optional check of each packet
	bad     int
}

func newDiscardTUN() *discardTUN                 { return &discardTUN{done: make(chan struct{})} }
func (d *discardTUN) Name() string               { return "discard" }
func (d *discardTUN) Read(b []byte) (int, error) { <-d.done; return 0, os.ErrClosed }
func (d *discardTUN) Write(b []byte) (int, error) {
	d.written++
	if d.verify != nil && !d.verify(b) {
		d.bad++
	}
	return len(b), nil
}
func (d *discardTUN) Close() error { close(d.done); return nil }

// lastLink keeps a copy of the last packet sent, in a fixed buffer.
type lastLink struct {
	buf [bufSize]byte
	n   int
}

func (l *lastLink) Send(p []byte) error { l.n = copy(l.buf[:], p); return nil }
func (l *lastLink) SendESPInUDP(p []byte, src, dst netip.AddrPort) error {
	l.n = copy(l.buf[:], p)
	return nil
}

// pipe is two dataplanes with fixed-key SAs A->B and no goroutines in the
// way: the test drives A's outbound and B's inbound by hand.
type pipe struct {
	a, b   *Dataplane
	link   *lastLink
	tunB   *discardTUN
	encap  bool
	inner  []byte
	outBuf []byte
}

func newPipe(tb testing.TB, l layer, window uint32) *pipe {
	p := &pipe{link: &lastLink{}, tunB: newDiscardTUN(), encap: l.encap}
	var err error
	p.a, err = New(Config{Link: p.link, UDP: p.link, SweepInterval: -1, Logger: quietLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	p.b, err = New(Config{TUN: p.tunB, SweepInterval: -1, Logger: quietLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.a.Close(); p.b.Close() })
	ctx := context.Background()
	sa := ipsec.SA{Src: addrA, Dst: addrB, Proto: l.proto, SPI: 0x1234, Mode: alg.Tunnel, Cipher: l.cipher,
		CipherKey: testKey(l.ckey, 1), Integ: l.integ, IntegKey: testKey(l.integ.KeyLen(), 2), ReqID: 1}
	if l.encap {
		sa.Encap = &ipsec.UDPEncap{SrcPort: 4500, DstPort: 4500}
	}
	out, in := sa, sa
	out.Dir, in.Dir, in.ReplayWindow = ipsec.DirOut, ipsec.DirIn, window
	if err := p.a.AddSA(ctx, out); err != nil {
		tb.Fatal(err)
	}
	if err := p.b.AddSA(ctx, in); err != nil {
		tb.Fatal(err)
	}
	tm := []ipsec.Template{{Proto: l.proto, Mode: alg.Tunnel, Src: addrA, Dst: addrB, ReqID: 1}}
	if err := p.a.AddPolicy(ctx, ipsec.Policy{ID: 1, Dir: ipsec.DirOut, Selector: ipsec.Selector{Src: lanA, Dst: lanB}, Action: ipsec.ActionProtect, Templates: tm}); err != nil {
		tb.Fatal(err)
	}
	p.inner = udpPacket(hostA, hostB, 1, 2, make([]byte, 1400-28))
	p.outBuf = make([]byte, bufSize)
	return p
}

// step encrypts one packet on A and decrypts it on B.
func (p *pipe) step() {
	n := copy(p.outBuf[headroom:], p.inner)
	p.a.outbound(p.outBuf, headroom, headroom+n, nil)
	if p.encap {
		p.b.HandleESPInUDP(p.link.buf[:p.link.n], netip.AddrPortFrom(addrA, 4500), netip.AddrPortFrom(addrB, 4500))
	} else {
		p.b.HandleIP(p.link.buf[:p.link.n])
	}
}

func TestFastPathNoAllocs(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    layer
	}{
		{"aes-gcm", layer{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20}},
		{"aes-cbc-sha1", layer{proto: alg.ESP, cipher: alg.AES128, ckey: 16, integ: alg.HMACSHA1}},
		{"esp-in-udp", layer{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20, encap: true}},
		{"ah-sha256", layer{proto: alg.AH, integ: alg.HMACSHA256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPipe(t, tc.l, 1024)
			p.step()
			if p.tunB.written != 1 {
				t.Fatalf("warm-up packet not delivered (stats A %+v B %+v)", p.a.Stats(), p.b.Stats())
			}
			if a := testing.AllocsPerRun(200, p.step); a != 0 {
				t.Fatalf("%.2f allocations per packet (encrypt + decrypt)", a)
			}
			if p.tunB.written != 202 {
				t.Fatalf("%d packets delivered, want 202", p.tunB.written)
			}
		})
	}
}

// TestGarbageNeverPanics feeds truncations and corruptions of real
// packets, and random junk, to both inbound entry points.
func TestGarbageNeverPanics(t *testing.T) {
	for _, l := range []layer{
		{proto: alg.ESP, cipher: alg.ESPNull, integ: alg.HMACSHA1},
		{proto: alg.AH, integ: alg.HMACSHA1},
		{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20, encap: true},
	} {
		p := newPipe(t, l, 0)
		p.tunB.verify = func(b []byte) bool { return bytes.Equal(b, p.inner) }
		p.step()
		valid := bytes.Clone(p.link.buf[:p.link.n])
		for n := 0; n <= len(valid); n++ {
			p.b.HandleIP(bytes.Clone(valid[:n]))
			p.b.HandleESPInUDP(bytes.Clone(valid[:n]), netip.AddrPortFrom(addrA, 4500), netip.AddrPortFrom(addrB, 4500))
		}
		for i := range valid {
			c := bytes.Clone(valid)
			c[i] ^= 0xff
			p.b.HandleIP(c)
		}
		// Corrupting what ESP does not cover (the outer header) may still
		// deliver; what comes out must always be the original packet.
		if p.tunB.bad != 0 {
			t.Fatalf("%s: %d corrupted packets delivered", l.proto, p.tunB.bad)
		}
		if st := p.b.Stats(); st.Malformed == 0 {
			t.Fatalf("%s: no packet counted as malformed: %+v", l.proto, st)
		}
	}
}

// BenchmarkDataplane encrypts on one dataplane and decrypts on another,
// through the SPD, SAD, replay window and counters: the whole in-memory
// packet path, one core, 1400-byte inner packets.
func BenchmarkDataplane(b *testing.B) {
	for _, bc := range []struct {
		name string
		l    layer
	}{
		{"aes-gcm-128", layer{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20}},
		{"aes-cbc-128-hmac-sha1", layer{proto: alg.ESP, cipher: alg.AES128, ckey: 16, integ: alg.HMACSHA1}},
		{"aes-gcm-128-udp", layer{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20, encap: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := newPipe(b, bc.l, 1024)
			b.SetBytes(int64(len(p.inner)))
			b.ReportAllocs()
			for b.Loop() {
				p.step()
			}
			if p.tunB.written == 0 {
				b.Fatal("nothing delivered")
			}
		})
	}
}

// BenchmarkInvalidSPIFlood is the cost per packet of a flood of ESP with
// random SPIs from random sources through HandleIP.
func BenchmarkInvalidSPIFlood(b *testing.B) {
	d, err := New(Config{SweepInterval: -1, Logger: quietLogger(), EventQueue: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	go func() {
		for range d.Events() {
		}
	}()
	pkt := make([]byte, 20+100)
	var i uint32
	b.ReportAllocs()
	for b.Loop() {
		i++
		writeIPv4(pkt, netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), addrB, protoESP, len(pkt), 0, 0)
		x := i * 2654435761
		pkt[20], pkt[21], pkt[22], pkt[23] = byte(x>>24), byte(x>>16), byte(x>>8), byte(x)
		d.HandleIP(pkt)
	}
}

// TestDummyAndIPv6PayloadDropped: an authenticated ESP packet with next
// header 59 (a TFC dummy, RFC 4303 §2.6) is dropped silently but moves the
// replay window; next header 41 (IPv6) is dropped and counted.
func TestDummyAndIPv6PayloadDropped(t *testing.T) {
	for _, tc := range []struct {
		nh        uint8
		wantOther uint64
	}{{protoNoNext, 0}, {protoIPv6, 1}} {
		p := newPipe(t, layer{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20}, 64)
		s, _ := p.a.sad.out.get(outKey{reqID: 1, proto: alg.ESP, dst: addrB})
		buf := make([]byte, 2048)
		pkt, err := s.esp.Seal(buf[20:], 10, 1, tc.nh)
		if err != nil {
			t.Fatal(err)
		}
		writeIPv4(buf, addrA, addrB, protoESP, 20+len(pkt), 1, 0)
		wire := bytes.Clone(buf[:20+len(pkt)])
		p.b.HandleIP(bytes.Clone(wire))
		p.b.HandleIP(bytes.Clone(wire)) // replay of an accepted dummy
		c := counters(t, p.b, addrB, alg.ESP, 0x1234)
		if p.tunB.written != 0 || c.OtherErrors != tc.wantOther || c.ReplayErrors != 1 || c.AuthFailures != 0 {
			t.Fatalf("next header %d: written %d, counters %+v", tc.nh, p.tunB.written, c)
		}
	}
}

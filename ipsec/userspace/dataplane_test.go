package userspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
	"github.com/spiagent/spiagent/ipsec/userspace/wiretest"
)

var cipherCases = []struct {
	name string
	c    alg.Cipher
	kl   int
}{
	{"null", alg.ESPNull, 0},
	{"des-cbc", alg.DES, 8},
	{"3des-cbc", alg.TripleDES, 24},
	{"aes-cbc-128", alg.AES128, 16},
	{"aes-cbc-192", alg.AES192, 24},
	{"aes-cbc-256", alg.AES256, 32},
	{"aes-gcm-16-128", alg.AESGCM128, 20},
	{"aes-gcm-16-256", alg.AESGCM256, 36},
}

var integCases = []alg.Integrity{
	alg.IntegNone, alg.HMACMD5, alg.HMACSHA1,
	alg.HMACSHA256, alg.HMACSHA384, alg.HMACSHA512,
}

type suiteCase struct {
	name string
	s    suite
}

func suites() []suiteCase {
	var out []suiteCase
	for _, c := range cipherCases {
		for _, ig := range integCases {
			if (c.c.IsAEAD() && ig != alg.IntegNone) || (c.c == alg.ESPNull && ig == alg.IntegNone) {
				continue
			}
			l := layer{proto: alg.ESP, cipher: c.c, ckey: c.kl, integ: ig}
			out = append(out, suiteCase{"esp/tunnel/" + c.name + "/" + ig.String(), suite{mode: alg.Tunnel, layers: []layer{l}, window: 64}})
		}
	}
	for _, ig := range integCases[1:] {
		out = append(out, suiteCase{"ah/tunnel/" + ig.String(), suite{mode: alg.Tunnel, window: 64,
			layers: []layer{{proto: alg.AH, integ: ig}}}})
	}
	// The seed's transform set: ah-sha-hmac esp-des esp-sha-hmac.
	bundle := []layer{
		{proto: alg.ESP, cipher: alg.DES, ckey: 8, integ: alg.HMACSHA1},
		{proto: alg.AH, integ: alg.HMACSHA1},
	}
	gcm := layer{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20}
	cbc := layer{proto: alg.ESP, cipher: alg.AES128, ckey: 16, integ: alg.HMACSHA1}
	out = append(out,
		suiteCase{"bundle/tunnel/ah-sha+esp-des-sha", suite{mode: alg.Tunnel, layers: bundle, window: 64}},
		suiteCase{"bundle/transport/ah-sha+esp-des-sha", suite{mode: alg.Transport, layers: bundle, window: 64}},
		suiteCase{"esp/transport/aes-gcm", suite{mode: alg.Transport, layers: []layer{gcm}, window: 64}},
		suiteCase{"ah/transport/sha256", suite{mode: alg.Transport, layers: []layer{{proto: alg.AH, integ: alg.HMACSHA256}}}},
		suiteCase{"esp-in-udp/tunnel/aes-gcm", suite{mode: alg.Tunnel, layers: []layer{{proto: alg.ESP, cipher: alg.AESGCM256, ckey: 36, encap: true}}, window: 1024}},
		suiteCase{"esp-in-udp/tunnel/aes-cbc-sha1", suite{mode: alg.Tunnel, layers: []layer{{proto: alg.ESP, cipher: alg.AES128, ckey: 16, integ: alg.HMACSHA1, encap: true}}, window: 64}},
		suiteCase{"esp-in-udp/transport/aes-cbc-sha1", suite{mode: alg.Transport, layers: []layer{{proto: alg.ESP, cipher: alg.AES128, ckey: 16, integ: alg.HMACSHA1, encap: true}}}},
		suiteCase{"esp/tunnel/no-replay-window", suite{mode: alg.Tunnel, layers: []layer{cbc}}},
	)
	return out
}

// wantWire is the protocol chain expected on the wire for a suite.
func wantWire(s suite) (udp bool, proto uint8) {
	last := s.layers[len(s.layers)-1]
	if last.encap {
		return true, 0
	}
	return false, uint8(last.proto)
}

// TestRoundTrip sends packets both ways through two in-memory dataplanes
// for every suite and checks what arrives, what crossed the wire and the
// counters.
func TestRoundTrip(t *testing.T) {
	for _, sc := range suites() {
		t.Run(sc.name, func(t *testing.T) {
			tb := newTestbed(t, nil)
			tb.install(t, sc.s)
			tb.net.Record(true)
			secret := []byte("attack at dawn, bring the cheese")
			for dir, p := range [][2]*side{{tb.a, tb.b}, {tb.b, tb.a}} {
				from, to := p[0], p[1]
				src, dst := hostA, hostB
				if dir == 1 {
					src, dst = hostB, hostA
				}
				if sc.s.mode == alg.Transport {
					src, dst = from.addr, to.addr
				}
				for i := range 3 {
					pkt := udpPacket(src, dst, 1000+uint16(i), 53, secret)
					from.tun.Inbound <- pkt
					got := recv(t, to.tun)
					if sc.s.mode == alg.Transport && sc.s.layers[0].encap {
						// Transport-mode ESP-in-UDP carries no IP header: the
						// receiver rebuilds it from the UDP datagram's
						// addresses, so the ID (and checksum) are new.
						got, pkt = got[12:], pkt[12:]
					}
					if !bytes.Equal(got, pkt) {
						t.Fatalf("dir %d packet %d:\n got %x\nwant %x", dir, i, got, pkt)
					}
				}
			}
			udp, proto := wantWire(sc.s)
			log := tb.net.Log()
			if len(log) != 6 {
				t.Fatalf("%d packets on the wire, want 6", len(log))
			}
			for _, w := range log {
				if w.UDP != udp || (!udp && wiretest.Protocol(w.Data) != proto) {
					t.Fatalf("wire packet udp=%v proto=%d, want udp=%v proto=%d", w.UDP, wiretest.Protocol(w.Data), udp, proto)
				}
				encrypted := sc.s.layers[0].cipher != alg.ESPNull && sc.s.layers[0].proto == alg.ESP
				if encrypted && bytes.Contains(w.Data, secret[:8]) {
					t.Fatal("cleartext on the wire")
				}
				if udp && (w.Src.Port() != 4500 || w.Dst.Port() != 4500) {
					t.Fatalf("ESP-in-UDP ports %s -> %s", w.Src, w.Dst)
				}
			}
			for i, l := range sc.s.layers {
				out := counters(t, tb.a.dp, addrB, l.proto, spiFor(1, i))
				in := counters(t, tb.b.dp, addrB, l.proto, spiFor(1, i))
				if out.Packets != 3 || in.Packets != 3 || in.AuthFailures != 0 || in.Bytes != out.Bytes {
					t.Fatalf("layer %d counters out %+v in %+v", i, out, in)
				}
			}
			// A sender counts after its Link returns, which is after the
			// (synchronous) delivery.
			waitFor(t, "B's counters", func() bool { st := tb.b.dp.Stats(); return st.OutPackets == 3 && st.InPackets == 3 })
			if st := tb.b.dp.Stats(); st.InPackets != 3 || st.PolicyMismatch != 0 {
				t.Fatalf("B stats %+v", st)
			}
		})
	}
}

func gcmSuite() suite {
	return suite{mode: alg.Tunnel, window: 64, layers: []layer{{proto: alg.ESP, cipher: alg.AESGCM128, ckey: 20}}}
}

// sendAB pushes one packet A->B and returns what crossed the wire.
func (tb *testbed) sendAB(t *testing.T, payload string) (sent []byte, wire wiretest.Packet) {
	t.Helper()
	tb.net.Record(true)
	before := len(tb.net.Log())
	pkt := udpPacket(hostA, hostB, 1111, 2222, []byte(payload))
	tb.a.tun.Inbound <- pkt
	waitFor(t, "packet on the wire", func() bool { return len(tb.net.Log()) > before })
	return pkt, tb.net.Log()[before]
}

func TestTamperedPacketCounted(t *testing.T) {
	for _, sc := range []suiteCase{
		{"esp-gcm", gcmSuite()},
		{"esp-cbc-sha1", suite{mode: alg.Tunnel, layers: []layer{{proto: alg.ESP, cipher: alg.AES128, ckey: 16, integ: alg.HMACSHA1}}}},
		{"ah", suite{mode: alg.Tunnel, layers: []layer{{proto: alg.AH, integ: alg.HMACMD5}}}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			tb := newTestbed(t, nil)
			tb.install(t, sc.s)
			tb.net.SetFilter(func(p *wiretest.Packet) bool {
				p.Data[len(p.Data)-20] ^= 0x40
				return true
			})
			tb.sendAB(t, "tampered in flight")
			none(t, tb.b.tun)
			c := counters(t, tb.b.dp, addrB, sc.s.layers[0].proto, spiFor(1, 0))
			if c.AuthFailures != 1 || c.Packets != 0 {
				t.Fatalf("counters %+v, want 1 auth failure, 0 packets", c)
			}
		})
	}
}

func TestReplayDropped(t *testing.T) {
	tb := newTestbed(t, nil)
	tb.install(t, gcmSuite())
	pkt, wire := tb.sendAB(t, "once only")
	if got := recv(t, tb.b.tun); !bytes.Equal(got, pkt) {
		t.Fatal("first copy not delivered")
	}
	for range 3 {
		if err := tb.net.Inject(wire); err != nil {
			t.Fatal(err)
		}
	}
	none(t, tb.b.tun)
	c := counters(t, tb.b.dp, addrB, alg.ESP, spiFor(1, 0))
	if c.ReplayErrors != 3 || c.Packets != 1 {
		t.Fatalf("counters %+v, want 3 replays, 1 packet", c)
	}
	// Out of order inside the window is fine: hold one packet back.
	tb.net.SetFilter(func(p *wiretest.Packet) bool { return false })
	_, held := tb.sendAB(t, "second")
	tb.net.SetFilter(nil)
	tb.sendAB(t, "third")
	recv(t, tb.b.tun)
	tb.net.Inject(held)
	if got := recv(t, tb.b.tun); !bytes.Contains(got, []byte("second")) {
		t.Fatalf("held-back packet not delivered: %x", got)
	}
}

func TestReplayWindowEdge(t *testing.T) {
	tb := newTestbed(t, nil)
	tb.install(t, gcmSuite())
	tb.net.SetFilter(func(p *wiretest.Packet) bool { return false })
	for i := range 70 {
		tb.sendAB(t, fmt.Sprint("p", i))
	}
	tb.net.SetFilter(nil)
	wires := tb.net.Log()    // recorded before the filter dropped them
	tb.net.Inject(wires[69]) // seq 70
	recv(t, tb.b.tun)
	tb.net.Inject(wires[6]) // seq 7: 70-7 = 63 < 64, inside
	recv(t, tb.b.tun)
	tb.net.Inject(wires[5]) // seq 6: 70-6 = 64, left of the window
	none(t, tb.b.tun)
	if c := counters(t, tb.b.dp, addrB, alg.ESP, spiFor(1, 0)); c.ReplayErrors != 1 || c.Packets != 2 {
		t.Fatalf("counters %+v", c)
	}
}

func TestLifetimeBytes(t *testing.T) {
	tb := newTestbed(t, nil)
	s := gcmSuite()
	s.life = ipsec.Lifetime{SoftBytes: 100, HardBytes: 200}
	tb.install(t, s)
	outKey := ipsec.SAKey{Dst: addrB, Proto: alg.ESP, SPI: spiFor(1, 0)}
	payload := string(make([]byte, 52)) // 80-byte packets
	tb.sendAB(t, payload)
	noEvent(t, tb.a.dp)
	tb.sendAB(t, payload) // 160 >= soft
	if ev := nextEvent(t, tb.a.dp); ev.Kind != ipsec.EventSoftExpire || ev.SA != outKey {
		t.Fatalf("event %+v, want soft expire of %s", ev, outKey)
	}
	tb.sendAB(t, payload) // 240 >= hard: this packet goes, then the SA is gone
	if ev := nextEvent(t, tb.a.dp); ev.Kind != ipsec.EventHardExpire || ev.SA != outKey {
		t.Fatalf("event %+v, want hard expire", ev)
	}
	if _, err := tb.a.dp.Counters(context.Background(), outKey); !errors.Is(err, ipsec.ErrNotFound) {
		t.Fatalf("hard-expired SA still there: %v", err)
	}
	for range 3 {
		recv(t, tb.b.tun)
	}
	// The next packet needs a new SA: acquire.
	tb.a.tun.Inbound <- udpPacket(hostA, hostB, 1, 2, nil)
	if ev := nextEvent(t, tb.a.dp); ev.Kind != ipsec.EventAcquire {
		t.Fatalf("event %+v, want acquire", ev)
	}
	// Inbound side counts the same bytes and expires too.
	inKey := outKey
	var kinds []ipsec.EventKind
	for range 2 {
		ev := nextEvent(t, tb.b.dp)
		if ev.SA != inKey {
			t.Fatalf("B event for %s", ev.SA)
		}
		kinds = append(kinds, ev.Kind)
	}
	if kinds[0] != ipsec.EventSoftExpire || kinds[1] != ipsec.EventHardExpire {
		t.Fatalf("B events %v", kinds)
	}
}

func TestLifetimeTime(t *testing.T) {
	tb := newTestbed(t, nil)
	s := gcmSuite()
	s.life = ipsec.Lifetime{SoftTime: 50 * time.Minute, HardTime: time.Hour}
	tb.install(t, s)
	// A holds its outbound SA to B and its inbound SA from B.
	out := ipsec.SAKey{Dst: addrB, Proto: alg.ESP, SPI: spiFor(1, 0)}
	in := ipsec.SAKey{Dst: addrA, Proto: alg.ESP, SPI: spiFor(2, 0)}
	both := func(kind ipsec.EventKind) {
		t.Helper()
		got := map[ipsec.SAKey]bool{}
		for range 2 {
			ev := nextEvent(t, tb.a.dp)
			if ev.Kind != kind {
				t.Fatalf("event %+v, want %s", ev, kind)
			}
			got[ev.SA] = true
		}
		if !got[out] || !got[in] {
			t.Fatalf("%s events for %v", kind, got)
		}
		noEvent(t, tb.a.dp)
	}
	tb.clk.Add(49 * time.Minute)
	tb.a.dp.Sweep()
	noEvent(t, tb.a.dp)
	tb.clk.Add(time.Minute)
	tb.a.dp.Sweep()
	tb.a.dp.Sweep() // soft fires once per SA
	both(ipsec.EventSoftExpire)
	tb.clk.Add(10 * time.Minute)
	tb.a.dp.Sweep()
	both(ipsec.EventHardExpire)
	for _, k := range []ipsec.SAKey{out, in} {
		if _, err := tb.a.dp.Counters(context.Background(), k); !errors.Is(err, ipsec.ErrNotFound) {
			t.Fatalf("hard-expired SA %s still installed", k)
		}
	}
	tb.a.dp.Sweep()
	noEvent(t, tb.a.dp)
}

// TestAcquireOncePerPolicy: many packets without an SA raise one acquire,
// a bounded number wait, and they are sent when the SAs are installed.
func TestAcquireOncePerPolicy(t *testing.T) {
	tb := newTestbed(t, func(c *Config) { c.AcquireQueue = 4; c.AcquireRetry = 10 * time.Second })
	ctx := context.Background()
	s := gcmSuite()
	// Policies only on A; SAs come later.
	tmpl := []ipsec.Template{{Proto: alg.ESP, Mode: alg.Tunnel, Src: addrA, Dst: addrB, ReqID: 1}}
	pol := ipsec.Policy{ID: 10, Dir: ipsec.DirOut, Priority: 10, Selector: ipsec.Selector{Src: lanA, Dst: lanB}, Action: ipsec.ActionProtect, Templates: tmpl}
	if err := tb.a.dp.AddPolicy(ctx, pol); err != nil {
		t.Fatal(err)
	}
	var sent [][]byte
	for i := range 10 {
		p := udpPacket(hostA, hostB, 5000+uint16(i), 53, []byte("hello"))
		sent = append(sent, p)
		tb.a.tun.Inbound <- p
	}
	ev := nextEvent(t, tb.a.dp)
	if ev.Kind != ipsec.EventAcquire || ev.Policy != pol.Key() || ev.SA.Dst != addrB || ev.Src != addrA {
		t.Fatalf("event %+v", ev)
	}
	if !ev.Trigger.Matches(hostA, hostB, protoUDP, 5000, 53) || ev.Trigger.Src.Bits() != 32 {
		t.Fatalf("trigger %s", ev.Trigger)
	}
	waitFor(t, "10 packets handled", func() bool { st := tb.a.dp.Stats(); return st.AcquireQueued+st.AcquireDropped == 10 })
	noEvent(t, tb.a.dp)
	if st := tb.a.dp.Stats(); st.AcquireQueued != 4 || st.AcquireDropped != 6 {
		t.Fatalf("stats %+v, want 4 queued 6 dropped", st)
	}
	// After the retry interval a packet raises a new acquire.
	tb.clk.Add(10 * time.Second)
	tb.a.tun.Inbound <- sent[0]
	if ev := nextEvent(t, tb.a.dp); ev.Kind != ipsec.EventAcquire {
		t.Fatalf("no second acquire after the retry interval: %+v", ev)
	}
	// Now the SAs: full install (both sides); queued packets go out.
	tb.a.dp.DeletePolicy(ctx, pol.Key())
	tb.a.dp.AddPolicy(ctx, pol)
	tb.installSAsAndPeer(t, s)
	for i := range 4 {
		if got := recv(t, tb.b.tun); !bytes.Equal(got, sent[i]) {
			t.Fatalf("queued packet %d: got %x", i, got)
		}
	}
	none(t, tb.b.tun)
	if st := tb.a.dp.Stats(); st.OutPackets != 4 {
		t.Fatalf("A sent %d, want 4", st.OutPackets)
	}
}

// installSAsAndPeer installs A's outbound SA last, after B is ready.
func (tb *testbed) installSAsAndPeer(t *testing.T, s suite) {
	ctx := context.Background()
	l := s.layers[0]
	sa := ipsec.SA{Src: addrA, Dst: addrB, Proto: l.proto, SPI: spiFor(1, 0), Mode: s.mode, Cipher: l.cipher,
		CipherKey: testKey(l.ckey, 1), ReqID: 1}
	in := sa
	in.Dir, in.ReplayWindow = ipsec.DirIn, 64
	if err := tb.b.dp.AddSA(ctx, in); err != nil {
		t.Fatal(err)
	}
	// The acquire queue was keyed by policy ID 10: a re-added policy
	// keeps its key, so the queue is still there.
	out := sa
	out.Dir = ipsec.DirOut
	if err := tb.a.dp.AddSA(ctx, out); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidSPIEvent(t *testing.T) {
	tb := newTestbed(t, nil)
	tb.install(t, gcmSuite())
	_, wire := tb.sendAB(t, "x")
	recv(t, tb.b.tun)
	// Delete B's inbound SA: A's next packets hit an unknown SPI (the
	// black hole of a peer reboot).
	key := ipsec.SAKey{Dst: addrB, Proto: alg.ESP, SPI: spiFor(1, 0)}
	if err := tb.b.dp.DeleteSA(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		tb.net.Inject(wire)
	}
	ev := nextEvent(t, tb.b.dp)
	if ev.Kind != ipsec.EventInvalidSPI || ev.SA != key || ev.Src != addrA || ev.SrcPort != 0 {
		t.Fatalf("event %+v", ev)
	}
	noEvent(t, tb.b.dp) // the 4 repeats are deduplicated
	if st := tb.b.dp.Stats().InvalidSPI; st.Seen != 5 || st.Reported != 1 || st.Duplicates != 4 {
		t.Fatalf("invalid SPI stats %+v", st)
	}
	// AH and ESP-in-UDP too.
	ahPkt := make([]byte, 20+24)
	writeIPv4(ahPkt, addrA, addrB, protoAH, len(ahPkt), 1, 0)
	ahPkt[21] = 4
	copy(ahPkt[24:28], []byte{0xde, 0xad, 0xbe, 0xef})
	tb.b.dp.HandleIP(ahPkt)
	if ev := nextEvent(t, tb.b.dp); ev.SA.Proto != alg.AH || ev.SA.SPI != 0xdeadbeef {
		t.Fatalf("AH event %+v", ev)
	}
	src := netip.AddrPortFrom(addrA, 31337)
	tb.b.dp.HandleESPInUDP([]byte{0xca, 0xfe, 0xf0, 0x0d, 0, 0, 0, 1, 1, 2, 3, 4}, src, netip.AddrPortFrom(addrB, 4500))
	if ev := nextEvent(t, tb.b.dp); ev.SA.Proto != alg.ESP || ev.SA.SPI != 0xcafef00d || ev.SrcPort != 31337 {
		t.Fatalf("ESP-in-UDP event %+v", ev)
	}
}

// TestInvalidSPIFlood: random SPIs from random sources through HandleIP
// allocate nothing, produce a bounded number of events, and never block.
func TestInvalidSPIFlood(t *testing.T) {
	tb := newTestbed(t, func(c *Config) { c.EventQueue = 8 })
	b := tb.b.dp
	pkt := make([]byte, 20+40)
	var i uint32
	flood := func() {
		i++
		writeIPv4(pkt, netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), addrB, protoESP, len(pkt), 0, 0)
		pkt[20], pkt[21], pkt[22], pkt[23] = byte(i*7919>>24), byte(i*7919>>16), byte(i), byte(i>>8)
		b.HandleIP(pkt)
	}
	for range 1000 { // use up the global burst; the event channel fills
		flood()
	}
	if a := testing.AllocsPerRun(5000, flood); a != 0 {
		t.Fatalf("%.2f allocations per invalid-SPI packet", a)
	}
	st := b.Stats()
	if st.InvalidSPI.Seen != 6001 || st.InvalidSPI.Reported > 100 {
		t.Fatalf("stats %+v: want 6001 seen, at most the global burst reported", st.InvalidSPI)
	}
	got := 0 // the events waiting: at most EventQueue of them
	for waiting := true; waiting; {
		select {
		case <-b.Events():
			got++
		case <-time.After(200 * time.Millisecond):
			waiting = false
		}
	}
	if got != 8 || st.EventsDropped != st.InvalidSPI.Reported-8 {
		t.Fatalf("%d events queued, %d dropped, %d reported", got, st.EventsDropped, st.InvalidSPI.Reported)
	}
}

func TestAllocSPI(t *testing.T) {
	tb := newTestbed(t, nil)
	tb.install(t, gcmSuite())
	ctx := context.Background()
	seen := map[uint32]bool{spiFor(1, 0): true, spiFor(2, 0): true}
	for range 2000 {
		spi, err := tb.b.dp.AllocSPI(ctx, alg.ESP, addrA, addrB)
		if err != nil {
			t.Fatal(err)
		}
		if spi < 256 || seen[spi] {
			t.Fatalf("SPI 0x%x reserved or repeated", spi)
		}
		seen[spi] = true
	}
	if _, err := tb.b.dp.AllocSPI(ctx, 6, addrA, addrB); err == nil {
		t.Fatal("AllocSPI for TCP")
	}
	spi, _ := tb.b.dp.AllocSPI(ctx, alg.ESP, addrA, addrB)
	sa := ipsec.SA{Src: addrA, Dst: addrB, Proto: alg.ESP, SPI: spi, Dir: ipsec.DirIn, Cipher: alg.AESGCM128, CipherKey: testKey(20, 1)}
	if err := tb.b.dp.AddSA(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if err := tb.b.dp.AddSA(ctx, sa); !errors.Is(err, ipsec.ErrExists) {
		t.Fatalf("duplicate AddSA: %v", err)
	}
}

func TestPolicyActions(t *testing.T) {
	tb := newTestbed(t, nil)
	tb.install(t, gcmSuite())
	ctx := context.Background()
	// Higher-priority (lower number) entries carve out of the protect one.
	bypass := ipsec.Policy{ID: 1, Dir: ipsec.DirOut, Priority: 1, Action: ipsec.ActionBypass,
		Selector: ipsec.Selector{Src: lanA, Dst: lanB, Proto: protoUDP, DstPort: ipsec.PortRange{Lo: 123, Hi: 123}}}
	discard := ipsec.Policy{ID: 2, Dir: ipsec.DirOut, Priority: 2, Action: ipsec.ActionDiscard,
		Selector: ipsec.Selector{Src: lanA, Dst: netip.MustParsePrefix("203.0.113.66/32")}}
	for _, p := range []ipsec.Policy{bypass, discard} {
		if err := tb.a.dp.AddPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	tb.a.tun.Inbound <- udpPacket(hostA, hostB, 1, 123, nil)
	tb.a.tun.Inbound <- udpPacket(hostA, netip.MustParseAddr("203.0.113.66"), 1, 53, nil)
	tb.a.tun.Inbound <- udpPacket(hostA, netip.MustParseAddr("192.0.2.99"), 1, 53, nil)
	tb.a.tun.Inbound <- []byte{0x45, 0, 0}
	p := udpPacket(hostA, hostB, 1, 53, nil)
	tb.a.tun.Inbound <- p
	if got := recv(t, tb.b.tun); !bytes.Equal(got, p) {
		t.Fatal("protected packet lost")
	}
	waitFor(t, "stats", func() bool {
		st := tb.a.dp.Stats()
		return st.Bypass == 1 && st.Discard == 1 && st.NoPolicy == 1 && st.Malformed == 1
	})
	if err := tb.a.dp.AddPolicy(ctx, bypass); !errors.Is(err, ipsec.ErrExists) {
		t.Fatalf("duplicate policy: %v", err)
	}
	if err := tb.a.dp.DeletePolicy(ctx, ipsec.PolicyKey{Dir: ipsec.DirOut, ID: 99}); !errors.Is(err, ipsec.ErrNotFound) {
		t.Fatalf("delete missing policy: %v", err)
	}
	bad := ipsec.Policy{ID: 3, Dir: ipsec.DirOut, Action: ipsec.ActionProtect, Selector: ipsec.Selector{Src: lanA, Dst: lanB}}
	if err := tb.a.dp.AddPolicy(ctx, bad); err == nil {
		t.Fatal("protect policy without templates accepted")
	}
}

// TestInboundPolicyChecks: decapsulated traffic must match the SA's
// selector and the inbound policy's bundle.
func TestInboundPolicyChecks(t *testing.T) {
	t.Run("bundle policy refuses esp alone", func(t *testing.T) {
		tb := newTestbed(t, nil)
		tb.install(t, gcmSuite())
		// Replace B's inbound policy by one that demands AH+ESP.
		ctx := context.Background()
		tb.b.dp.DeletePolicy(ctx, ipsec.PolicyKey{Dir: ipsec.DirIn, ID: 10})
		tm := []ipsec.Template{{Proto: alg.ESP, ReqID: 1, Dst: addrB}, {Proto: alg.AH, ReqID: 1, Dst: addrB}}
		tb.b.dp.AddPolicy(ctx, ipsec.Policy{ID: 11, Dir: ipsec.DirIn, Selector: ipsec.Selector{Src: lanA, Dst: lanB}, Action: ipsec.ActionProtect, Templates: tm})
		tb.sendAB(t, "esp only")
		none(t, tb.b.tun)
		if st := tb.b.dp.Stats(); st.PolicyMismatch != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("sa selector", func(t *testing.T) {
		tb := newTestbed(t, nil)
		tb.install(t, gcmSuite())
		ctx := context.Background()
		key := ipsec.SAKey{Dst: addrB, Proto: alg.ESP, SPI: spiFor(1, 0)}
		tb.b.dp.DeleteSA(ctx, key)
		tb.b.dp.DeletePolicy(ctx, ipsec.PolicyKey{Dir: ipsec.DirIn, ID: 10})
		l := gcmSuite().layers[0]
		tb.b.dp.AddSA(ctx, ipsec.SA{Src: addrA, Dst: addrB, Proto: alg.ESP, SPI: key.SPI, Dir: ipsec.DirIn, Cipher: l.cipher,
			CipherKey: testKey(l.ckey, 0), ReqID: 1, Selector: ipsec.Selector{Src: netip.MustParsePrefix("198.51.100.99/32"), Dst: lanB}})
		tb.sendAB(t, "from the wrong host")
		none(t, tb.b.tun)
		if c := counters(t, tb.b.dp, addrB, alg.ESP, key.SPI); c.OtherErrors != 1 {
			t.Fatalf("counters %+v", c)
		}
	})
}

func TestRoutes(t *testing.T) {
	tb := newTestbed(t, nil)
	tb.install(t, gcmSuite())
	r := tb.a.router
	if !r.routes[lanB] || len(r.routes) != 1 {
		t.Fatalf("routes %v, want %s only", r.routes, lanB)
	}
	ctx := context.Background()
	second := ipsec.Policy{ID: 20, Dir: ipsec.DirOut, Priority: 20, Action: ipsec.ActionProtect,
		Selector:  ipsec.Selector{Src: netip.MustParsePrefix("198.51.100.128/25"), Dst: lanB, Proto: 6},
		Templates: []ipsec.Template{{Proto: alg.ESP, Dst: addrB, ReqID: 1}}}
	tb.a.dp.AddPolicy(ctx, second)
	tb.a.dp.DeletePolicy(ctx, ipsec.PolicyKey{Dir: ipsec.DirOut, ID: 10})
	if !r.routes[lanB] {
		t.Fatal("route removed while another policy needs it")
	}
	tb.a.dp.DeletePolicy(ctx, second.Key())
	if len(r.routes) != 0 {
		t.Fatalf("routes left: %v", r.routes)
	}
	if got := fmt.Sprint(r.log); got != "[add 203.0.113.0/24 del 203.0.113.0/24]" {
		t.Fatalf("route log %s", got)
	}
	tb.a.dp.AddPolicy(ctx, second)
	if !r.routes[lanB] {
		t.Fatal("route not re-added")
	}
	if err := tb.a.dp.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(r.routes) != 0 {
		t.Fatalf("routes after Flush: %v", r.routes)
	}
	if _, err := tb.a.dp.Counters(ctx, ipsec.SAKey{Dst: addrB, Proto: alg.ESP, SPI: spiFor(1, 0)}); !errors.Is(err, ipsec.ErrNotFound) {
		t.Fatal("SA survived Flush")
	}
}

func TestCloseClosesEvents(t *testing.T) {
	tb := newTestbed(t, nil)
	tb.a.dp.Close()
	if _, ok := <-tb.a.dp.Events(); ok {
		t.Fatal("events channel open after Close")
	}
	tb.a.dp.HandleIP(make([]byte, 60)) // no panic after Close
	if err := tb.a.dp.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRekeyOverlap: a second outbound SA for the same template (a rekey)
// takes over new packets; the old inbound SA keeps working until deleted;
// deleting the newer outbound SA falls back to the older one.
func TestRekeyOverlap(t *testing.T) {
	tb := newTestbed(t, nil)
	tb.install(t, gcmSuite())
	ctx := context.Background()
	l := gcmSuite().layers[0]
	newSA := ipsec.SA{Src: addrA, Dst: addrB, Proto: alg.ESP, SPI: 0x9999, Mode: alg.Tunnel, Cipher: l.cipher,
		CipherKey: testKey(l.ckey, 42), ReqID: 1}
	in := newSA
	in.Dir, in.ReplayWindow = ipsec.DirIn, 64
	if err := tb.b.dp.AddSA(ctx, in); err != nil {
		t.Fatal(err)
	}
	out := newSA
	out.Dir = ipsec.DirOut
	if err := tb.a.dp.AddSA(ctx, out); err != nil {
		t.Fatal(err)
	}
	old := spiFor(1, 0)
	_, w := tb.sendAB(t, "after rekey")
	recv(t, tb.b.tun)
	if wiretest.SPI(w) != 0x9999 {
		t.Fatalf("sent with SPI 0x%x, want the new 0x9999", wiretest.SPI(w))
	}
	// Delete the new outbound SA: the old one (still installed) carries on.
	if err := tb.a.dp.DeleteSA(ctx, ipsec.SAKey{Dst: addrB, Proto: alg.ESP, SPI: 0x9999}); err != nil {
		t.Fatal(err)
	}
	_, w = tb.sendAB(t, "fallback")
	recv(t, tb.b.tun)
	if wiretest.SPI(w) != old {
		t.Fatalf("sent with SPI 0x%x, want the old 0x%x", wiretest.SPI(w), old)
	}
	if err := tb.a.dp.DeleteSA(ctx, ipsec.SAKey{Dst: addrB, Proto: alg.ESP, SPI: old}); err != nil {
		t.Fatal(err)
	}
	tb.a.tun.Inbound <- udpPacket(hostA, hostB, 1, 2, nil)
	if ev := nextEvent(t, tb.a.dp); ev.Kind != ipsec.EventAcquire {
		t.Fatalf("event %+v, want acquire once no SA is left", ev)
	}
	if err := tb.a.dp.DeleteSA(ctx, ipsec.SAKey{Dst: addrB, Proto: alg.ESP, SPI: old}); !errors.Is(err, ipsec.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

package transport

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike"
)

var (
	loA = netip.MustParseAddr("127.0.0.1")
	loB = netip.MustParseAddr("127.0.0.2")
)

var portBase atomic.Uint32

func init() { portBase.Store(uint32(20000 + time.Now().UnixNano()%20000)) }

type end struct {
	t       *Transport
	install chan ike.ChildSA
	deletes chan ike.ChildDelete
	esp     chan []byte
}

func engineConfig(port uint16, natt ike.NATTMode) ike.Config {
	return ike.Config{
		Policies: []ike.Policy{{Priority: 1, Cipher: alg.AES128, Hash: alg.SHA1, Group: alg.MODP2048}},
		Keys:     map[netip.Addr]alg.Key{netip.IPv4Unspecified(): alg.Key("loopback-psk")},
		NATT:     natt, Port: port, NATTPort: port + 1,
	}
}

func startEnd(t testing.TB, local netip.Addr, ecfg ike.Config, pols []ike.ChildPolicy) *end {
	t.Helper()
	en := &end{install: make(chan ike.ChildSA, 100000), deletes: make(chan ike.ChildDelete, 100000), esp: make(chan []byte, 16)}
	tr, err := New(ecfg, Config{Addrs: []netip.Addr{local},
		ESPHandler: func(pkt []byte, src, dst netip.AddrPort) { en.esp <- append([]byte(nil), pkt...) },
		OnOutput: func(o ike.Output) {
			for _, c := range o.Install {
				select {
				case en.install <- c:
				default:
				}
			}
			for _, d := range o.Delete {
				select {
				case en.deletes <- d:
				default:
				}
			}
		}}, rand.Reader)
	if err != nil {
		t.Skipf("cannot bind %v (no 127.0.0.2 on lo?): %v", local, err)
	}
	t.Cleanup(func() { tr.Close() })
	if err := tr.SetChildPolicies(pols); err != nil {
		t.Fatal(err)
	}
	en.t = tr
	return en
}

func pol(tag string, local, peer netip.Addr, l, r string) ike.ChildPolicy {
	return ike.ChildPolicy{Tag: tag, Local: local, Peer: peer,
		LocalTS: ike.Selector{Prefix: netip.MustParsePrefix(l)}, RemoteTS: ike.Selector{Prefix: netip.MustParsePrefix(r)},
		Proposals: []ike.Transform{{ESP: alg.AES128, ESPInteg: alg.HMACSHA1}}}
}

func waitFor[T any](t testing.TB, ch chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timeout waiting for %s", what)
	}
	var z T
	return z
}

func TestLoopbackNegotiationAndESPDemux(t *testing.T) {
	port := uint16(portBase.Add(2))
	ecfg := engineConfig(port, ike.NATTForce)
	a := startEnd(t, loA, ecfg, []ike.ChildPolicy{pol("a", loA, loB, "198.51.100.0/24", "203.0.113.0/24")})
	b := startEnd(t, loB, ecfg, []ike.ChildPolicy{pol("b", loB, loA, "203.0.113.0/24", "198.51.100.0/24")})
	if err := a.t.Initiate("a", nil); err != nil {
		t.Fatal(err)
	}
	ca, cb := waitFor(t, a.install, "A install"), waitFor(t, b.install, "B install")
	if ca.OutSPI(alg.ESP) != cb.InSPI(alg.ESP) || ca.InSPI(alg.ESP) != cb.OutSPI(alg.ESP) {
		t.Fatal("SPIs do not match")
	}
	if !bytes.Equal(ca.Out[0].EncKey, cb.In[0].EncKey) {
		t.Fatal("keys differ")
	}
	if ca.Encap == nil || ca.Encap.LocalPort != port+1 {
		t.Fatalf("encap %+v", ca.Encap)
	}
	// ESP-in-UDP through the shared NAT-T socket reaches B's ESP handler.
	esp := []byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 1, 2, 3}
	if err := a.t.SendESP(esp, netip.AddrPortFrom(loA, port+1), netip.AddrPortFrom(loB, port+1)); err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, b.esp, "ESP"); !bytes.Equal(got, esp) {
		t.Fatalf("ESP handler got %x", got)
	}
	s, err := b.t.Snapshot()
	if err != nil || len(s.IKE) != 1 || len(s.Children) != 1 || s.Children[0].In[0].EncKey != nil {
		t.Fatalf("snapshot %+v %v", s, err)
	}
	if err := a.t.DeleteChild(ca.ID); err != nil {
		t.Fatal(err)
	}
	if d := waitFor(t, b.deletes, "B delete"); d.ID != cb.ID || d.Reason != ike.ReasonPeerDelete {
		t.Fatalf("delete %+v", d)
	}
}

// BenchmarkLoopbackMMQM measures complete Main Mode + Quick Mode
// negotiations (aes128-sha1-modp2048, ESP aes128-sha1, PFS modp2048) over
// loopback UDP, 32 in flight: each op is one new ISAKMP SA and one child SA.
func BenchmarkLoopbackMMQM(b *testing.B) {
	port := uint16(portBase.Add(2))
	ecfg := engineConfig(port, ike.NATTForce)
	ecfg.MaxSAsPerPeer = 1 << 30
	ecfg.MaxHalfOpen = 1 << 30
	bcfg := ecfg
	var pa, pb []ike.ChildPolicy
	for i := 0; i < b.N; i++ {
		p := pol(fmt.Sprint("a", i), loA, loB, "198.51.100.0/24", "203.0.113.0/24")
		pa = append(pa, p)
	}
	pb = append(pb, pol("b", loB, loA, "203.0.113.0/24", "198.51.100.0/24"))
	ea := startEnd(b, loA, ecfg, pa)
	eb := startEnd(b, loB, bcfg, pb)
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	// Each Initiate joins the Main Mode in progress, so force one ISAKMP SA
	// per child by clearing A's view after each establishment.
	inflight := make(chan struct{}, 32)
	go func() {
		for range b.N {
			<-ea.install
		}
	}()
	go func() {
		for i := 0; i < b.N; i++ {
			inflight <- struct{}{}
			ea.t.do(func(now time.Time, e *ike.Engine) error { return e.InitiateNew(now, fmt.Sprint("a", i)) })
		}
	}()
	for i := 0; i < b.N; i++ {
		select {
		case <-eb.install:
		case <-time.After(10 * time.Second):
			sa, _ := ea.t.Snapshot()
			sb, _ := eb.t.Snapshot()
			b.Fatalf("timeout after %d: A %+v\nB %+v", i, sa.Counters, sb.Counters)
		}
		<-inflight
	}
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "negotiations/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/negotiation")
	sa, _ := ea.t.Snapshot()
	sb, _ := eb.t.Snapshot()
	b.ReportMetric(float64(sa.Counters.Retransmits+sb.Counters.Retransmits), "retransmits")
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The NAT-T port demultiplexes: a keepalive goes nowhere, four zero bytes
// mean IKE (the engine counts it), anything else is ESP for the handler.
func TestNATTPortDemux(t *testing.T) {
	port := uint16(portBase.Add(2))
	b := startEnd(t, loB, engineConfig(port, ike.NATTAuto), nil)
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(loB, port+1)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0xff})                                        // keepalive
	c.Write([]byte{0, 0, 0, 0, 1, 2, 3})                         // marker + garbage IKE
	c.Write([]byte{0x12, 0x34, 0x56, 0x78, 0, 0, 0, 1, 9, 9, 9}) // ESP
	got := waitFor(t, b.esp, "ESP")
	if got[0] != 0x12 || len(got) != 11 {
		t.Fatalf("ESP handler got %x", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, _ := b.t.Snapshot()
		if s.Counters.PacketsIn == 1 && s.Counters.Malformed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("engine counters %+v", s.Counters)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case x := <-b.esp:
		t.Fatalf("keepalive or IKE reached the ESP handler: %x", x)
	default:
	}
}

// TestOutputBeforeItsDatagrams: BeforeSend returns before the datagrams of
// the same step leave, so SAs installed there are in place before the peer
// hears it may use them: the responder's prepared inbound SAs before
// Quick Mode 2, the initiator's bundle before Quick Mode 3.
func TestOutputBeforeItsDatagrams(t *testing.T) {
	port := uint16(portBase.Add(2))
	ecfg := engineConfig(port, ike.NATTOff)
	var preparedB, installedA, seenA, seenB atomic.Int64
	mk := func(local, peer netip.Addr, tag, l, r string, onPrepare, onInstall *atomic.Int64, seen *atomic.Int64) *Transport {
		tr, err := New(ecfg, Config{Addrs: []netip.Addr{local}, BeforeSend: func(o ike.Output) {
			if len(o.Install) > 0 && seen.Load() == 0 {
				seen.Store(time.Now().UnixNano())
			}
			if (len(o.Prepare) > 0 && onPrepare != nil) || (len(o.Install) > 0 && onInstall != nil) {
				time.Sleep(200 * time.Millisecond) // a slow dataplane
				if len(o.Prepare) > 0 && onPrepare != nil {
					onPrepare.Store(time.Now().UnixNano())
				}
				if len(o.Install) > 0 && onInstall != nil {
					onInstall.Store(time.Now().UnixNano())
				}
			}
		}}, rand.Reader)
		if err != nil {
			t.Skipf("cannot bind %v (no 127.0.0.2 on lo?): %v", local, err)
		}
		t.Cleanup(func() { tr.Close() })
		if err := tr.SetChildPolicies([]ike.ChildPolicy{pol(tag, local, peer, l, r)}); err != nil {
			t.Fatal(err)
		}
		return tr
	}
	a := mk(loA, loB, "a", "198.51.100.0/24", "203.0.113.0/24", nil, &installedA, &seenA)
	mk(loB, loA, "b", "203.0.113.0/24", "198.51.100.0/24", &preparedB, nil, &seenB)
	if err := a.Initiate("a", nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for seenB.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if seenA.Load() == 0 || seenB.Load() == 0 || preparedB.Load() == 0 || installedA.Load() == 0 {
		t.Fatalf("no negotiation: A installed at %d, B at %d", seenA.Load(), seenB.Load())
	}
	if seenA.Load() < preparedB.Load() {
		t.Error("A had Quick Mode 2 before B's BeforeSend returned from preparing its inbound SAs")
	}
	if seenB.Load() < installedA.Load() {
		t.Error("B had Quick Mode 3 before A's BeforeSend returned from installing")
	}
}

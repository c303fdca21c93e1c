package userspace

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand"
	"net/netip"
	"slices"
	"testing"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// linearSPD is the SPD as it was before the tuple-space index: every change
// copies and re-sorts all policies, a lookup scans them in ACL order. It is
// the reference the index is checked against and the "before" of
// BenchmarkSPD.
type linearSPD struct {
	byKey map[ipsec.PolicyKey]*ipsec.Policy
	out   []*ipsec.Policy
}

func (l *linearSPD) add(p *ipsec.Policy) {
	byKey := maps.Clone(l.byKey)
	byKey[p.Key()] = p
	l.rebuild(byKey)
}

func (l *linearSPD) del(k ipsec.PolicyKey) {
	byKey := maps.Clone(l.byKey)
	delete(byKey, k)
	l.rebuild(byKey)
}

func (l *linearSPD) rebuild(byKey map[ipsec.PolicyKey]*ipsec.Policy) {
	l.byKey, l.out = byKey, nil
	for _, p := range byKey {
		l.out = append(l.out, p)
	}
	slices.SortFunc(l.out, func(a, b *ipsec.Policy) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.ID, b.ID))
	})
}

func (l *linearSPD) lookup(f *flow) *ipsec.Policy {
	for _, p := range l.out {
		if p.Selector.Matches(f.src, f.dst, f.proto, f.sport, f.dport) {
			return p
		}
	}
	return nil
}

func newSPDDataplane(tb testing.TB) *Dataplane {
	d, err := New(Config{SweepInterval: -1, Logger: quietLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// randomSelectors draws from a small universe so that selectors overlap:
// any, /8, /24, /25 and host prefixes on both sides, protocols and ports.
func randomSelector(r *rand.Rand) ipsec.Selector {
	pfx := func(base [4]byte) netip.Prefix {
		switch r.Intn(6) {
		case 0:
			return netip.MustParsePrefix("0.0.0.0/0")
		case 1:
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], 0, 0, 0}), 8)
		case 2:
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], base[2], 0}), 24)
		case 3:
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], base[2], 128}), 25)
		default:
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], base[2], byte(120 + r.Intn(16))}), 32)
		}
	}
	s := ipsec.Selector{Src: pfx([4]byte{198, 51, 100}), Dst: pfx([4]byte{203, 0, 113})}
	s.Proto = []uint8{0, 0, protoTCP, protoUDP}[r.Intn(4)]
	if s.Proto != 0 && r.Intn(2) == 0 {
		s.DstPort = []ipsec.PortRange{{Lo: 53, Hi: 53}, {Lo: 1000, Hi: 2000}}[r.Intn(2)]
	}
	return s
}

func randomFlow(r *rand.Rand) flow {
	host := func(a, b, c byte) netip.Addr {
		if r.Intn(8) == 0 {
			return netip.AddrFrom4([4]byte{a, byte(r.Intn(256)), byte(r.Intn(256)), byte(r.Intn(256))})
		}
		return netip.AddrFrom4([4]byte{a, b, c, byte(112 + r.Intn(32))})
	}
	f := flow{src: host(198, 51, 100), dst: host(203, 0, 113), proto: []uint8{protoICMP, protoTCP, protoUDP}[r.Intn(3)]}
	if f.proto != protoICMP {
		f.sport, f.dport = uint16(r.Intn(65536)), []uint16{53, 1500, 8080}[r.Intn(3)]
	}
	return f
}

func testPolicy(r *rand.Rand, id uint32) ipsec.Policy {
	p := ipsec.Policy{ID: id, Dir: ipsec.DirOut, Priority: uint32(r.Intn(5)), Selector: randomSelector(r), Action: ipsec.ActionBypass}
	if r.Intn(3) > 0 {
		p.Action = ipsec.ActionProtect
		p.Templates = []ipsec.Template{{Proto: alg.ESP, Mode: alg.Tunnel, Src: addrA, Dst: addrB, ReqID: id}}
	}
	return p
}

// TestSPDIndexMatchesLinearScan: through random adds and deletes of
// overlapping policies (priority ties broken by ID), the index finds the
// same policy as a scan in ACL order, for every flow tried.
func TestSPDIndexMatchesLinearScan(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	d := newSPDDataplane(t)
	ctx := context.Background()
	ref := &linearSPD{byKey: map[ipsec.PolicyKey]*ipsec.Policy{}}
	var live []ipsec.PolicyKey
	nextID := uint32(1)
	for round := range 40 {
		for range 50 {
			if len(live) > 0 && r.Intn(3) == 0 {
				i := r.Intn(len(live))
				k := live[i]
				live = slices.Delete(live, i, i+1)
				if err := d.DeletePolicy(ctx, k); err != nil {
					t.Fatal(err)
				}
				ref.del(k)
				continue
			}
			p := testPolicy(r, nextID)
			nextID++
			if err := d.AddPolicy(ctx, p); err != nil {
				t.Fatal(err)
			}
			ref.add(&p)
			live = append(live, p.Key())
		}
		for range 500 {
			f := randomFlow(r)
			got, want := d.spd.out.lookup(&f), ref.lookup(&f)
			if (got == nil) != (want == nil) || (got != nil && got.Key() != want.Key()) {
				t.Fatalf("round %d, %d policies, flow %+v: index found %v, scan %v", round, len(live), f, got, want)
			}
		}
	}
	if n := d.spd.out.n.Load(); int(n) != len(live) {
		t.Fatalf("index holds %d, want %d", n, len(live))
	}
	for _, k := range live {
		if err := d.DeletePolicy(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if tp := d.spd.out.tuples.Load(); tp != nil && len(*tp) != 0 {
		t.Fatalf("%d empty groups left", len(*tp))
	}
}

// TestSPDLookupNoAllocs: the packet path's lookup allocates nothing.
func TestSPDLookupNoAllocs(t *testing.T) {
	d := newSPDDataplane(t)
	r := rand.New(rand.NewSource(2))
	for i := range 1000 {
		p := testPolicy(r, uint32(i+1))
		if err := d.AddPolicy(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	f := randomFlow(r)
	if a := testing.AllocsPerRun(1000, func() { d.spd.out.lookup(&f) }); a != 0 {
		t.Fatalf("%.1f allocations per lookup", a)
	}
}

// hostPairPolicy is the scale lab's crypto-map entry: host i to host i.
func hostPairPolicy(i int) ipsec.Policy {
	src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	dst := netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)})
	return ipsec.Policy{ID: uint32(i + 1), Dir: ipsec.DirOut, Priority: uint32(i + 1),
		Selector: ipsec.Selector{Src: netip.PrefixFrom(src, 32), Dst: netip.PrefixFrom(dst, 32)}, Action: ipsec.ActionProtect,
		Templates: []ipsec.Template{{Proto: alg.ESP, Mode: alg.Tunnel, Src: addrA, Dst: addrB, ReqID: uint32(i + 1)}}}
}

// BenchmarkSPD: adding (and removing) one policy to a table of n, and one
// lookup among n, host-pair policies plus a catch-all bypass at the end:
// linear is the SPD before the index (copy and re-sort per change, scan per
// packet), index the tuple space.
func BenchmarkSPD(b *testing.B) {
	for _, n := range []int{10, 1000, 10_000} {
		pols := make([]ipsec.Policy, n)
		for i := range pols {
			pols[i] = hostPairPolicy(i)
		}
		bypass := ipsec.Policy{ID: 1 << 30, Dir: ipsec.DirOut, Priority: 1 << 30, Action: ipsec.ActionBypass,
			Selector: ipsec.Selector{Src: netip.MustParsePrefix("0.0.0.0/0"), Dst: netip.MustParsePrefix("0.0.0.0/0")}}
		extra := hostPairPolicy(n)
		flows := make([]flow, 1024)
		for i := range flows {
			p := &pols[(i*7919)%n]
			flows[i] = flow{src: p.Selector.Src.Addr(), dst: p.Selector.Dst.Addr(), proto: protoUDP, sport: 1, dport: 2}
		}
		ref := &linearSPD{byKey: map[ipsec.PolicyKey]*ipsec.Policy{}}
		d := newSPDDataplane(b)
		for i := range pols {
			ref.add(&pols[i])
			if err := d.AddPolicy(context.Background(), pols[i]); err != nil {
				b.Fatal(err)
			}
		}
		ref.add(&bypass)
		if err := d.AddPolicy(context.Background(), bypass); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("add/linear/n=%d", n), func(b *testing.B) {
			for b.Loop() {
				ref.add(&extra)
				ref.del(extra.Key())
			}
		})
		b.Run(fmt.Sprintf("add/index/n=%d", n), func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				if err := d.AddPolicy(ctx, extra); err != nil {
					b.Fatal(err)
				}
				if err := d.DeletePolicy(ctx, extra.Key()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("lookup/linear/n=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				if ref.lookup(&flows[i%len(flows)]) == nil {
					b.Fatal("no match")
				}
				i++
			}
		})
		b.Run(fmt.Sprintf("lookup/index/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if d.spd.out.lookup(&flows[i%len(flows)]) == nil {
					b.Fatal("no match")
				}
				i++
			}
		})
	}
}

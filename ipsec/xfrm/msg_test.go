package xfrm

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// testdata/acquire.bin was captured from a 6.18 kernel: an out policy
// 198.51.100.0/24 -> 203.0.113.0/24 udp dport 4096-8191 (ID 5) with an ESP
// tunnel template 192.0.2.1 -> 192.0.2.2 reqid 3, triggered by
// 198.51.100.1:1234 -> 203.0.113.7:5000.
func TestDecodeAcquireCaptured(t *testing.T) {
	b, err := os.ReadFile("testdata/acquire.bin")
	if err != nil {
		t.Fatal(err)
	}
	a, err := decodeAcquire(b)
	if err != nil {
		t.Fatal(err)
	}
	if a.peer != netip.MustParseAddr("192.0.2.2") || a.local != netip.MustParseAddr("192.0.2.1") || a.proto != alg.ESP {
		t.Errorf("template: peer %v local %v proto %v", a.peer, a.local, a.proto)
	}
	pk, ok := policyKey(a.policyIndex)
	if !ok || pk != (ipsec.PolicyKey{Dir: ipsec.DirOut, ID: 5}) || a.policyDir != 1 {
		t.Errorf("policy: index 0x%x -> %v %v, dir %d", a.policyIndex, pk, ok, a.policyDir)
	}
	trig, err := a.trigger.ipsecSelector()
	if err != nil {
		t.Fatal(err)
	}
	want := ipsec.Selector{
		Src: netip.MustParsePrefix("198.51.100.1/32"), Dst: netip.MustParsePrefix("203.0.113.7/32"), Proto: 17,
		SrcPort: ipsec.PortRange{Lo: 1234, Hi: 1234}, DstPort: ipsec.PortRange{Lo: 5000, Hi: 5000},
	}
	if diff := cmp.Diff(want, trig, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("trigger (-want +got):\n%s", diff)
	}
	if a.seq == 0 {
		t.Error("acquire seq is 0")
	}
}

// testdata/expire-larval.bin: the hard expiry of an SPI reserved with
// AllocSPI(esp, 192.0.2.2 -> 192.0.2.1) once xfrm_acq_expires (1 s) passed.
func TestDecodeExpireCaptured(t *testing.T) {
	b, err := os.ReadFile("testdata/expire-larval.bin")
	if err != nil {
		t.Fatal(err)
	}
	e, err := decodeExpire(b)
	if err != nil {
		t.Fatal(err)
	}
	want := expire{
		key:   ipsec.SAKey{Dst: netip.MustParseAddr("192.0.2.1"), Proto: alg.ESP, SPI: 0xe8b8e415},
		src:   netip.MustParseAddr("192.0.2.2"),
		reqid: DefaultReqIDBase,
		hard:  true,
	}
	if e != want {
		t.Errorf("got %+v, want %+v", e, want)
	}
}

func TestDecodeShort(t *testing.T) {
	b, _ := os.ReadFile("testdata/acquire.bin")
	for _, n := range []int{0, 1, sizeofAcquire - 1} {
		if _, err := decodeAcquire(b[:n]); err == nil {
			t.Errorf("acquire of %d bytes decoded", n)
		}
	}
	e, _ := os.ReadFile("testdata/expire-larval.bin")
	if _, err := decodeExpire(e[:sizeofExpire-1]); err == nil {
		t.Error("short expire decoded")
	}
	bad := append([]byte(nil), e...)
	binary.NativeEndian.PutUint16(bad[212:], 99) // unknown family
	if _, err := decodeExpire(bad); err == nil {
		t.Error("expire with family 99 decoded")
	}
}

func TestHandleKernelMsgFiltersForeign(t *testing.T) {
	d := &Dataplane{cfg: config{reqIDBase: DefaultReqIDBase}, events: testQueue(t, 4), sas: map[ipsec.SAKey]saRecord{}, larval: map[ipsec.SAKey]bool{}}
	acq, _ := os.ReadFile("testdata/acquire.bin")
	exp, _ := os.ReadFile("testdata/expire-larval.bin")
	d.handleKernelMsg(msgAcquire, acq)
	d.handleKernelMsg(msgExpire, exp)
	foreign := append([]byte(nil), acq...)
	binary.NativeEndian.PutUint32(foreign[sizeofID+sizeofAddress+sizeofSelector+sizeofSelector+sizeofLftCfg+sizeofLftCur+4:], 0x29) // kernel-made index
	d.handleKernelMsg(msgAcquire, foreign)
	fexp := append([]byte(nil), exp...)
	binary.NativeEndian.PutUint32(fexp[208:], 1) // reqid 1: not ours
	d.handleKernelMsg(msgExpire, fexp)
	evs := drain(d.events)
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2 (foreign acquire and expire ignored)", len(evs))
	}
	if e := evs[0]; e.Kind != ipsec.EventAcquire || e.Policy.ID != 5 || e.SA.Dst != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("first event %+v", e)
	}
	if e := evs[1]; e.Kind != ipsec.EventHardExpire || e.SA.SPI != 0xe8b8e415 {
		t.Errorf("second event %+v", e)
	}
}

// emit never blocks: with nobody reading, repeated acquires for one policy
// coalesce (none is lost), and invalid-SPI events over the bound are
// dropped and counted.
func TestEmitNeverBlocks(t *testing.T) {
	d := &Dataplane{events: testQueue(t, 2)}
	for i := 0; i < 5; i++ {
		d.emit(ipsec.Event{Kind: ipsec.EventAcquire})
		d.emit(ipsec.Event{Kind: ipsec.EventInvalidSPI, SA: ipsec.SAKey{SPI: uint32(0x100 + i)}})
	}
	evs := drain(d.events)
	acquires := 0
	for _, e := range evs {
		if e.Kind == ipsec.EventAcquire {
			acquires++
		}
	}
	if s := d.Stats(); acquires == 0 || acquires > 2 || len(evs)-acquires != 2 || s.EventsDropped != 3 {
		t.Errorf("%d acquires, %d invalid SPIs, dropped %d; want 1 (or 2, one taken before the others came), 2 and 3",
			acquires, len(evs)-acquires, s.EventsDropped)
	}
}

// testQueue is an event queue closed at the end of the test.
func testQueue(t testing.TB, maxInvalid int) *ipsec.EventQueue {
	q := ipsec.NewEventQueue(maxInvalid)
	t.Cleanup(q.Close)
	return q
}

// drain reads the events queued so far (a short bounded wait for each).
func drain(q *ipsec.EventQueue) []ipsec.Event {
	var out []ipsec.Event
	for {
		select {
		case ev := <-q.Events():
			out = append(out, ev)
		case <-time.After(200 * time.Millisecond):
			return out
		}
	}
}

func TestSplitNetlink(t *testing.T) {
	var buf []byte
	for _, p := range [][]byte{{1, 2, 3}, {4, 5, 6, 7, 8}} {
		m := make([]byte, 16+len(p), 16+len(p)+3)
		binary.NativeEndian.PutUint32(m, uint32(len(m)))
		binary.NativeEndian.PutUint16(m[4:], 0x17)
		copy(m[16:], p)
		for len(m)%4 != 0 {
			m = append(m, 0)
		}
		buf = append(buf, m...)
	}
	var got [][]byte
	if err := splitNetlink(buf, func(typ uint16, p []byte) { got = append(got, p) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[0]) != 3 || len(got[1]) != 5 || got[1][4] != 8 {
		t.Errorf("got %v", got)
	}
	binary.NativeEndian.PutUint32(buf, 1000)
	if err := splitNetlink(buf, func(uint16, []byte) {}); err == nil {
		t.Error("overlong length accepted")
	}
}

func FuzzDecodeKernelMsg(f *testing.F) {
	for _, name := range []string{"testdata/acquire.bin", "testdata/expire-larval.bin"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, err := decodeAcquire(b); err == nil {
			_, _ = a.trigger.ipsecSelector()
			policyKey(a.policyIndex)
		}
		_, _ = decodeExpire(b)
		_ = splitNetlink(b, func(uint16, []byte) {})
	})
}

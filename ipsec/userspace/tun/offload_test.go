package tun

import (
	"encoding/binary"
	"testing"
)

// tcpSuper builds a TCP/IPv4 packet with n payload bytes and valid
// checksums.
func tcpSuper(n int, flags byte) []byte {
	p := make([]byte, 40+n)
	p[0], p[9], p[8] = 0x45, 6, 64
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 100)
	copy(p[12:], []byte{198, 51, 100, 10, 203, 0, 113, 10})
	binary.BigEndian.PutUint16(p[20:], 40000)
	binary.BigEndian.PutUint16(p[22:], 5201)
	binary.BigEndian.PutUint32(p[24:], 1000)
	p[32] = 5 << 4
	p[33] = flags
	for i := range n {
		p[40+i] = byte(i)
	}
	binary.BigEndian.PutUint16(p[10:], ^fold(sum(p[:20], 0)))
	ps := uint64(binary.BigEndian.Uint32(p[12:])) + uint64(binary.BigEndian.Uint32(p[16:])) + 6 + uint64(len(p)-20)
	binary.BigEndian.PutUint16(p[36:], ^fold(sum(p[20:], ps)))
	return p
}

func validChecksums(t *testing.T, p []byte) {
	t.Helper()
	if fold(sum(p[:20], 0)) != 0xffff {
		t.Fatal("bad IPv4 checksum")
	}
	ps := uint64(binary.BigEndian.Uint32(p[12:])) + uint64(binary.BigEndian.Uint32(p[16:])) + 6 + uint64(len(p)-20)
	if fold(sum(p[20:], ps)) != 0xffff {
		t.Fatal("bad TCP checksum")
	}
}

func TestSplit(t *testing.T) {
	o := newOffload()
	super := tcpSuper(3000, tcpFlagPSH|tcpFlagFIN|tcpFlagCWR|0x10)
	segs := o.split(super, 1360)
	if len(segs) != 3 {
		t.Fatalf("%d segments, want 3", len(segs))
	}
	var payload []byte
	for i, s := range segs {
		validChecksums(t, s)
		if got := binary.BigEndian.Uint32(s[24:]); got != 1000+uint32(i*1360) {
			t.Fatalf("segment %d seq %d", i, got)
		}
		if got := binary.BigEndian.Uint16(s[4:]); got != 100+uint16(i) {
			t.Fatalf("segment %d id %d", i, got)
		}
		f := s[33]
		last := i == len(segs)-1
		if (f&tcpFlagFIN != 0) != last || (f&tcpFlagPSH != 0) != last || (f&tcpFlagCWR != 0) != (i == 0) || f&0x10 == 0 {
			t.Fatalf("segment %d flags %#x", i, f)
		}
		if int(binary.BigEndian.Uint16(s[2:])) != len(s) {
			t.Fatalf("segment %d length", i)
		}
		payload = append(payload, s[40:]...)
	}
	if len(payload) != 3000 || payload[2999] != byte(2999%256) {
		t.Fatal("payload not preserved")
	}
	if a := testing.AllocsPerRun(100, func() { o.segs = o.split(super, 1360) }); a != 0 {
		t.Fatalf("%.1f allocations per split", a)
	}
}

func TestSumMatchesNaive(t *testing.T) {
	for n := 0; n < 70; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*37 + 11)
		}
		var naive uint64
		for i := 0; i+1 < n; i += 2 {
			naive += uint64(b[i])<<8 | uint64(b[i+1])
		}
		if n%2 == 1 {
			naive += uint64(b[n-1]) << 8
		}
		if fold(sum(b, 0)) != fold(naive) {
			t.Fatalf("n=%d", n)
		}
	}
}

// TestGROPlan checks which segments WriteBatch would merge.
func TestGROPlan(t *testing.T) {
	o := newOffload()
	segs := o.split(tcpSuper(5000, 0x10|tcpFlagPSH), 1000) // 5 segments, PSH on the last
	for _, s := range segs {
		if groCandidate(s) != len(s)-40 {
			t.Fatalf("segment not a candidate")
		}
	}
	total := len(segs[0])
	for i := 1; i < len(segs); i++ {
		if !groFollows(segs[i-1], segs[i], 1000, total) {
			t.Fatalf("segment %d does not follow", i)
		}
		total += len(segs[i]) - 40
	}
	// Out of order, pushed, corrupted and SYN segments break a merge.
	if groFollows(segs[0], segs[2], 1000, 1040) {
		t.Fatal("gap merged")
	}
	if groFollows(segs[4], segs[0], 1000, 1040) {
		t.Fatal("merged after a PSH")
	}
	bad := append([]byte(nil), segs[1]...)
	bad[50] ^= 1
	if groCandidate(bad) != 0 || groFollows(segs[0], bad, 1000, 1040) {
		t.Fatal("segment with a bad checksum merged")
	}
	syn := append([]byte(nil), segs[1]...)
	syn[33] |= 0x02
	if groCandidate(syn) != 0 {
		t.Fatal("SYN is a candidate")
	}
}

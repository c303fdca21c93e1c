package ah

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"testing"

	"github.com/spiagent/spiagent/alg"
)

var integs = []alg.Integrity{
	alg.HMACMD5, alg.HMACSHA1, alg.HMACSHA256,
	alg.HMACSHA384, alg.HMACSHA512,
}

func key(n int, fill byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = fill + byte(i)
	}
	return k
}

// packet builds an IPv4 packet 198.51.100.1 -> 203.0.113.1, protocol AH,
// with room for an AH header of hl bytes and the payload after it.
func packet(hl int, payload []byte) []byte {
	p := make([]byte, 20+hl+len(payload))
	p[0] = 0x45
	p[1] = 0xb8 // DSCP EF
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 0x1234)
	p[6] = 0x40 // DF
	p[8] = 64
	p[9] = Protocol
	copy(p[12:], []byte{198, 51, 100, 1, 203, 0, 113, 1})
	binary.BigEndian.PutUint16(p[10:], 0xbeef)
	copy(p[20+hl:], payload)
	return p
}

// TestICVByHand checks the ICV against an HMAC-SHA1 computed here from
// RFC 4302 §3.3.3.1: the header with TOS, flags/offset, TTL and checksum
// zeroed, the AH header with its ICV field zeroed, then the payload.
func TestICVByHand(t *testing.T) {
	k := key(20, 0x0b)
	sa, err := New(0x1001, alg.HMACSHA1, k)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("inner packet bytes")
	p := packet(sa.HeaderLen(), payload)
	if err := sa.Seal(p, 42, 4); err != nil {
		t.Fatal(err)
	}
	want := []byte{4, 4, 0, 0, 0, 0, 0x10, 0x01, 0, 0, 0, 42}
	if !bytes.Equal(p[20:32], want) {
		t.Fatalf("AH header %x, want %x", p[20:32], want)
	}
	m := hmac.New(sha1.New, k)
	h := bytes.Clone(p[:20])
	h[1], h[6], h[7], h[8], h[10], h[11] = 0, 0, 0, 0, 0, 0
	m.Write(h)
	m.Write(want)
	m.Write(make([]byte, 12))
	m.Write(payload)
	if icv := m.Sum(nil)[:12]; !bytes.Equal(p[32:44], icv) {
		t.Fatalf("ICV %x, want %x", p[32:44], icv)
	}
}

func TestRoundTripAndTamper(t *testing.T) {
	for _, ig := range integs {
		t.Run(ig.String(), func(t *testing.T) {
			sa, err := New(0x2000, ig, key(ig.KeyLen(), 5))
			if err != nil {
				t.Fatal(err)
			}
			hl := sa.HeaderLen()
			if (hl)%4 != 0 {
				t.Fatalf("AH header %d bytes, not 32-bit aligned", hl)
			}
			payload := key(100, 9)
			p := packet(hl, payload)
			if err := sa.Seal(p, 7, 50); err != nil {
				t.Fatal(err)
			}
			nh, off, err := sa.Open(bytes.Clone(p))
			if err != nil || nh != 50 || !bytes.Equal(p[off:], payload) {
				t.Fatalf("Open: nh %d off %d err %v", nh, off, err)
			}
			// Mutable fields may change in transit.
			m := bytes.Clone(p)
			m[1], m[6], m[7], m[8], m[10] = 0, 0x20, 0x01, 3, 0
			if _, _, err := sa.Open(m); err != nil {
				t.Fatalf("mutable fields changed: %v", err)
			}
			// Anything else may not.
			for _, i := range []int{2, 4, 9, 12, 19, 24, 28, 20 + hl - 1, len(p) - 1} {
				bad := bytes.Clone(p)
				bad[i] ^= 0x01
				if _, _, err := sa.Open(bad); err == nil {
					t.Fatalf("byte %d flipped, packet accepted", i)
				}
			}
		})
	}
}

func TestGarbage(t *testing.T) {
	sa, _ := New(1, alg.HMACSHA1, key(20, 1))
	for n := 0; n < 60; n++ {
		if _, _, err := sa.Open(key(n, 0x45)); err == nil {
			t.Fatalf("len %d garbage accepted", n)
		}
	}
	if err := sa.Seal(make([]byte, 10), 1, 4); err == nil {
		t.Fatal("Seal on short buffer succeeded")
	}
}

func TestAllocs(t *testing.T) {
	sa, _ := New(1, alg.HMACSHA256, key(32, 1))
	p := packet(sa.HeaderLen(), make([]byte, 1400))
	if a := testing.AllocsPerRun(100, func() {
		sa.Seal(p, 1, 4)
		if _, _, err := sa.Open(p); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("%.1f allocations per Seal+Open", a)
	}
}

// FuzzAHDecap: Open never panics on arbitrary bytes, and Seal then Open
// round-trips any payload.
func FuzzAHDecap(f *testing.F) {
	sa, _ := New(0x2000, alg.HMACSHA1, key(20, 5))
	seed := packet(sa.HeaderLen(), []byte("seed"))
	sa.Seal(seed, 1, 4)
	f.Add(seed)
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, b []byte) {
		sa.Open(bytes.Clone(b))
		p := packet(sa.HeaderLen(), b)
		if err := sa.Seal(p, 3, 6); err != nil {
			t.Fatal(err)
		}
		nh, off, err := sa.Open(p)
		if err != nil || nh != 6 || !bytes.Equal(p[off:], b) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

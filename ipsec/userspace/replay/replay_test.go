package replay

import (
	"math/rand/v2"
	"testing"
)

func TestWindowEdges(t *testing.T) {
	type step struct {
		seq  uint32
		want bool
	}
	tests := []struct {
		desc  string
		size  uint32
		steps []step
	}{
		{"zero is never valid", 64, []step{{0, false}, {1, true}, {0, false}}},
		{"in order then duplicate", 64, []step{{1, true}, {2, true}, {3, true}, {2, false}, {3, false}, {4, true}}},
		{"out of order inside window", 64, []step{{10, true}, {5, true}, {7, true}, {5, false}, {9, true}, {10, false}}},
		{"left edge of a 64 window", 64, []step{{100, true}, {37, true}, {36, false}, {37, false}}},
		{"big jump clears old bits", 64, []step{{1, true}, {2, true}, {1000, true}, {1000 - 63, true}, {2, false}, {999, true}, {999, false}}},
		{"jump across whole ring", 64, []step{{5, true}, {5 + 64*ringBlocks*3, true}, {5 + 64*ringBlocks*3 - 1, true}, {5 + 64*ringBlocks*3 - 64, false}}},
		{"1024 window keeps old ones", 1024, []step{{2000, true}, {977, true}, {976, false}, {1500, true}, {1500, false}}},
		{"size clamped up to 64", 1, []step{{100, true}, {40, true}, {36, false}}},
		{"max uint32", 64, []step{{0xffffffff, true}, {0xffffffff, false}, {0xfffffffe, true}}},
		{"bit reuse after slide", 64, []step{{64, true}, {64 + 64*ringBlocks, true}, {64 + 64*ringBlocks, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			w := New(tc.size)
			for i, s := range tc.steps {
				if got := w.Accept(s.seq); got != s.want {
					t.Fatalf("step %d: Accept(%d) = %v, want %v", i, s.seq, got, s.want)
				}
			}
		})
	}
}

func TestCheckDoesNotUpdate(t *testing.T) {
	w := New(64)
	if !w.Check(5) || !w.Check(5) {
		t.Fatal("Check changed the window")
	}
	if w.Last() != 0 {
		t.Fatalf("Last = %d after Check only", w.Last())
	}
}

// TestAgainstModel compares the bitmap with a map-based model of the RFC
// 4303 Appendix A window on random sequences.
func TestAgainstModel(t *testing.T) {
	for _, size := range []uint32{64, 100, 1024, MaxSize} {
		w := New(size)
		seen := map[uint32]bool{}
		var last uint32
		r := rand.New(rand.NewPCG(1, uint64(size)))
		base := uint32(1)
		for i := 0; i < 200000; i++ {
			base += uint32(r.IntN(8))
			seq := base + uint32(r.IntN(int(size)*2)) - uint32(min(int(base)-1, int(size)*2-1)/2)
			if r.IntN(50) == 0 {
				seq = base + uint32(r.IntN(5000))
			}
			want := seq != 0 && !seen[seq] && (seq > last || last-seq < w.Size())
			got := w.Accept(seq)
			if got != want {
				t.Fatalf("size %d step %d: Accept(%d) = %v, want %v (last %d)", size, i, seq, got, want, last)
			}
			if got {
				seen[seq] = true
				if seq > last {
					last = seq
				}
			}
		}
	}
}

func BenchmarkAcceptInOrder(b *testing.B) {
	w := New(1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w.Accept(uint32(i + 1))
	}
}

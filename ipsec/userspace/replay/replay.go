// Package replay is the ESP/AH anti-replay window of RFC 4303 §3.4.3 and
// RFC 4302 §3.4.3: a sliding bitmap of the sequence numbers received under
// one SA, kept as a ring of 64-bit blocks (the RFC 6479 layout) so that
// sliding never shifts the whole bitmap.
//
// It knows nothing of packets or SAs; the caller checks a sequence number
// before verifying the ICV (cheap rejection) and updates the window only
// after the ICV verified (RFC 4303 §3.4.3: the window must not move on a
// forged packet). No ESN: sequence numbers are 32 bits.
package replay

// Implementation constants.
const (
	blockBits  = 64
	ringBlocks = 32 // 2048 bits of ring, so windows up to MaxSize fit
	// MaxSize is the largest window the ring holds: one block is kept
	// free so that the lowest block of the window can be partly stale.
	MaxSize = (ringBlocks - 1) * blockBits
	// MinSize is the minimum window RFC 4303 §3.4.3 asks for (32) rounded
	// up to what this package enforces.
	MinSize = 64
)

// Window is one SA's anti-replay state. The zero value is a window of
// MinSize packets. It is not safe for concurrent use.
type Window struct {
	size   uint64
	last   uint64 // highest sequence number accepted; 0 before any
	bitmap [ringBlocks]uint64
}

// New returns a window of n packets, clamped to [MinSize, MaxSize].
func New(n uint32) *Window {
	w := &Window{}
	w.Reset(n)
	return w
}

// Reset empties the window and sets its size (clamped).
func (w *Window) Reset(n uint32) {
	*w = Window{size: clamp(uint64(n))}
}

func clamp(n uint64) uint64 {
	if n < MinSize {
		return MinSize
	}
	if n > MaxSize {
		return MaxSize
	}
	return n
}

// Size is the window size in packets.
func (w *Window) Size() uint32 {
	if w.size == 0 {
		return MinSize
	}
	return uint32(w.size)
}

// Check reports whether seq would be accepted: it is not zero (RFC 4303
// §3.3.3: the first packet is 1), not left of the window, and not seen.
// It does not change the window.
func (w *Window) Check(seq uint32) bool {
	s := uint64(seq)
	if s == 0 {
		return false
	}
	if s > w.last {
		return true
	}
	if w.last-s >= w.size64() {
		return false
	}
	blk := (s / blockBits) % ringBlocks
	return w.bitmap[blk]&(1<<(s%blockBits)) == 0
}

// size64 is Size as uint64.
func (w *Window) size64() uint64 {
	if w.size == 0 {
		return MinSize
	}
	return w.size
}

// Accept checks seq and, if acceptable, records it, sliding the window when
// seq is new on the right. It reports whether seq was accepted.
func (w *Window) Accept(seq uint32) bool {
	if !w.Check(seq) {
		return false
	}
	s := uint64(seq)
	if s > w.last {
		cur := w.last / blockBits
		idx := s / blockBits
		diff := idx - cur
		if diff > ringBlocks {
			diff = ringBlocks
		}
		for i := uint64(1); i <= diff; i++ {
			w.bitmap[(cur+i)%ringBlocks] = 0
		}
		w.last = s
	}
	w.bitmap[(s/blockBits)%ringBlocks] |= 1 << (s % blockBits)
	return true
}

// Last is the highest sequence number accepted so far.
func (w *Window) Last() uint32 { return uint32(w.last) }

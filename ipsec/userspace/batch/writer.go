package batch

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Writer sends datagrams in batches with sendmmsg(2) through a
// syscall.RawConn, each to its own IPv4 address and port. Not safe for
// concurrent use.
type Writer struct {
	rc    syscall.RawConn
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
	n     int // messages queued
	off   int // first message not yet sent
	sent  int
	err   syscall.Errno
	fn    func(fd uintptr) bool
}

// NewWriter prepares a writer of up to n datagrams per batch.
func NewWriter(rc syscall.RawConn, n int) *Writer {
	w := &Writer{rc: rc, msgs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n), names: make([]unix.RawSockaddrInet4, n)}
	for i := range w.msgs {
		w.msgs[i].Hdr.Iov = &w.iovs[i]
		w.msgs[i].Hdr.SetIovlen(1)
		w.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&w.names[i]))
		w.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		w.names[i].Family = unix.AF_INET
	}
	w.fn = w.try
	return w
}

// Cap is how many datagrams a batch holds.
func (w *Writer) Cap() int { return len(w.msgs) }

// Len is how many datagrams are queued.
func (w *Writer) Len() int { return w.n }

// Add queues b (which must stay unchanged until Flush) for dst. It
// reports false when the batch is full.
func (w *Writer) Add(b []byte, dst netip.AddrPort) bool {
	if w.n == len(w.msgs) || len(b) == 0 {
		return false
	}
	w.iovs[w.n].Base = &b[0]
	w.iovs[w.n].SetLen(len(b))
	sa := &w.names[w.n]
	sa.Addr = dst.Addr().As4()
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(dst.Port()>>8), byte(dst.Port())
	w.n++
	return true
}

func (w *Writer) try(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.msgs[w.off])), uintptr(w.n-w.off), unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	w.sent, w.err = int(n), e
	return true
}

// Flush sends the queued datagrams and empties the batch. It returns how
// many were sent and the last error; a datagram the kernel refuses is
// dropped and the rest still go.
func (w *Writer) Flush() (int, error) {
	total := 0
	var err error
	for w.off = 0; w.off < w.n; {
		if e := w.rc.Write(w.fn); e != nil {
			err = e
			break
		}
		if w.err != 0 { // the datagram at off failed: drop it, go on
			err = w.err
			w.off++
			continue
		}
		w.off += w.sent
		total += w.sent
	}
	for i := range w.n {
		w.iovs[i].Base = nil
	}
	w.n, w.off = 0, 0
	return total, err
}

// Package batch reads datagrams in batches with recvmmsg(2) through a
// syscall.RawConn, so it cooperates with Go's netpoller, and allocates
// nothing per batch. It serves the dataplane's raw ESP/AH sockets and its
// own ESP-in-UDP socket; it knows nothing of IPsec.
package batch

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reader reads up to n datagrams per call. Not safe for concurrent use.
type Reader struct {
	rc       syscall.RawConn
	headroom int
	msgs     []unix.Mmsghdr
	iovs     []unix.Iovec
	names    []unix.RawSockaddrInet4
	// Bufs are the receive buffers; datagram i is
	// Bufs[i][Headroom : Headroom+Size(i)], with Headroom free bytes in
	// front of it for the caller.
	Bufs [][]byte
	n    int
	err  syscall.Errno
	fn   func(fd uintptr) bool
}

// New prepares a reader of n datagrams of up to size bytes each, with
// headroom bytes reserved before each.
func New(rc syscall.RawConn, n, size, headroom int) *Reader {
	r := &Reader{
		rc: rc, headroom: headroom,
		msgs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet4, n), Bufs: make([][]byte, n),
	}
	for i := range r.msgs {
		r.Bufs[i] = make([]byte, headroom+size)
		r.iovs[i].Base = &r.Bufs[i][headroom]
		r.iovs[i].SetLen(size)
		r.msgs[i].Hdr.Iov = &r.iovs[i]
		r.msgs[i].Hdr.SetIovlen(1)
		r.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
	r.fn = r.try
	return r
}

func (r *Reader) try(fd uintptr) bool {
	for i := range r.msgs {
		r.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		r.msgs[i].Len = 0
	}
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(len(r.msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	r.n, r.err = int(n), e
	return true
}

// Read waits for at least one datagram and returns how many it read.
func (r *Reader) Read() (int, error) {
	if err := r.rc.Read(r.fn); err != nil {
		return 0, err
	}
	if r.err != 0 {
		return 0, r.err
	}
	return r.n, nil
}

// Headroom is the free space in front of each datagram.
func (r *Reader) Headroom() int { return r.headroom }

// Size is the length of datagram i of the last Read.
func (r *Reader) Size(i int) int { return int(r.msgs[i].Len) }

// Packet is datagram i of the last Read.
func (r *Reader) Packet(i int) []byte {
	return r.Bufs[i][r.headroom : r.headroom+int(r.msgs[i].Len)]
}

// Src is the IPv4 source address and port of datagram i.
func (r *Reader) Src(i int) netip.AddrPort {
	sa := &r.names[i]
	p := (*[2]byte)(unsafe.Pointer(&sa.Port)) // network byte order
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
}

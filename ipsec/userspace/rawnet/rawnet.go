// Package rawnet carries the userspace dataplane's ciphertext over raw
// IPv4 sockets: one per IPsec protocol to receive (ESP 50, AH 51: the
// kernel hands every such packet to them, reassembled, header included,
// and sends no ICMP protocol-unreachable when a raw socket took it), and
// one IPPROTO_RAW socket to send packets whose outer header the dataplane
// built (IP_HDRINCL). It implements the dataplane's Link. Sockets belong
// to the network namespace of the thread that calls Open.
package rawnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/ipsec/ipv4hdr"
	"github.com/spiagent/spiagent/ipsec/userspace/batch"
)

// Conn is the raw-socket link.
type Conn struct {
	sendFile *os.File
	sendRC   syscall.RawConn

	mu     sync.Mutex // guards the send state below
	sa     unix.SockaddrInet4
	one    []byte
	oneErr error
	oneFn  func(fd uintptr) bool
	w      *batch.Writer

	recv   []*os.File
	wg     sync.WaitGroup
	closed atomic.Bool
}

// BatchSize is how many packets one recvmmsg(2) reads at most.
const BatchSize = 32

// Open opens the sockets and starts one reader per protocol; handler gets
// the IPv4 packets of each receive batch (it may modify them, and must not
// keep them after it returns).
func Open(handler func(pkts [][]byte)) (*Conn, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("rawnet: send socket: %w", err)
	}
	c := &Conn{sendFile: os.NewFile(uintptr(s), "raw-ip-send")}
	if c.sendRC, err = c.sendFile.SyscallConn(); err != nil {
		c.sendFile.Close()
		return nil, fmt.Errorf("rawnet: send socket: %w", err)
	}
	c.w = batch.NewWriter(c.sendRC, BatchSize*2)
	c.oneFn = func(fd uintptr) bool {
		err := unix.Sendto(int(fd), c.one, unix.MSG_DONTWAIT, &c.sa)
		if err == unix.EAGAIN {
			return false
		}
		c.oneErr = err
		return true
	}
	for _, proto := range []int{50, 51} {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("rawnet: protocol %d socket: %w", proto, err)
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		f := os.NewFile(uintptr(fd), fmt.Sprintf("raw-ip-%d", proto))
		c.recv = append(c.recv, f)
		c.wg.Add(1)
		go c.read(f, handler)
	}
	return c, nil
}

func (c *Conn) read(f *os.File, handler func([][]byte)) {
	defer c.wg.Done()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	r := batch.New(rc, BatchSize, 1<<16, 0)
	pkts := make([][]byte, BatchSize)
	for {
		n, err := r.Read()
		if err != nil {
			if c.closed.Load() || errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		for i := range n {
			pkts[i] = r.Packet(i)
		}
		handler(pkts[:n])
	}
}

// Send transmits one IPv4 packet with its header (the kernel fills in the
// checksum and, when zero, the identification). It waits while the socket
// buffer is full.
func (c *Conn) Send(pkt []byte) error {
	if len(pkt) < ipv4hdr.MinLen {
		return errors.New("rawnet: short packet")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sa.Addr = ipv4hdr.Dst(pkt).As4()
	c.one = pkt
	err := c.sendRC.Write(c.oneFn)
	c.one = nil
	if err == nil {
		err = c.oneErr
	}
	if err != nil {
		return fmt.Errorf("rawnet: send: %w", err)
	}
	return nil
}

// SendBatch transmits IPv4 packets with sendmmsg(2) and returns how many
// went out.
func (c *Conn) SendBatch(pkts [][]byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sent := 0
	var last error
	for _, p := range pkts {
		if len(p) < ipv4hdr.MinLen {
			last = errors.New("rawnet: short packet")
			continue
		}
		if !c.w.Add(p, netip.AddrPortFrom(ipv4hdr.Dst(p), 0)) {
			n, err := c.w.Flush()
			sent += n
			if err != nil {
				last = err
			}
			c.w.Add(p, netip.AddrPortFrom(ipv4hdr.Dst(p), 0))
		}
	}
	n, err := c.w.Flush()
	sent += n
	if err != nil {
		last = err
	}
	if last != nil {
		return sent, fmt.Errorf("rawnet: send: %w", last)
	}
	return sent, nil
}

// Close closes the sockets and waits for the readers.
func (c *Conn) Close() error {
	c.closed.Store(true)
	for _, f := range c.recv {
		f.Close()
	}
	c.wg.Wait()
	return c.sendFile.Close()
}

package userspace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/spiagent/spiagent/ipsec/userspace/batch"
	"github.com/spiagent/spiagent/ipsec/userspace/rawnet"
)

// UDPListener is the dataplane's own ESP-in-UDP socket, for standalone use
// when no IKE engine owns port 4500. Datagrams with the non-ESP marker
// (IKE) are dropped and counted as not IPsec.
type UDPListener struct {
	conn   *net.UDPConn
	local  netip.AddrPort
	wg     sync.WaitGroup
	closed atomic.Bool

	mu sync.Mutex // guards w
	w  *batch.Writer
}

// ListenESPInUDP binds addr (normally port 4500 on a specific address),
// feeds what arrives to HandleESPInUDP and becomes the dataplane's
// UDPSender. The socket lives in the calling thread's network namespace.
func (d *Dataplane) ListenESPInUDP(addr netip.AddrPort) (*UDPListener, error) {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("userspace: ESP-in-UDP socket: %w", err)
	}
	c.SetReadBuffer(4 << 20)
	l := &UDPListener{conn: c, local: c.LocalAddr().(*net.UDPAddr).AddrPort()}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("userspace: ESP-in-UDP socket: %w", err)
	}
	l.w = batch.NewWriter(rc, sendBatchSize)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		r := batch.New(rc, rawnet.BatchSize, maxPacket, ipv4MinLen)
		db := &deliverBatch{pkts: make([][]byte, 0, rawnet.BatchSize)}
		for {
			n, err := r.Read()
			if err != nil {
				if l.closed.Load() || errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			for i := range n {
				d.handleESPInUDPInPlace(r.Bufs[i][:ipv4MinLen+r.Size(i)], r.Src(i), l.local, db)
			}
			d.flush(db)
		}
	}()
	d.SetUDPSender(l)
	return l, nil
}

// SendESPInUDP sends b to dst from the bound address (src is ignored: the
// socket is bound).
func (l *UDPListener) SendESPInUDP(b []byte, src, dst netip.AddrPort) error {
	_, err := l.conn.WriteToUDPAddrPort(b, dst)
	return err
}

// SendESPInUDPBatch sends pkts[i] to dsts[i] with sendmmsg(2) and returns
// how many went out.
func (l *UDPListener) SendESPInUDPBatch(pkts [][]byte, dsts []netip.AddrPort) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sent := 0
	var last error
	for i, p := range pkts {
		if !l.w.Add(p, dsts[i]) {
			n, err := l.w.Flush()
			sent, last = sent+n, cmpErr(err, last)
			l.w.Add(p, dsts[i])
		}
	}
	n, err := l.w.Flush()
	return sent + n, cmpErr(err, last)
}

func cmpErr(err, last error) error {
	if err != nil {
		return err
	}
	return last
}

// Close closes the socket.
func (l *UDPListener) Close() error {
	l.closed.Store(true)
	err := l.conn.Close()
	l.wg.Wait()
	return err
}

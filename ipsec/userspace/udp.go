package userspace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// UDPListener is the dataplane's own ESP-in-UDP socket, for standalone use
// when no IKE engine owns port 4500. Datagrams with the non-ESP marker
// (IKE) are dropped and counted as not IPsec.
type UDPListener struct {
	conn  *net.UDPConn
	local netip.AddrPort
	wg    sync.WaitGroup
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
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		buf := make([]byte, 1<<16)
		for {
			n, src, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			d.HandleESPInUDP(buf[:n], netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), l.local)
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

// Close closes the socket.
func (l *UDPListener) Close() error {
	err := l.conn.Close()
	l.wg.Wait()
	return err
}

package xfrm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec/ipv4hdr"
)

// A minimal nfnetlink_log client: bind one group, copy packets, read them.
const (
	nfnlSubsysULOG   = 4
	nfulnlMsgPacket  = 0
	nfulnlMsgConfig  = 1
	nfulaPayload     = 9
	nfulaCfgCmd      = 1
	nfulaCfgMode     = 2
	nfulaCfgQthresh  = 4
	nfulnlCfgCmdBind = 1
	nfulnlCfgCmdUnbd = 2
	nfulnlCopyPacket = 2
	nlaTypeMask      = 0x3fff

	nflogSnaplen = 64 // outer IPv4 header (20-60) + UDP (8) + SPI (4): enough for ESP, AH and ESP-in-UDP
)

// spiPacket is an unknown-SPI packet as logged by the kernel.
type spiPacket struct {
	src, dst netip.Addr
	sport    uint16 // ESP-in-UDP only
	proto    alg.Protocol
	spi      uint32
}

var errNotIPsec = errors.New("xfrm: not an ESP, AH or ESP-in-UDP packet")

// parseSPIPacket reads addresses and SPI from an IPv4 packet carrying ESP, AH
// or ESP-in-UDP (RFC 3948: a UDP payload whose first word is the non-zero
// SPI). It does not allocate.
func parseSPIPacket(b []byte) (spiPacket, error) {
	if len(b) < ipv4hdr.MinLen || ipv4hdr.Version(b) != 4 {
		return spiPacket{}, errNotIPsec
	}
	ihl := ipv4hdr.HeaderLen(b)
	if ihl < ipv4hdr.MinLen || len(b) < ihl {
		return spiPacket{}, errNotIPsec
	}
	if ipv4hdr.FragOff(b) != 0 { // not the first fragment
		return spiPacket{}, errNotIPsec
	}
	p := spiPacket{src: ipv4hdr.Src(b), dst: ipv4hdr.Dst(b)}
	l4 := b[ihl:]
	switch b[ipv4hdr.OffsetProto] {
	case unix.IPPROTO_ESP:
		if len(l4) < 4 {
			return spiPacket{}, errNotIPsec
		}
		p.proto, p.spi = alg.ESP, binary.BigEndian.Uint32(l4)
	case unix.IPPROTO_AH:
		if len(l4) < 8 {
			return spiPacket{}, errNotIPsec
		}
		p.proto, p.spi = alg.AH, binary.BigEndian.Uint32(l4[4:])
	case unix.IPPROTO_UDP:
		if len(l4) < 12 {
			return spiPacket{}, errNotIPsec
		}
		p.proto, p.sport, p.spi = alg.ESP, binary.BigEndian.Uint16(l4), binary.BigEndian.Uint32(l4[8:])
	default:
		return spiPacket{}, errNotIPsec
	}
	if p.spi == 0 { // IKE's non-ESP marker, or garbage
		return spiPacket{}, errNotIPsec
	}
	return p, nil
}

// nflogPayload returns the NFULA_PAYLOAD of one NFULNL_MSG_PACKET payload
// (after the nlmsghdr: nfgenmsg then attributes).
func nflogPayload(b []byte) ([]byte, bool) {
	if len(b) < 4 {
		return nil, false
	}
	for a := b[4:]; len(a) >= 4; {
		l := int(ne.Uint16(a[0:]))
		if l < 4 || l > len(a) {
			return nil, false
		}
		if ne.Uint16(a[2:])&nlaTypeMask == nfulaPayload {
			return a[4:l], true
		}
		l = (l + 3) &^ 3
		if l >= len(a) {
			return nil, false
		}
		a = a[l:]
	}
	return nil, false
}

// pktConn is a non-blocking datagram socket read by one goroutine: the
// NFLOG socket, or a raw IP socket (MethodRawSocket).
type pktConn struct {
	f   *os.File
	raw syscall.RawConn
}

// newPktConn wraps a socket fd; it closes fd on error.
func newPktConn(fd int, name string) (*pktConn, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	c := &pktConn{f: os.NewFile(uintptr(fd), name)}
	var err error
	if c.raw, err = c.f.SyscallConn(); err != nil {
		c.f.Close()
		return nil, err
	}
	return c, nil
}

func nflogAttr(typ uint16, data []byte) []byte {
	l := 4 + len(data)
	b := make([]byte, (l+3)&^3)
	ne.PutUint16(b[0:], uint16(l))
	ne.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}

// openNFLOG opens the socket in the calling thread's netns and binds group.
func openNFLOG(group uint16) (*pktConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("xfrm: nflog socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("xfrm: nflog bind: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	cfgs := [][]byte{
		nflogAttr(nfulaCfgCmd, []byte{nfulnlCfgCmdBind}),
		nflogAttr(nfulaCfgMode, []byte{0, 0, 0, nflogSnaplen, nfulnlCopyPacket, 0}), // be32 range, mode, pad
		nflogAttr(nfulaCfgQthresh, []byte{0, 0, 0, 1}),
	}
	for i, a := range cfgs {
		if err := nflogConfig(fd, uint32(i+1), group, a); err != nil {
			unix.Close(fd)
			if errors.Is(err, unix.EPERM) && i == 0 {
				return nil, fmt.Errorf("xfrm: NFLOG group %d is bound by another socket (another dataplane in this netns?): %w", group, err)
			}
			return nil, fmt.Errorf("xfrm: nflog configure group %d: %w", group, err)
		}
	}
	return newPktConn(fd, "nflog")
}

// nflogConfig sends one NFULNL_MSG_CONFIG and waits for its ack (blocking fd).
func nflogConfig(fd int, seq uint32, group uint16, attr []byte) error {
	msg := make([]byte, 20, 20+len(attr))
	ne.PutUint16(msg[4:], nfnlSubsysULOG<<8|nfulnlMsgConfig)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	ne.PutUint32(msg[8:], seq)
	msg[16] = unix.AF_UNSPEC
	binary.BigEndian.PutUint16(msg[18:], group) // nfgenmsg.res_id
	msg = append(msg, attr...)
	ne.PutUint32(msg[0:], uint32(len(msg)))
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		var result error
		found := false
		_ = splitNetlink(buf[:n], func(typ uint16, p []byte) {
			if typ == unix.NLMSG_ERROR && len(p) >= 4 {
				found = true
				if e := int32(ne.Uint32(p)); e != 0 {
					result = unix.Errno(-e)
				}
			}
		})
		if found {
			return result
		}
	}
}

// read receives one datagram into buf; it blocks until data or Close.
func (c *pktConn) read(buf []byte) (int, error) {
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

func (c *pktConn) Close() error { return c.f.Close() }

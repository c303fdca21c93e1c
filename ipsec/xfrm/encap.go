package xfrm

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// EnableUDPEncap turns a UDP socket (the IKE socket on port 4500) into an
// ESP-in-UDP decapsulation socket (UDP_ENCAP_ESPINUDP, RFC 3948): the kernel
// takes datagrams whose first word is non-zero as ESP and hands them to XFRM,
// and passes those that start with the four-byte non-ESP marker (IKE) to the
// socket as usual. Without such a socket on the SA's port, inbound
// ESP-in-UDP never reaches XFRM.
func EnableUDPEncap(c syscall.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("xfrm: udp encap: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_ENCAP, unix.UDP_ENCAP_ESPINUDP)
	}); err != nil {
		return fmt.Errorf("xfrm: udp encap: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("xfrm: setsockopt UDP_ENCAP: %w", serr)
	}
	return nil
}

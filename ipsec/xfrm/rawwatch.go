package xfrm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// rawRcvBuf bounds what a raw watch socket queues in the kernel: beyond it
// the kernel drops the copies (counted as WatchOverruns only if reported).
const rawRcvBuf = 256 << 10

// openRawIP opens a raw IPv4 socket for proto in the calling thread's
// netns. It receives a copy of every inbound packet of that protocol
// (raw_local_deliver runs before the ESP/AH handlers) without taking it
// away from XFRM.
func openRawIP(proto int) (*pktConn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("xfrm: raw socket for protocol %d: %w", proto, err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rawRcvBuf)
	return newPktConn(fd, fmt.Sprintf("raw-%d", proto))
}

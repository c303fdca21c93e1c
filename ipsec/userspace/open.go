package userspace

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/spiagent/spiagent/ipsec/userspace/rawnet"
	"github.com/spiagent/spiagent/ipsec/userspace/tun"
)

// DefaultMTU is the TUN MTU Open uses when given 0: room for the largest
// ESP or AH+ESP overhead (and ESP-in-UDP) inside a 1500-byte link.
const DefaultMTU = 1400

// Open is the production wiring: it opens the TUN device tunName (with
// mtu, 0 for DefaultMTU; with TCP segmentation and receive offload when the
// kernel allows) as Device and Router, raw ESP/AH sockets as Link,
// and starts a dataplane with cfg (whose TUN, Router and Link it sets).
// ESP-in-UDP still needs a sender: the IKE engine's port-4500 transport
// (SetUDPSender, and route its non-IKE datagrams to HandleESPInUDP), or
// ListenESPInUDP when no IKE engine shares the port. Close closes
// everything Open opened. Needs CAP_NET_ADMIN and CAP_NET_RAW.
func Open(tunName string, mtu int, cfg Config) (*Dataplane, error) {
	if mtu == 0 {
		mtu = DefaultMTU
	}
	dev, err := tun.OpenOffload(tunName, mtu)
	if err != nil {
		// Kernels without TUN offload: plain packets, one per read.
		if dev, err = tun.Open(tunName, mtu); err != nil {
			return nil, fmt.Errorf("userspace: %w", err)
		}
	}
	var dp atomic.Pointer[Dataplane]
	raw, err := rawnet.Open(func(pkts [][]byte) {
		if d := dp.Load(); d != nil {
			d.HandleIPBatch(pkts)
		}
	})
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("userspace: %w", err)
	}
	cfg.TUN, cfg.Router, cfg.Link = dev, dev, raw
	d, err := New(cfg)
	if err != nil {
		raw.Close()
		dev.Close()
		return nil, err
	}
	d.closers = append(d.closers, raw)
	dp.Store(d)
	return d, nil
}

var _ io.Closer = (*rawnet.Conn)(nil)

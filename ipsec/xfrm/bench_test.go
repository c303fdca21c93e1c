package xfrm

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/ipsec"
)

// BenchmarkHandleNFLOG is the userspace cost of one unknown-SPI packet that
// the kernel passed up: NFLOG attribute walk, IPv4/ESP parse, known-SPI
// check, detector (here mostly suppressing: one source, random SPIs).
func BenchmarkHandleNFLOG(b *testing.B) {
	d := &Dataplane{events: make(chan ipsec.Event, 1), sas: map[ipsec.SAKey]saRecord{}, det: NewDetector(DetectorConfig{})}
	d.cfg.log = discardLogger()
	msg := nflogMsg(ipv4(50, "192.0.2.1", "192.0.2.2", be32(0x1001, 7)))
	spiAt := len(msg) - 8 // the ESP SPI inside the payload attribute
	typ := uint16(nfnlSubsysULOG<<8 | nfulnlMsgPacket)
	x := uint32(2463534242)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		binary.BigEndian.PutUint32(msg[spiAt:], x|0x100)
		d.handleNFLOG(typ, msg)
		select {
		case <-d.events:
		default:
		}
	}
}

// BenchmarkRootKernelFlood sends ESP packets with random SPIs from one
// namespace to another through a veth, with and without the nftables watch
// in the receiver. veth delivers in the sender's context, so ns/op includes
// the receiver's input path; the difference is the watch's kernel cost per
// packet (meta + payload + set lookup + limit; log only within the limit).
func BenchmarkRootKernelFlood(b *testing.B) {
	requireRoot(b)
	for _, watch := range []bool{false, true} {
		name := "no-watch"
		if watch {
			name = "nft-watch"
		}
		b.Run(name, func(b *testing.B) {
			a, rb := topology(b)
			if watch {
				rb.dataplane()
			}
			var fd int
			a.do(func() (err error) {
				fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ESP)
				return err
			})
			defer unix.Close(fd)
			dst := &unix.SockaddrInet4{Addr: outerB.As4()}
			pkt := espPayload(0)
			x := uint32(2463534242)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				x ^= x << 13
				x ^= x >> 17
				x ^= x << 5
				binary.BigEndian.PutUint32(pkt, x|0x100)
				if err := unix.Sendto(fd, pkt, 0, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package tun

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/ipsec/ipv4hdr"
)

// TCP segmentation offload (TSO). With IFF_VNET_HDR and TUN_F_TSO4 the
// kernel hands the TUN whole TCP super-packets (up to 64 KiB) with a
// virtio_net_hdr in front instead of segmenting them first, which saves it
// most of its per-packet work on the sending side. Read splits them into
// MSS-sized segments with correct IPv4 and TCP headers and checksums, so
// readers still see one ordinary packet per Read.

// virtio_net_hdr and TUN offload constants (linux/virtio_net.h, if_tun.h).
const (
	vnetHdrLen        = 10
	vnetFlagNeedsCsum = 1
	gsoNone           = 0
	gsoTCPv4          = 1
	gsoECN            = 0x80
	tunFCsum          = 0x01
	tunFTSO4          = 0x02
	tcpFlagFIN        = 0x01
	tcpFlagPSH        = 0x08
	tcpFlagCWR        = 0x80
	maxRead           = vnetHdrLen + 65535
)

type offload struct {
	supers atomic.Uint64 // TSO super-packets split
	merged atomic.Uint64 // GRO super-packets written
	rbuf   []byte
	segbuf []byte
	segs   [][]byte
	next   int
	wpool  sync.Pool
}

// OpenOffload is Open with TCP segmentation offload enabled (IPv4).
func OpenOffload(name string, mtu int) (*Device, error) {
	d, err := open(name, mtu, true)
	if err != nil {
		return nil, err
	}
	return d, nil
}

func enableOffload(fd int) error {
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCsum|tunFTSO4); err != nil {
		return fmt.Errorf("tun: TUNSETOFFLOAD: %w", err)
	}
	return nil
}

func newOffload() *offload {
	o := &offload{rbuf: make([]byte, maxRead), segbuf: make([]byte, 0, 2*maxRead)}
	o.wpool.New = func() any { b := make([]byte, maxRead); return &b }
	return o
}

// read returns the next packet: a pending segment, or a fresh read from
// the device (checksummed, and split when it is a TSO super-packet).
func (d *Device) readOffload(b []byte) (int, error) {
	o := d.off
	for {
		if o.next < len(o.segs) {
			s := o.segs[o.next]
			o.next++
			return copy(b, s), nil
		}
		n, err := d.f.Read(o.rbuf)
		if err != nil {
			return 0, err
		}
		if n < vnetHdrLen {
			continue
		}
		h, pkt := o.rbuf[:vnetHdrLen], o.rbuf[vnetHdrLen:n]
		gsoType := h[1] &^ gsoECN
		gsoSize := int(binary.LittleEndian.Uint16(h[4:]))
		csumStart := int(binary.LittleEndian.Uint16(h[6:]))
		csumOff := int(binary.LittleEndian.Uint16(h[8:]))
		switch {
		case gsoType == gsoNone:
			if h[0]&vnetFlagNeedsCsum != 0 && csumStart+csumOff+2 <= len(pkt) {
				// The checksum field holds the pseudo-header sum; the sum
				// from csum_start to the end, field included, completes it.
				c := ^fold(sum(pkt[csumStart:], 0))
				binary.BigEndian.PutUint16(pkt[csumStart+csumOff:], c)
			}
			return copy(b, pkt), nil
		case gsoType == gsoTCPv4 && gsoSize > 0:
			o.segs, o.next = o.split(pkt, gsoSize), 0
			o.supers.Add(1)
		default:
			// Unsupported offload type: drop it.
		}
	}
}

// split cuts a TCP/IPv4 super-packet into segments of at most mss payload
// bytes (RFC 9293 sequence numbers; IPv4 IDs incremented; FIN and PSH only
// on the last segment, CWR only on the first).
func (o *offload) split(pkt []byte, mss int) [][]byte {
	if len(pkt) < ipv4hdr.MinLen || ipv4hdr.Version(pkt) != 4 {
		return nil
	}
	ihl := ipv4hdr.HeaderLen(pkt)
	if len(pkt) < ihl+tcpMinLen || pkt[ipv4hdr.OffsetProto] != unix.IPPROTO_TCP {
		return nil
	}
	hl := hdrLen(pkt)
	if len(pkt) < hl {
		return nil
	}
	payload := pkt[hl:]
	seq := binary.BigEndian.Uint32(pkt[ihl+tcpOffsetSeq:])
	id := binary.BigEndian.Uint16(pkt[ipv4hdr.OffsetID:])
	flags := pkt[ihl+tcpOffsetFlags]
	o.segbuf = o.segbuf[:0]
	segs := o.segs[:0]
	for i, off := 0, 0; off < len(payload); i, off = i+1, off+mss {
		end := min(off+mss, len(payload))
		start := len(o.segbuf)
		o.segbuf = append(o.segbuf, pkt[:hl]...)
		o.segbuf = append(o.segbuf, payload[off:end]...)
		seg := o.segbuf[start:]
		binary.BigEndian.PutUint16(seg[ipv4hdr.OffsetTotalLen:], uint16(len(seg)))
		binary.BigEndian.PutUint16(seg[ipv4hdr.OffsetID:], id+uint16(i))
		setIPv4Checksum(seg[:ihl])
		binary.BigEndian.PutUint32(seg[ihl+tcpOffsetSeq:], seq+uint32(off))
		f := flags
		if off != 0 {
			f &^= tcpFlagCWR
		}
		if end != len(payload) {
			f &^= tcpFlagFIN | tcpFlagPSH
		}
		seg[ihl+tcpOffsetFlags] = f
		binary.BigEndian.PutUint16(seg[ihl+tcpOffsetChecksum:], 0)
		binary.BigEndian.PutUint16(seg[ihl+tcpOffsetChecksum:], ^fold(sum(seg[ihl:], pseudoSum(seg, ihl))))
		segs = append(segs, seg)
	}
	return segs
}

// writeOffload writes one packet behind an all-zero virtio_net_hdr.
func (d *Device) writeOffload(b []byte) (int, error) {
	if len(b)+vnetHdrLen > maxRead {
		return 0, os.ErrInvalid
	}
	bp := d.off.wpool.Get().(*[]byte)
	defer d.off.wpool.Put(bp)
	buf := *bp
	clear(buf[:vnetHdrLen])
	n := copy(buf[vnetHdrLen:], b)
	if _, err := d.f.Write(buf[:vnetHdrLen+n]); err != nil {
		return 0, err
	}
	return len(b), nil
}

// sum adds b as big-endian 16-bit words to s (one's complement, unfolded).
func sum(b []byte, s uint64) uint64 {
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		s += v>>48 + (v>>32)&0xffff + (v>>16)&0xffff + v&0xffff
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

// pseudoSum is the unfolded sum of the TCP pseudo-header of the IPv4
// packet p whose TCP header starts at ihl (RFC 9293 §3.1).
func pseudoSum(p []byte, ihl int) uint64 {
	return uint64(binary.BigEndian.Uint32(p[ipv4hdr.OffsetSrc:])) + uint64(binary.BigEndian.Uint32(p[ipv4hdr.OffsetDst:])) +
		unix.IPPROTO_TCP + uint64(len(p)-ihl)
}

// setIPv4Checksum computes the header checksum of h (the whole header).
func setIPv4Checksum(h []byte) {
	binary.BigEndian.PutUint16(h[ipv4hdr.OffsetChecksum:], 0)
	binary.BigEndian.PutUint16(h[ipv4hdr.OffsetChecksum:], ^fold(sum(h, 0)))
}

func fold(s uint64) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// Segmented is how many TSO super-packets Read has split (0 without
// offload).
func (d *Device) Segmented() uint64 {
	if d.off == nil {
		return 0
	}
	return d.off.supers.Load()
}

// Coalesced is how many GRO super-packets WriteBatch has written.
func (d *Device) Coalesced() uint64 {
	if d.off == nil {
		return 0
	}
	return d.off.merged.Load()
}

// Pending is how many segments of a split super-packet the next Reads
// will return without reading the device.
func (d *Device) Pending() int {
	if d.off == nil {
		return 0
	}
	return len(d.off.segs) - d.off.next
}

package tun

import (
	"bytes"
	"encoding/binary"

	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/ipsec/ipv4hdr"
)

// Generic receive offload in userspace: with offload on, WriteBatch
// merges consecutive in-order TCP segments of one flow into one
// super-packet with a virtio_net_hdr asking the kernel to treat it as a
// GSO packet (gso_type TCPV4, CHECKSUM_PARTIAL). The kernel then forwards
// or delivers 64 KiB at a time instead of one segment at a time, and
// resegments only if it must. Segments are merged only if they are
// plain data (ACK, optionally PSH on the last), their IPv4 and TCP headers
// agree except for length, ID, checksum and sequence number, their TCP
// checksums verify, and all but the last carry the same payload size.

const (
	tcpFlagACK = 0x10
	maxSuper   = 65535
)

// TCP header offsets (RFC 9293 §3.1), and where they fall in a packet with
// a 20-byte IPv4 header (the only kind GRO merges).
const (
	tcpOffsetSeq      = 4
	tcpOffsetDataOff  = 12 // header length in words, high nibble
	tcpOffsetFlags    = 13
	tcpOffsetChecksum = 16
	tcpMinLen         = 20

	groFlags    = ipv4hdr.MinLen + tcpOffsetFlags
	groChecksum = ipv4hdr.MinLen + tcpOffsetChecksum
)

// WriteBatch writes pkts in order, coalescing TCP segments when offload is
// on. It returns how many of pkts were written.
func (d *Device) WriteBatch(pkts [][]byte) (int, error) {
	if d.off == nil {
		for i, p := range pkts {
			if _, err := d.f.Write(p); err != nil {
				return i, err
			}
		}
		return len(pkts), nil
	}
	written := 0
	for i := 0; i < len(pkts); {
		j := i + 1
		if mss := groCandidate(pkts[i]); mss > 0 {
			total := len(pkts[i])
			prev := pkts[i]
			for j < len(pkts) && total < maxSuper {
				if !groFollows(prev, pkts[j], mss, total) {
					break
				}
				total += len(pkts[j]) - hdrLen(pkts[j])
				prev = pkts[j]
				j++
			}
		}
		var err error
		if j == i+1 {
			_, err = d.writeOffload(pkts[i])
		} else {
			err = d.writeSuper(pkts[i:j])
		}
		if err != nil {
			return written, err
		}
		written += j - i
		i = j
	}
	return written, nil
}

// hdrLen is the IPv4 plus TCP header length of p.
func hdrLen(p []byte) int {
	ihl := ipv4hdr.HeaderLen(p)
	return ihl + int(p[ihl+tcpOffsetDataOff]>>4)*4
}

// groCandidate returns the payload size of p if it is a TCP/IPv4 data
// segment that may start or join a merge, else 0.
func groCandidate(p []byte) int {
	if len(p) < ipv4hdr.MinLen+tcpMinLen || p[ipv4hdr.OffsetVersionIHL] != ipv4hdr.VersionIHL5 || p[ipv4hdr.OffsetProto] != unix.IPPROTO_TCP {
		return 0
	}
	if ipv4hdr.TotalLen(p) != len(p) || ipv4hdr.IsFragment(p) {
		return 0 // trimmed wrongly, or a fragment
	}
	if f := p[groFlags]; f&^(tcpFlagACK|tcpFlagPSH) != 0 || f&tcpFlagACK == 0 {
		return 0
	}
	hl := hdrLen(p)
	if hl < ipv4hdr.MinLen+tcpMinLen || hl >= len(p) {
		return 0
	}
	if !tcpChecksumOK(p) {
		return 0
	}
	return len(p) - hl
}

// groFollows reports whether next continues prev in a merge whose
// segments carry mss bytes (the super-packet has total bytes so far).
func groFollows(prev, next []byte, mss, total int) bool {
	if prev[groFlags]&tcpFlagPSH != 0 || len(prev)-hdrLen(prev) != mss {
		return false // only the last segment may be short or pushed
	}
	n := groCandidate(next)
	if n == 0 || n > mss || total+n > maxSuper {
		return false
	}
	hl := hdrLen(prev)
	if hdrLen(next) != hl {
		return false
	}
	// IPv4: equal but for total length, ID and checksum.
	if !bytes.Equal(prev[:ipv4hdr.OffsetTotalLen], next[:ipv4hdr.OffsetTotalLen]) ||
		!bytes.Equal(prev[ipv4hdr.OffsetFragment:ipv4hdr.OffsetChecksum], next[ipv4hdr.OffsetFragment:ipv4hdr.OffsetChecksum]) ||
		!bytes.Equal(prev[ipv4hdr.OffsetSrc:ipv4hdr.MinLen], next[ipv4hdr.OffsetSrc:ipv4hdr.MinLen]) {
		return false
	}
	// TCP: equal but for sequence, checksum and PSH.
	t, u := prev[ipv4hdr.MinLen:hl], next[ipv4hdr.MinLen:hl]
	if !bytes.Equal(t[:tcpOffsetSeq], u[:tcpOffsetSeq]) || !bytes.Equal(t[tcpOffsetSeq+4:tcpOffsetFlags], u[tcpOffsetSeq+4:tcpOffsetFlags]) ||
		t[tcpOffsetFlags]|tcpFlagPSH != u[tcpOffsetFlags]|tcpFlagPSH ||
		!bytes.Equal(t[tcpOffsetFlags+1:tcpOffsetChecksum], u[tcpOffsetFlags+1:tcpOffsetChecksum]) ||
		!bytes.Equal(t[tcpOffsetChecksum+2:], u[tcpOffsetChecksum+2:]) {
		return false
	}
	return binary.BigEndian.Uint32(u[tcpOffsetSeq:]) == binary.BigEndian.Uint32(t[tcpOffsetSeq:])+uint32(mss)
}

func tcpChecksumOK(p []byte) bool {
	return fold(sum(p[ipv4hdr.MinLen:], pseudoSum(p, ipv4hdr.MinLen))) == 0xffff
}

// writeSuper writes segs (validated by groFollows) as one GSO packet.
func (d *Device) writeSuper(segs [][]byte) error {
	bp := d.off.wpool.Get().(*[]byte)
	defer d.off.wpool.Put(bp)
	buf := *bp
	first, last := segs[0], segs[len(segs)-1]
	hl := hdrLen(first)
	mss := len(first) - hl
	h := buf[:vnetHdrLen]
	h[0], h[1] = vnetFlagNeedsCsum, gsoTCPv4
	binary.LittleEndian.PutUint16(h[2:], uint16(hl))
	binary.LittleEndian.PutUint16(h[4:], uint16(mss))
	binary.LittleEndian.PutUint16(h[6:], 20)
	binary.LittleEndian.PutUint16(h[8:], 16)
	p := buf[vnetHdrLen:vnetHdrLen]
	p = append(p, first...)
	for _, s := range segs[1:] {
		p = append(p, s[hl:]...)
	}
	binary.BigEndian.PutUint16(p[ipv4hdr.OffsetTotalLen:], uint16(len(p)))
	setIPv4Checksum(p[:ipv4hdr.MinLen])
	p[groFlags] |= last[groFlags] & tcpFlagPSH
	// CHECKSUM_PARTIAL: the field holds the pseudo-header sum.
	binary.BigEndian.PutUint16(p[groChecksum:], fold(pseudoSum(p, ipv4hdr.MinLen)))
	if _, err := d.f.Write(buf[:vnetHdrLen+len(p)]); err != nil {
		return err
	}
	d.off.merged.Add(1)
	return nil
}

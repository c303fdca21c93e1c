package tun

import (
	"bytes"
	"encoding/binary"

	"golang.org/x/sys/unix"
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

func hdrLen(p []byte) int {
	ihl := int(p[0]&0x0f) * 4
	return ihl + int(p[ihl+12]>>4)*4
}

// groCandidate returns the payload size of p if it is a TCP/IPv4 data
// segment that may start or join a merge, else 0.
func groCandidate(p []byte) int {
	if len(p) < 40 || p[0] != 0x45 || p[9] != unix.IPPROTO_TCP {
		return 0
	}
	if int(binary.BigEndian.Uint16(p[2:])) != len(p) || binary.BigEndian.Uint16(p[6:])&0x3fff != 0 {
		return 0 // trimmed wrongly, or a fragment
	}
	if f := p[33]; f&^(tcpFlagACK|tcpFlagPSH) != 0 || f&tcpFlagACK == 0 {
		return 0
	}
	hl := hdrLen(p)
	if hl < 40 || hl >= len(p) {
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
	if prev[33]&tcpFlagPSH != 0 || len(prev)-hdrLen(prev) != mss {
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
	// IPv4: equal but for total length (2-3), ID (4-5), checksum (10-11).
	if !bytes.Equal(prev[0:2], next[0:2]) || !bytes.Equal(prev[6:10], next[6:10]) || !bytes.Equal(prev[12:20], next[12:20]) {
		return false
	}
	// TCP: equal but for sequence (4-7), checksum (16-17) and PSH.
	t, u := prev[20:hl], next[20:hl]
	if !bytes.Equal(t[0:4], u[0:4]) || !bytes.Equal(t[8:13], u[8:13]) || t[13]|tcpFlagPSH != u[13]|tcpFlagPSH ||
		!bytes.Equal(t[14:16], u[14:16]) || !bytes.Equal(t[18:], u[18:]) {
		return false
	}
	return binary.BigEndian.Uint32(u[4:]) == binary.BigEndian.Uint32(t[4:])+uint32(mss)
}

func tcpChecksumOK(p []byte) bool {
	ps := uint64(binary.BigEndian.Uint32(p[12:])) + uint64(binary.BigEndian.Uint32(p[16:])) +
		unix.IPPROTO_TCP + uint64(len(p)-20)
	return fold(sum(p[20:], ps)) == 0xffff
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
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], ^fold(sum(p[:20], 0)))
	p[33] |= last[33] & tcpFlagPSH
	// CHECKSUM_PARTIAL: the field holds the pseudo-header sum.
	ps := uint64(binary.BigEndian.Uint32(p[12:])) + uint64(binary.BigEndian.Uint32(p[16:])) +
		unix.IPPROTO_TCP + uint64(len(p)-20)
	binary.BigEndian.PutUint16(p[36:], fold(ps))
	if _, err := d.f.Write(buf[:vnetHdrLen+len(p)]); err != nil {
		return err
	}
	d.off.merged.Add(1)
	return nil
}

package userspace

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
	"github.com/spiagent/spiagent/ipsec/ipv4hdr"
	"github.com/spiagent/spiagent/ipsec/userspace/ah"
	"github.com/spiagent/spiagent/ipsec/userspace/esp"
)

// HandleIP processes one received IPv4 packet carrying ESP or AH (as a raw
// socket delivers it, header included). It may modify pkt and does not
// keep it. Safe for concurrent use; allocates nothing per packet.
func (d *Dataplane) HandleIP(pkt []byte) { d.handleIP(pkt, nil) }

// BatchWriter is implemented by devices that take several packets per
// call (package tun with offload coalesces TCP segments: GRO).
type BatchWriter interface {
	WriteBatch(pkts [][]byte) (int, error)
}

// deliverBatch collects the decapsulated packets of one receive batch.
type deliverBatch struct{ pkts [][]byte }

var batchPool = sync.Pool{New: func() any { return &deliverBatch{pkts: make([][]byte, 0, 64)} }}

// HandleIPBatch is HandleIP for the packets of one receive batch (package
// rawnet delivers them so): the decapsulated packets go to the TUN
// together, which lets a BatchWriter TUN coalesce them.
func (d *Dataplane) HandleIPBatch(pkts [][]byte) {
	db := batchPool.Get().(*deliverBatch)
	for _, p := range pkts {
		d.handleIP(p, db)
	}
	d.flush(db)
	batchPool.Put(db)
}

func (d *Dataplane) handleIP(pkt []byte, db *deliverBatch) {
	pkt, ihl, f, ok := parseIPv4(pkt)
	if !ok || isFragment(pkt) {
		d.stats.malformed.Add(1)
		return
	}
	if f.proto != protoESP && f.proto != protoAH {
		d.stats.notIPsec.Add(1)
		return
	}
	d.decap(pkt, ihl, f.src, 0, db)
}

// flush writes a batch to the TUN and empties it.
func (d *Dataplane) flush(db *deliverBatch) {
	if len(db.pkts) == 0 {
		return
	}
	if bw, ok := d.cfg.TUN.(BatchWriter); ok {
		n, err := bw.WriteBatch(db.pkts)
		d.stats.inPackets.Add(uint64(n))
		if err != nil {
			d.stats.sendErrors.Add(uint64(len(db.pkts) - n))
		}
	} else {
		for _, p := range db.pkts {
			d.writeTUN(p)
		}
	}
	clear(db.pkts)
	db.pkts = db.pkts[:0]
}

func (d *Dataplane) writeTUN(pkt []byte) {
	if _, err := d.cfg.TUN.Write(pkt); err != nil {
		d.stats.sendErrors.Add(1)
		return
	}
	d.stats.inPackets.Add(1)
}

// udpBufs holds buffers for ESP-in-UDP, which arrives without an IP header.
var udpBufs = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// espInUDPOK sorts out what shares port 4500 with ESP and is not ESP.
func (d *Dataplane) espInUDPOK(pkt []byte, src, dst netip.AddrPort) bool {
	switch {
	case len(pkt) == 1 && pkt[0] == 0xff: // NAT-keepalive (RFC 3948 §2.3)
		return false
	case len(pkt) >= 4 && binary.BigEndian.Uint32(pkt) == 0: // non-ESP marker: IKE
		d.stats.notIPsec.Add(1)
		return false
	case len(pkt) < esp.HeaderLen || len(pkt)+ipv4MinLen > bufSize || !src.Addr().Is4() || !dst.Addr().Is4():
		d.stats.malformed.Add(1)
		return false
	}
	return true
}

// HandleESPInUDP processes one ESP-in-UDP payload (RFC 3948) received on
// dst from src: the IKE engine calls it for every port-4500 datagram that
// is not IKE (no non-ESP marker) and not a NAT keepalive. It does not keep
// pkt. Safe for concurrent use; allocates nothing per packet.
func (d *Dataplane) HandleESPInUDP(pkt []byte, src, dst netip.AddrPort) {
	if !d.espInUDPOK(pkt, src, dst) {
		return
	}
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	b := *bp
	total := ipv4MinLen + len(pkt)
	writeIPv4(b, src.Addr(), dst.Addr(), protoESP, total, 0, 0)
	copy(b[ipv4MinLen:], pkt)
	d.decap(b[:total], ipv4MinLen, src.Addr(), src.Port(), nil)
}

// handleESPInUDPInPlace is HandleESPInUDP for a datagram at
// buf[ipv4MinLen:], with room for the IPv4 header in front (the
// dataplane's own batched UDP socket).
func (d *Dataplane) handleESPInUDPInPlace(buf []byte, src, dst netip.AddrPort, db *deliverBatch) {
	if !d.espInUDPOK(buf[ipv4MinLen:], src, dst) {
		return
	}
	writeIPv4(buf, src.Addr(), dst.Addr(), protoESP, len(buf), 0, 0)
	d.decap(buf, ipv4MinLen, src.Addr(), src.Port(), db)
}

// decap removes AH and ESP headers from pkt (an IPv4 packet whose IPsec
// header starts at ihl), verifying each, then checks the result against
// the inbound policy and writes it to the TUN. sport is the UDP source port
// for ESP-in-UDP, 0 for raw.
func (d *Dataplane) decap(pkt []byte, ihl int, src netip.Addr, sport uint16, db *deliverBatch) {
	var applied [maxTemplates]*saState
	n := 0
	for {
		proto := pkt[ipv4hdr.OffsetProto]
		if proto != protoESP && proto != protoAH {
			break // transport mode: pkt is the original packet again
		}
		if n == maxTemplates {
			d.stats.malformed.Add(1)
			return
		}
		spi, seq, ok := ipsecHeader(pkt[ihl:], proto)
		if !ok {
			d.stats.malformed.Add(1)
			return
		}
		s, _ := d.sad.in.get(inKey{spi: spi, proto: alg.Protocol(proto)})
		if s == nil || s.dead.Load() {
			d.invalidSPI(src, ipv4hdr.Dst(pkt), alg.Protocol(proto), spi, sport)
			return
		}
		if (sport != 0) != (s.sa.Encap != nil) { // raw ESP for a UDP SA, or the reverse
			s.otherErr.Add(1)
			return
		}
		if !d.replayCheck(s, seq) {
			return
		}
		var next []byte
		var tunnel bool
		if proto == protoAH {
			next, tunnel, ok = d.openAH(s, pkt, ihl)
		} else {
			next, tunnel, ok = d.openESP(s, pkt, ihl)
		}
		if !ok {
			return
		}
		if !d.replayAccept(s, seq) || next == nil || !d.account(s, len(next)) {
			return // next == nil: a dummy or non-IPv4 payload, dropped after the window moved
		}
		applied[n] = s
		n++
		pkt = next
		var good bool
		if pkt, ihl, _, good = parseIPv4(pkt); !good {
			s.otherErr.Add(1)
			return
		}
		if tunnel {
			break
		}
	}
	d.deliver(pkt, applied[:n], db)
}

func ipsecHeader(b []byte, proto uint8) (spi, seq uint32, ok bool) {
	if proto == protoAH {
		return ah.ParseHeader(b)
	}
	return esp.ParseHeader(b)
}

// openAH verifies AH and returns the packet without it: the inner packet
// (tunnel) or the header followed by what AH protected (transport).
func (d *Dataplane) openAH(s *saState, pkt []byte, ihl int) ([]byte, bool, bool) {
	if ihl != ipv4MinLen {
		s.otherErr.Add(1)
		return nil, false, false
	}
	nh, off, err := s.ah.Open(pkt)
	if err != nil {
		d.countErr(s, err == ah.ErrAuth)
		return nil, false, false
	}
	if nh == protoIPIP {
		return pkt[off:], true, true
	}
	ns := off - ipv4MinLen
	copy(pkt[ns:off], pkt[:ipv4MinLen])
	setLenProto(pkt[ns:], ipv4MinLen, len(pkt)-ns, nh)
	return pkt[ns:], false, true
}

// openESP verifies and decrypts ESP in place and returns the inner packet
// (tunnel) or the packet rebuilt with its payload (transport).
func (d *Dataplane) openESP(s *saState, pkt []byte, ihl int) ([]byte, bool, bool) {
	payload, nh, err := s.esp.Open(pkt[ihl:])
	if err != nil {
		d.countErr(s, err == esp.ErrAuth)
		return nil, false, false
	}
	switch nh {
	case protoNoNext: // RFC 4303 §2.6 dummy packet: authenticated, then discarded
		return nil, false, true
	case protoIPv6: // this dataplane carries IPv4 only
		s.otherErr.Add(1)
		return nil, false, true
	}
	if nh == protoIPIP {
		return payload, true, true
	}
	ps := ihl + s.esp.HeaderLen()
	ns := ps - ihl
	copy(pkt[ns:ps], pkt[:ihl])
	setLenProto(pkt[ns:], ihl, ihl+len(payload), nh)
	return pkt[ns : ps+len(payload)], false, true
}

func (d *Dataplane) countErr(s *saState, auth bool) {
	if auth {
		s.authFail.Add(1)
	} else {
		s.otherErr.Add(1)
	}
}

// replayCheck is the cheap test before the ICV (RFC 4303 §3.4.3).
func (d *Dataplane) replayCheck(s *saState, seq uint32) bool {
	if s.replay == nil {
		return true
	}
	s.replayMu.Lock()
	ok := s.replay.Check(seq)
	s.replayMu.Unlock()
	if !ok {
		s.replayErr.Add(1)
	}
	return ok
}

// replayAccept moves the window after the ICV verified.
func (d *Dataplane) replayAccept(s *saState, seq uint32) bool {
	if s.replay == nil {
		return true
	}
	s.replayMu.Lock()
	ok := s.replay.Accept(seq)
	s.replayMu.Unlock()
	if !ok {
		s.replayErr.Add(1)
	}
	return ok
}

// deliver checks a decapsulated packet against policy and writes it to the
// TUN, or adds it to the batch db.
func (d *Dataplane) deliver(pkt []byte, applied []*saState, db *deliverBatch) {
	_, _, f, ok := parseIPv4(pkt)
	if !ok || len(applied) == 0 {
		d.stats.malformed.Add(1)
		return
	}
	if !d.policyAllows(&f, applied) {
		applied[0].otherErr.Add(1)
		d.stats.policyMismatch.Add(1)
		return
	}
	switch {
	case d.cfg.TUN == nil:
		d.stats.sendErrors.Add(1)
	case db != nil:
		db.pkts = append(db.pkts, pkt)
	default:
		d.writeTUN(pkt)
	}
}

// policyAllows: the innermost SA's selector, when it has one, must match
// the packet; and when inbound policies exist, the first that matches must
// protect with exactly the protocols (and ReqID) the packet came through
// (RFC 4301 §5.2: an AH+ESP policy refuses ESP alone).
func (d *Dataplane) policyAllows(f *flow, applied []*saState) bool {
	inner := applied[len(applied)-1]
	sel := &inner.sa.Selector
	if sel.Src.IsValid() && sel.Dst.IsValid() && !sel.Matches(f.src, f.dst, f.proto, f.sport, f.dport) {
		return false
	}
	if d.spd.in.n.Load() == 0 {
		return true
	}
	pol := d.spd.in.lookup(f)
	if pol == nil || pol.Action != ipsec.ActionProtect || len(pol.Templates) != len(applied) {
		return false
	}
	// Templates are innermost first; applied is outermost first.
	for i, tm := range pol.Templates {
		s := applied[len(applied)-1-i]
		if tm.Proto != s.sa.Proto || (tm.ReqID != 0 && tm.ReqID != s.sa.ReqID) {
			return false
		}
	}
	return true
}

// invalidSPI reports an unknown SPI through the rate-limited detector.
func (d *Dataplane) invalidSPI(src, dst netip.Addr, proto alg.Protocol, spi uint32, sport uint16) {
	if !d.invalid.Observe(src, uint8(proto), spi) {
		return
	}
	now := d.cfg.Now()
	// Debug only: the agent logs the router's %CRYPTO-4-RECVD_PKT_INV_SPI
	// line once it has decided what to do about the event.
	d.log.Debug("unknown SPI", "src", src.String(), "dst", dst.String(), "proto", proto.String(), "spi", fmt.Sprintf("0x%08x", spi))
	d.emit(ipsec.Event{
		Kind: ipsec.EventInvalidSPI, Time: now,
		SA:  ipsec.SAKey{Dst: dst, Proto: proto, SPI: spi},
		Src: src, SrcPort: sport,
	})
}

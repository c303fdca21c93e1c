package userspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
	"github.com/spiagent/spiagent/ipsec/ipv4hdr"
	"github.com/spiagent/spiagent/ipsec/userspace/esp"
)

// Buffer layout: a packet read from the TUN sits at headroom, leaving room
// in front for outer headers (IPv4, AH, ESP header and IV, per template)
// and behind for ESP padding, trailer and ICV.
const (
	headroom  = 160
	tailroom  = 128
	maxPacket = 16 * 1024
	bufSize   = headroom + maxPacket + tailroom
)

// pktBuf is a packet at b[start:end] with head- and tailroom around it.
type pktBuf struct {
	b          []byte
	start, end int
}

// sendBatchSize is how many encrypted packets the TUN reader collects
// before one sendmmsg(2), while the TUN has split segments pending.
const sendBatchSize = 64

// pendingReader is a TUN that can say whether more packets are ready
// without a read (package tun with offload: segments of a super-packet).
type pendingReader interface{ Pending() int }

// batchLink and batchUDPSender send several packets per system call.
type batchLink interface {
	SendBatch(pkts [][]byte) (int, error)
}

type batchUDPSender interface {
	SendESPInUDPBatch(pkts [][]byte, dsts []netip.AddrPort) (int, error)
}

// sendBatch collects the outbound packets of one TUN burst.
type sendBatch struct {
	raw      [][]byte
	udp      [][]byte
	udpSrc   []netip.AddrPort
	udpDst   []netip.AddrPort
	batchRaw bool
	batchUDP bool
}

func (b *sendBatch) len() int { return len(b.raw) + len(b.udp) }

// readTUN is the outbound loop: one goroutine, a fixed set of buffers, no
// allocation per packet. While the TUN has segments of a split
// super-packet pending, encrypted packets are collected and sent together.
func (d *Dataplane) readTUN() {
	defer d.wg.Done()
	pr, _ := d.cfg.TUN.(pendingReader)
	bufs := make([][]byte, 1)
	if pr != nil {
		bufs = make([][]byte, sendBatchSize)
	}
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	sb := &sendBatch{}
	for {
		buf := bufs[sb.len()]
		n, err := d.cfg.TUN.Read(buf[headroom : headroom+maxPacket])
		if err != nil {
			select {
			case <-d.done:
				return
			default:
			}
			if errors.Is(err, os.ErrClosed) {
				return
			}
			d.log.Warn("TUN read", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		var batch *sendBatch
		if pr != nil {
			batch = sb
		}
		d.outbound(buf, headroom, headroom+n, batch)
		if sb.len() > 0 && (sb.len() == len(bufs) || pr.Pending() == 0) {
			d.flushSend(sb)
		}
	}
}

// flushSend transmits a collected batch and empties it.
func (d *Dataplane) flushSend(sb *sendBatch) {
	if len(sb.raw) > 0 {
		n, _ := d.cfg.Link.(batchLink).SendBatch(sb.raw)
		d.stats.outPackets.Add(uint64(n))
		d.stats.sendErrors.Add(uint64(len(sb.raw) - n))
	}
	if len(sb.udp) > 0 {
		sent := 0
		if u := d.udp.Load(); u != nil {
			if bu, ok := u.UDPSender.(batchUDPSender); ok {
				sent, _ = bu.SendESPInUDPBatch(sb.udp, sb.udpDst)
			} else {
				for i, p := range sb.udp {
					if u.SendESPInUDP(p, sb.udpSrc[i], sb.udpDst[i]) == nil {
						sent++
					}
				}
			}
		}
		d.stats.outPackets.Add(uint64(sent))
		d.stats.sendErrors.Add(uint64(len(sb.udp) - sent))
	}
	clear(sb.raw)
	clear(sb.udp)
	sb.raw, sb.udp, sb.udpSrc, sb.udpDst = sb.raw[:0], sb.udp[:0], sb.udpSrc[:0], sb.udpDst[:0]
}

// outbound applies the SPD to one cleartext packet at buf[start:end].
func (d *Dataplane) outbound(buf []byte, start, end int, sb *sendBatch) {
	pkt, _, f, ok := parseIPv4(buf[start:end])
	if !ok {
		d.stats.malformed.Add(1)
		return
	}
	end = start + len(pkt)
	pol := d.spd.out.lookup(&f)
	switch {
	case pol == nil:
		d.stats.noPolicy.Add(1)
		return
	case pol.Action == ipsec.ActionBypass:
		d.stats.bypass.Add(1)
		return
	case pol.Action == ipsec.ActionDiscard:
		d.stats.discard.Add(1)
		return
	}
	var chain [maxTemplates]*saState
	for i, tm := range pol.Templates {
		s, _ := d.sad.out.get(outKey{reqID: tm.ReqID, proto: tm.Proto, dst: tm.Dst})
		if s == nil {
			d.acquire(pol, &tm, &f, buf[start:end])
			return
		}
		chain[i] = s
	}
	d.send(&pktBuf{b: buf, start: start, end: end}, chain[:len(pol.Templates)], sb)
}

// send encapsulates p with the SAs of a bundle, innermost first, and
// transmits it, or adds it to sb when the sender can take batches.
func (d *Dataplane) send(p *pktBuf, chain []*saState, sb *sendBatch) {
	outer := false
	for _, s := range chain {
		seq := s.seq.Add(1)
		if seq > math.MaxUint32 { // no ESN: the SA is used up (RFC 4303 §3.3.3)
			d.hardExpire(s)
			return
		}
		if !d.account(s, p.end-p.start) {
			return
		}
		var err error
		tunnel := s.sa.Mode == alg.Tunnel && !outer
		switch {
		case s.esp != nil && tunnel:
			err = d.espTunnel(p, s, uint32(seq))
		case s.esp != nil:
			err = d.espTransport(p, s, uint32(seq))
		case tunnel:
			err = d.ahTunnel(p, s, uint32(seq))
		default:
			err = d.ahTransport(p, s, uint32(seq))
		}
		if err != nil {
			s.otherErr.Add(1)
			return
		}
		outer = outer || tunnel
	}
	last := chain[len(chain)-1]
	var err error
	if last.esp != nil && last.sa.Encap != nil {
		ihl := ipv4hdr.HeaderLen(p.b[p.start:])
		src := netip.AddrPortFrom(last.sa.Src, last.sa.Encap.SrcPort)
		dst := netip.AddrPortFrom(last.sa.Dst, last.sa.Encap.DstPort)
		u := d.udp.Load()
		switch {
		case u == nil:
			err = errNoSender
		case sb != nil:
			sb.udp = append(sb.udp, p.b[p.start+ihl:p.end])
			sb.udpSrc, sb.udpDst = append(sb.udpSrc, src), append(sb.udpDst, dst)
			return
		default:
			err = u.SendESPInUDP(p.b[p.start+ihl:p.end], src, dst)
		}
	} else if _, ok := d.cfg.Link.(batchLink); ok && sb != nil {
		sb.raw = append(sb.raw, p.b[p.start:p.end])
		return
	} else if d.cfg.Link != nil {
		err = d.cfg.Link.Send(p.b[p.start:p.end])
	} else {
		err = errNoSender
	}
	if err != nil {
		d.stats.sendErrors.Add(1)
		return
	}
	d.stats.outPackets.Add(1)
}

var (
	errNoSender = errors.New("userspace: no link or UDP sender")
	errNoRoom   = errors.New("userspace: no head- or tailroom")
	errOptions  = errors.New("userspace: AH over IPv4 options")
)

func (d *Dataplane) room(p *pktBuf, front, back int) error {
	if p.start-front < 0 || p.end+back > len(p.b) {
		return errNoRoom
	}
	return nil
}

// espTunnel: new outer IPv4 | ESP | the whole packet (next header 4).
func (d *Dataplane) espTunnel(p *pktBuf, s *saState, seq uint32) error {
	hl := s.esp.HeaderLen()
	n := p.end - p.start
	if err := d.room(p, hl+ipv4MinLen, esp.MaxOverhead); err != nil {
		return err
	}
	tos := p.b[p.start+ipv4hdr.OffsetTOS]
	es := p.start - hl
	out, err := s.esp.Seal(p.b[es:], n, seq, protoIPIP)
	if err != nil {
		return err
	}
	ip := es - ipv4MinLen
	writeIPv4(p.b[ip:], s.sa.Src, s.sa.Dst, protoESP, ipv4MinLen+len(out), uint16(d.ipID.Add(1)), tos)
	p.start, p.end = ip, es+len(out)
	return nil
}

// espTransport: the packet's own header | ESP | its transport payload.
func (d *Dataplane) espTransport(p *pktBuf, s *saState, seq uint32) error {
	hl := s.esp.HeaderLen()
	ihl := ipv4hdr.HeaderLen(p.b[p.start:])
	if err := d.room(p, hl, esp.MaxOverhead); err != nil {
		return err
	}
	proto := p.b[p.start+ipv4hdr.OffsetProto]
	n := p.end - p.start - ihl
	ns := p.start - hl
	copy(p.b[ns:ns+ihl], p.b[p.start:p.start+ihl])
	out, err := s.esp.Seal(p.b[ns+ihl:], n, seq, proto)
	if err != nil {
		return err
	}
	setLenProto(p.b[ns:], ihl, ihl+len(out), protoESP)
	p.start, p.end = ns, ns+ihl+len(out)
	return nil
}

// ahTunnel: new outer IPv4 | AH | the whole packet.
func (d *Dataplane) ahTunnel(p *pktBuf, s *saState, seq uint32) error {
	hl := s.ah.HeaderLen()
	if err := d.room(p, hl+ipv4MinLen, 0); err != nil {
		return err
	}
	ip := p.start - hl - ipv4MinLen
	writeIPv4(p.b[ip:], s.sa.Src, s.sa.Dst, protoAH, p.end-ip, uint16(d.ipID.Add(1)), p.b[p.start+ipv4hdr.OffsetTOS])
	if err := s.ah.Seal(p.b[ip:p.end], seq, protoIPIP); err != nil {
		return err
	}
	p.start = ip
	return nil
}

// ahTransport: the packet's header | AH | the rest (ESP, for a bundle).
func (d *Dataplane) ahTransport(p *pktBuf, s *saState, seq uint32) error {
	if ipv4hdr.HeaderLen(p.b[p.start:]) != ipv4MinLen {
		return errOptions
	}
	hl := s.ah.HeaderLen()
	if err := d.room(p, hl, 0); err != nil {
		return err
	}
	proto := p.b[p.start+ipv4hdr.OffsetProto]
	ns := p.start - hl
	copy(p.b[ns:ns+ipv4MinLen], p.b[p.start:p.start+ipv4MinLen])
	setLenProto(p.b[ns:], ipv4MinLen, p.end-ns, protoAH)
	if err := s.ah.Seal(p.b[ns:p.end], seq, proto); err != nil {
		return err
	}
	p.start = ns
	return nil
}

// acqKey: one pending acquire per policy and peer.
type acqKey struct {
	policy ipsec.PolicyKey
	peer   netip.Addr
}

type acqEntry struct {
	sent  time.Time // last raised
	queue [][]byte
	bytes int
	outs  []outKey // the policy's templates: the outbound SAs that complete it
}

// acquire raises EventAcquire for (policy, peer), again every AcquireRetry
// while packets keep coming, and keeps a few packets to send when the SAs
// arrive.
func (d *Dataplane) acquire(pol *ipsec.Policy, tm *ipsec.Template, f *flow, pkt []byte) {
	k := acqKey{policy: pol.Key(), peer: tm.Dst}
	now := d.cfg.Now()
	raise, first := false, false
	d.acqMu.Lock()
	e := d.acq[k]
	switch {
	case e == nil:
		e = &acqEntry{sent: now}
		for _, t := range pol.Templates {
			o := outKey{reqID: t.ReqID, proto: t.Proto, dst: t.Dst}
			e.outs = append(e.outs, o)
			if d.acqByOut[o] == nil {
				d.acqByOut[o] = map[acqKey]struct{}{}
			}
			d.acqByOut[o][k] = struct{}{}
		}
		d.acq[k] = e
		raise, first = true, true
	case now.Sub(e.sent) >= d.cfg.AcquireRetry:
		e.sent = now
		raise = true
	}
	if len(e.queue) < d.cfg.AcquireQueue && d.acqBytes+len(pkt) <= d.cfg.AcquireBytes {
		e.queue = append(e.queue, append([]byte(nil), pkt...))
		e.bytes += len(pkt)
		d.acqBytes += len(pkt)
		d.stats.acqQueued.Add(1)
	} else {
		d.stats.acqDropped.Add(1)
	}
	d.acqMu.Unlock()
	if !raise {
		return
	}
	if first && d.log.Enabled(context.Background(), slog.LevelDebug) {
		// Debug only, off the packet path's budget: the agent logs the
		// negotiation it starts.
		d.log.Debug("acquire", "policy", pol.ID, "peer", tm.Dst.String(), "proto", tm.Proto.String(),
			"trigger", fmt.Sprintf("%s -> %s proto %d", f.src, f.dst, f.proto))
	}
	d.emit(ipsec.Event{
		Kind: ipsec.EventAcquire, Time: now, Policy: pol.Key(), Trigger: f.selector(),
		SA: ipsec.SAKey{Dst: tm.Dst, Proto: tm.Proto}, Src: tm.Src,
	})
}

// dropAcquire forgets a pending acquire. Called with acqMu held.
func (d *Dataplane) dropAcquire(k acqKey, e *acqEntry) {
	delete(d.acq, k)
	for _, o := range e.outs {
		if m := d.acqByOut[o]; m != nil {
			delete(m, k)
			if len(m) == 0 {
				delete(d.acqByOut, o)
			}
		}
	}
	d.acqBytes -= e.bytes
}

// flushAcquires sends the packets of the pending acquires that the new
// outbound SA for template o completes: a look-up by template, not a scan
// of every pending acquire.
func (d *Dataplane) flushAcquires(o outKey) {
	var ready [][]byte
	d.acqMu.Lock()
	for k := range d.acqByOut[o] {
		e := d.acq[k]
		complete := true
		for _, need := range e.outs {
			if _, ok := d.sad.out.get(need); !ok {
				complete = false
				break
			}
		}
		if complete {
			ready = append(ready, e.queue...)
			d.dropAcquire(k, e)
		}
	}
	d.acqMu.Unlock()
	for _, pkt := range ready {
		buf := make([]byte, bufSize)
		n := copy(buf[headroom:headroom+maxPacket], pkt)
		d.outbound(buf, headroom, headroom+n, nil)
	}
}

package ike

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"time"

	"github.com/spiagent/spiagent/ike/suite"
	"github.com/spiagent/spiagent/ike/wire"
)

// Informational exchanges (RFC 2409 §5.7): HDR*, HASH(1), N/D with
// HASH(1) = prf(SKEYID_a, M-ID | N/D) and a fresh IV per message.

func (sa *ikeSA) heard(now time.Time) {
	sa.lastHeard = now
	sa.dpdOutstanding = 0
}

// sendInfo sends one protected Informational message with one payload.
func (e *Engine) sendInfo(now time.Time, sa *ikeSA, t wire.PayloadType, body []byte) {
	var msgID uint32
	for msgID == 0 || sa.exchanges[msgID] != nil {
		msgID = e.randU32()
	}
	b := sa.hashed([][]byte{msgIDBytes(msgID)}, func(b *wire.Builder) { b.Add(t, body) })
	iv := suite.Phase2IV(sa.pol.Hash, sa.pol.Cipher, sa.iv, msgID)
	msg, _ := sa.seal(sa.header(wire.ExchangeInformational, msgID), b, iv)
	if t == wire.PayloadNotify {
		e.ctr.NotifiesOut++
	}
	e.send(sa.local, sa.remote, msg)
}

func (e *Engine) sendNotify(now time.Time, sa *ikeSA, p wire.ProtocolID, spi []byte, typ uint16) {
	n := wire.Notify{DOI: wire.DOIIPsec, Protocol: p, Type: typ, SPI: spi}
	e.sendInfo(now, sa, wire.PayloadNotify, n.Encode())
}

func (sa *ikeSA) cookieSPI() []byte { return append(append([]byte{}, sa.ck.i[:]...), sa.ck.r[:]...) }

func (e *Engine) sendDeleteIKE(now time.Time, sa *ikeSA) {
	if sa.deleted || sa.state != stateEstablished {
		return
	}
	d := wire.Delete{DOI: wire.DOIIPsec, Protocol: wire.ProtoISAKMP, SPISize: 16, SPIs: [][]byte{sa.cookieSPI()}}
	e.sendInfo(now, sa, wire.PayloadDelete, d.Encode())
	e.ctr.DeletesOut++
}

// unauthenticated counts (and reports) notifications we cannot trust.
func (e *Engine) unauthenticated(now time.Time, p Packet, h wire.Header, data []byte) {
	n := 0
	if h.Flags&wire.FlagEncryption == 0 {
		if ps, _, err := wire.ParsePayloads(h.Next, data[wire.HeaderLen:]); err == nil {
			for _, x := range ps {
				if x.Type != wire.PayloadNotify && x.Type != wire.PayloadDelete {
					continue
				}
				n++
				ev := Event{Kind: EventNotify, Time: now, Local: p.Local.Addr(), Remote: p.Remote.Addr()}
				if x.Type == wire.PayloadDelete {
					ev.Kind = EventDelete
				} else if nt, err := wire.DecodeNotify(x.Body); err == nil {
					ev.NotifyType, ev.Proto = nt.Type, protoFromWire(nt.Protocol)
					if len(nt.SPI) == 4 {
						ev.SPI = binary.BigEndian.Uint32(nt.SPI)
					}
				}
				e.event(ev)
			}
		}
	}
	if n == 0 {
		n = 1
		e.event(Event{Kind: EventNotify, Time: now, Local: p.Local.Addr(), Remote: p.Remote.Addr(), Reason: "unreadable"})
	}
	e.ctr.UnauthNotifies += uint64(n)
	e.cfg.Log.Info("ike: unauthenticated informational ignored", "peer", p.Remote)
}

func (e *Engine) handleInfo(now time.Time, p Packet, h wire.Header, data []byte) {
	sa := e.sas[cookies{h.ICookie, h.RCookie}]
	if sa == nil || sa.deleted || sa.state != stateEstablished || h.Flags&wire.FlagEncryption == 0 || h.MessageID == 0 {
		e.unauthenticated(now, p, h, data)
		return
	}
	iv := suite.Phase2IV(sa.pol.Hash, sa.pol.Cipher, sa.iv, h.MessageID)
	chain, ps, end, _, err := sa.open(h, data, iv)
	if err != nil || !sa.checkHash(chain, ps, end, msgIDBytes(h.MessageID)) {
		e.ctr.Malformed++
		e.unauthenticated(now, p, h, data)
		return
	}
	sa.heard(now)
	for _, x := range ps[1:] {
		switch x.Type {
		case wire.PayloadNotify:
			if n, err := wire.DecodeNotify(x.Body); err == nil {
				e.ctr.NotifiesIn++
				e.notify(now, sa, n)
			} else {
				e.ctr.Malformed++
			}
		case wire.PayloadDelete:
			if d, err := wire.DecodeDelete(x.Body); err == nil {
				e.ctr.DeletesIn++
				e.peerDelete(now, sa, d)
			} else {
				e.ctr.Malformed++
			}
		}
		if sa.deleted {
			return
		}
	}
}

func (e *Engine) notify(now time.Time, sa *ikeSA, n wire.Notify) {
	ev := Event{Kind: EventNotify, Time: now, Local: sa.local.Addr(), Remote: sa.remote.Addr(),
		NotifyType: n.Type, Proto: protoFromWire(n.Protocol), Authenticated: true}
	if len(n.SPI) == 4 {
		ev.SPI = binary.BigEndian.Uint32(n.SPI)
	}
	switch n.Type {
	case wire.NotifyRUThere:
		if bytes.Equal(n.SPI, sa.cookieSPI()) && len(n.Data) == 4 {
			e.sendNotifyData(now, sa, wire.NotifyRUThereAck, n.Data)
		}
		return // DPD is not an event
	case wire.NotifyRUThereAck:
		if len(n.Data) == 4 && binary.BigEndian.Uint32(n.Data) == sa.dpdSeq {
			e.ctr.DPDAcks++
		}
		return
	case wire.NotifyInvalidSPI:
		if c := e.byOut[outKey{sa.remote.Addr(), ev.Proto, ev.SPI}]; c != nil && len(n.SPI) == 4 {
			e.cfg.Log.Info("ike: INVALID-SPI from peer, deleting SA", "peer", sa.remote, "proto", ev.Proto, "spi", hex32(ev.SPI))
			e.removeChild(c, ReasonInvalidSPI)
		}
	case wire.NotifyInitialContact:
		e.initialContact(now, sa)
		return
	case wire.NotifyNoProposalChosen, wire.NotifyInvalidID:
		// The peer refused our Quick Mode: fail it now rather than
		// retransmitting until the timeout.
		for _, x := range sa.exchanges {
			if x.initiator && !x.done {
				e.endExchange(now, x, "peer refused with notify "+strconv.Itoa(int(n.Type)))
			}
		}
	}
	e.event(ev)
}

func (e *Engine) sendNotifyData(now time.Time, sa *ikeSA, typ uint16, data []byte) {
	n := wire.Notify{DOI: wire.DOIIPsec, Protocol: wire.ProtoISAKMP, Type: typ, SPI: sa.cookieSPI(), Data: data}
	e.sendInfo(now, sa, wire.PayloadNotify, n.Encode())
}

func (e *Engine) peerDelete(now time.Time, sa *ikeSA, d wire.Delete) {
	for _, s := range d.SPIs {
		ev := Event{Kind: EventDelete, Time: now, Local: sa.local.Addr(), Remote: sa.remote.Addr(), Proto: protoFromWire(d.Protocol), Authenticated: true}
		switch d.Protocol {
		case wire.ProtoISAKMP:
			if len(s) != 16 {
				continue
			}
			var ck cookies
			copy(ck.i[:], s[:8])
			copy(ck.r[:], s[8:])
			if o := e.sas[ck]; o != nil && o.remote.Addr() == sa.remote.Addr() {
				e.event(ev)
				pending := ourQuickModes(o)
				e.removeIKE(now, o, "peer delete")
				e.restartQuick(now, pending)
			}
		case wire.ProtoESP, wire.ProtoAH:
			if len(s) != 4 {
				continue
			}
			ev.SPI = binary.BigEndian.Uint32(s)
			e.event(ev)
			if c := e.byOut[outKey{sa.remote.Addr(), ev.Proto, ev.SPI}]; c != nil {
				e.removeChild(c, ReasonPeerDelete)
			}
		}
	}
}

// ourQuickModes detaches the negotiations of the Quick Modes we started on
// sa that have not completed, so that removing sa does not count them as
// failed.
func ourQuickModes(sa *ikeSA) []*neg {
	var out []*neg
	for _, x := range sa.exchanges {
		if x.initiator && !x.done && x.neg != nil && x.neg.state == negActive {
			out = append(out, x.neg)
			x.neg = nil
		}
	}
	return out
}

// restartQuick queues negotiations again (a new Main Mode first) after the
// peer deleted the ISAKMP SA their Quick Modes were on: they were asked for
// (a dataplane acquire, a rekey) and still are. The kernel raises one
// acquire per larval state (net.core.xfrm_acq_expires, 30 s), so giving up
// here would leave the traffic dropped that long. A policy that went away
// meanwhile is dropped when its turn comes (admission.go).
func (e *Engine) restartQuick(now time.Time, ns []*neg) {
	for _, n := range ns {
		n.state = negIdle
		if err := e.enqueue(now, n); err != nil {
			e.cfg.Log.Info("ike: cannot restart quick mode after the peer deleted the ISAKMP SA", "crypto_map", n.tag, "err", err)
		}
	}
}

// DPD (RFC 3706).

func (e *Engine) sendRUThere(now time.Time, sa *ikeSA) {
	if sa.dpdSeq == 0 {
		sa.dpdSeq = e.randU32() & 0x7fffffff
	}
	sa.dpdSeq++
	sa.dpdOutstanding++
	e.ctr.DPDSent++
	e.sendNotifyData(now, sa, wire.NotifyRUThere, binary.BigEndian.AppendUint32(nil, sa.dpdSeq))
}

func (e *Engine) armDPD(now time.Time, sa *ikeSA) {
	sa.dpdT = e.after(now.Add(e.cfg.DPDInterval), func(now time.Time) {
		if sa.deleted {
			return
		}
		if now.Sub(sa.lastHeard) >= e.cfg.DPDInterval {
			if sa.dpdOutstanding >= e.cfg.DPDRetries {
				e.deadPeer(now, sa)
				return
			}
			e.sendRUThere(now, sa)
		}
		e.armDPD(now, sa)
	})
}

func (e *Engine) deadPeer(now time.Time, sa *ikeSA) {
	a := sa.remote.Addr()
	e.event(Event{Kind: EventDPDDead, Time: now, Local: sa.local.Addr(), Remote: a, IKE: sa.info(now)})
	e.cfg.Log.Warn("ike: peer dead (DPD)", "peer", a)
	if p := e.peers[a]; p != nil {
		for _, c := range p.children {
			e.removeChild(c, ReasonDPD)
		}
		for o := range p.ikes {
			e.removeIKE(now, o, "dpd")
		}
	}
}

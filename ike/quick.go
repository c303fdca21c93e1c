package ike

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike/suite"
	"github.com/spiagent/spiagent/ike/wire"
)

// Quick Mode (RFC 2409 §5.5):
//
//	I: HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr] [, NAT-OAi, NAT-OAr]
//	R: HDR*, HASH(2), SA, Nr [, KE] [, IDci, IDcr] [, NAT-OAi, NAT-OAr]
//	I: HDR*, HASH(3)

// exchange is one Quick Mode exchange.
type exchange struct {
	msgID     uint32
	initiator bool
	sa        *ikeSA
	pol       *ChildPolicy
	ts        [2]Selector // local, remote
	iv        []byte
	ni, nr    []byte
	dh        *suite.DHKey
	gqm       []byte
	inSPI     map[alg.Protocol]uint32
	outSPI    map[alg.Protocol]uint32
	offered   []Transform
	chosen    Transform
	wireReply []wire.Proposal
	group     alg.Group
	life      time.Duration
	lifeKB    uint64
	done      bool
	childID   uint64 // set when a responder's inbound SAs were prepared
	rt        *retx
	lastIn    []byte
	lastOut   []byte
	timeout   *timer
	neg       *neg // the tag's admitted negotiation (initiator), or nil
	counted   bool // in the in-negotiation gauge
}

func (x *exchange) stop() {
	x.rt.stop()
	x.timeout.stop()
}

func (e *Engine) newExchange(now time.Time, sa *ikeSA, msgID uint32, initiator bool) *exchange {
	x := &exchange{msgID: msgID, initiator: initiator, sa: sa, inSPI: map[alg.Protocol]uint32{}, outSPI: map[alg.Protocol]uint32{},
		iv: suite.Phase2IV(sa.pol.Hash, sa.pol.Cipher, sa.iv, msgID)}
	sa.exchanges[msgID] = x
	x.counted = true
	e.countExchange(initiator, +1)
	x.timeout = e.after(now.Add(e.cfg.ExchangeTimeout), func(now time.Time) { e.endExchange(now, x, "timeout") })
	return x
}

// endExchange forgets x; if it had not completed, that is a failure.
func (e *Engine) endExchange(now time.Time, x *exchange, why string) {
	x.stop()
	e.uncount(x)
	e.negDone(now, x, x.done, why)
	if x.sa.exchanges[x.msgID] == x {
		delete(x.sa.exchanges, x.msgID)
	}
	for p, spi := range x.inSPI {
		if e.byIn[spiKey{p, spi}] == nil {
			delete(e.reserved, spiKey{p, spi})
		}
	}
	if !x.done && x.childID != 0 {
		// Prepared (inbound SAs installed) but never completed.
		c := e.childOf(now, x, false)
		e.out.Delete = append(e.out.Delete, ChildDelete{ChildSA: c.withoutKeys(), Reason: ReasonLocal})
	}
	if !x.done {
		e.ctr.ChildFailed++
		tag := ""
		if x.pol != nil {
			tag = x.pol.Tag
		}
		e.event(Event{Kind: EventExchangeFailed, Time: now, Local: x.sa.local.Addr(), Remote: x.sa.remote.Addr(), Reason: "quick mode " + tag + ": " + why})
	}
}

// allocSPI reserves a fresh inbound SPI (>= 256) for proto.
func (e *Engine) allocSPI(p alg.Protocol) uint32 {
	for {
		s := e.randU32()
		k := spiKey{p, s}
		if s < 256 {
			continue
		}
		if _, used := e.byIn[k]; used {
			continue
		}
		if _, used := e.reserved[k]; used {
			continue
		}
		e.reserved[k] = struct{}{}
		return s
	}
}

// startQuick starts a Quick Mode for pol over sa, on behalf of the tag's
// admitted negotiation n (nil for InitiateNew).
func (e *Engine) startQuick(now time.Time, sa *ikeSA, pol *ChildPolicy, ts [2]Selector, n *neg) {
	var msgID uint32
	for msgID == 0 || sa.exchanges[msgID] != nil {
		msgID = e.randU32()
	}
	x := e.newExchange(now, sa, msgID, true)
	x.pol, x.ts, x.offered, x.neg = pol, ts, pol.Proposals, n
	x.life, x.lifeKB, x.group = pol.Lifetime, pol.LifetimeKB, pol.PFS
	for _, t := range pol.Proposals {
		if t.AH != alg.IntegNone && x.inSPI[alg.AH] == 0 {
			x.inSPI[alg.AH] = e.allocSPI(alg.AH)
		}
		if t.ESP != alg.CipherNone && x.inSPI[alg.ESP] == 0 {
			x.inSPI[alg.ESP] = e.allocSPI(alg.ESP)
		}
	}
	var props []wire.Proposal
	for i, t := range pol.Proposals {
		props = append(props, e.wireProps(sa, uint8(i+1), t, x.inSPI, x.group, x.life, x.lifeKB)...)
	}
	x.ni = e.random(nonceLen)
	if x.group != alg.GroupNone {
		dh, err := suite.GenerateKey(x.group, e.rand)
		if err != nil {
			e.endExchange(now, x, err.Error())
			return
		}
		x.dh = dh
	}
	b := sa.hashed([][]byte{msgIDBytes(msgID)}, func(b *wire.Builder) {
		b.Add(wire.PayloadSA, wire.SA{DOI: wire.DOIIPsec, Situation: wire.SituationIdentOnly, Proposals: props}.Encode())
		b.Add(wire.PayloadNonce, x.ni)
		if x.dh != nil {
			b.Add(wire.PayloadKE, x.dh.Public())
		}
		e.addIDs(b, sa, ts[0], ts[1])
		e.addNATOA(b, sa, pol.Proposals[0].Mode)
	})
	msg, next := sa.seal(sa.header(wire.ExchangeQuick, msgID), b, x.iv)
	x.iv = next
	x.rt = &retx{local: sa.local, remote: sa.remote, data: msg}
	e.request(now, x.rt, func(now time.Time) { e.endExchange(now, x, "no answer to QM1") })
}

func (e *Engine) addIDs(b *wire.Builder, sa *ikeSA, ci, cr Selector) {
	idi := wire.IDFromPrefix(ci.Prefix, ci.Proto, ci.Port)
	idr := wire.IDFromPrefix(cr.Prefix, cr.Proto, cr.Port)
	b.Add(wire.PayloadID, idi.Encode())
	b.Add(wire.PayloadID, idr.Encode())
}

// addNATOA adds NAT-OAi/NAT-OAr in transport mode behind a NAT (RFC 3947 §5.2).
func (e *Engine) addNATOA(b *wire.Builder, sa *ikeSA, m alg.Mode) {
	if m != alg.Transport || !sa.natt() {
		return
	}
	t := wire.PayloadNATOA
	if sa.nattVID == wire.NATTDraft {
		t = wire.PayloadNATOADraft
	}
	ia, ra := sa.local.Addr(), sa.remote.Addr()
	if !sa.initiator {
		ia, ra = ra, ia
	}
	oi, or := wire.NATOA{Addr: ia}, wire.NATOA{Addr: ra}
	b.Add(t, oi.Encode())
	b.Add(t, or.Encode())
}

func selectorFromID(b []byte) (Selector, bool) {
	id, err := wire.DecodeID(b)
	if err != nil {
		return Selector{}, false
	}
	p, err := id.Prefix()
	if err != nil {
		return Selector{}, false
	}
	return Selector{Prefix: p, Proto: id.Protocol, Port: id.Port}, true
}

func hostSel(a netip.Addr) Selector { return Selector{Prefix: netip.PrefixFrom(a, a.BitLen())} }

func (e *Engine) handleQuick(now time.Time, p Packet, h wire.Header, data []byte) {
	sa := e.sas[cookies{h.ICookie, h.RCookie}]
	if sa == nil || sa.deleted || sa.state != stateEstablished || h.MessageID == 0 {
		e.ctr.Unknown++
		return
	}
	x := sa.exchanges[h.MessageID]
	if x != nil && x.lastIn != nil && string(x.lastIn) == string(data) {
		e.ctr.Duplicates++
		if x.lastOut != nil {
			e.send(sa.local, sa.remote, x.lastOut)
		}
		return
	}
	var err error
	switch {
	case x == nil:
		err = e.respQM1(now, sa, p, h, data)
	case x.done:
		e.ctr.Unknown++
		return
	case x.initiator:
		err = e.initQM2(now, x, h, data)
	default:
		err = e.respQM3(now, x, h, data)
	}
	if err != nil {
		e.ctr.Malformed++
		e.cfg.Log.Debug("ike: quick mode message dropped", "peer", p.Remote, "err", err)
	}
}

type qmPayloads struct {
	sa      wire.SA
	nonce   []byte
	ke      []byte
	ids     [][]byte
	lifeNtf []wire.Notify
}

func readQM(ps []wire.RawPayload) (qmPayloads, error) {
	var q qmPayloads
	var saBody []byte
	for _, x := range ps[1:] {
		switch x.Type {
		case wire.PayloadSA:
			saBody = x.Body
		case wire.PayloadNonce:
			q.nonce = x.Body
		case wire.PayloadKE:
			q.ke = x.Body
		case wire.PayloadID:
			q.ids = append(q.ids, x.Body)
		case wire.PayloadNotify:
			if n, err := wire.DecodeNotify(x.Body); err == nil && n.Type == wire.NotifyResponderLifetime {
				q.lifeNtf = append(q.lifeNtf, n)
			}
		}
	}
	if saBody == nil || len(q.nonce) < 8 || len(q.nonce) > 256 || (len(q.ids) != 0 && len(q.ids) != 2) {
		return q, ikeError("ike: quick mode needs SA, nonce and 0 or 2 IDs")
	}
	s, err := wire.DecodeSA(saBody)
	q.sa = s
	return q, err
}

func (e *Engine) respQM1(now time.Time, sa *ikeSA, p Packet, h wire.Header, data []byte) error {
	iv := suite.Phase2IV(sa.pol.Hash, sa.pol.Cipher, sa.iv, h.MessageID)
	chain, ps, end, next, err := sa.open(h, data, iv)
	if err != nil {
		return err
	}
	if !sa.checkHash(chain, ps, end, msgIDBytes(h.MessageID)) {
		return errBadHash
	}
	sa.heard(now)
	q, err := readQM(ps)
	if err != nil {
		return err
	}
	// The IDs are the initiator's: ci its side, cr ours (host to host
	// when absent).
	ci, cr := hostSel(sa.remote.Addr()), hostSel(sa.local.Addr())
	if len(q.ids) == 2 {
		var ok1, ok2 bool
		ci, ok1 = selectorFromID(q.ids[0])
		cr, ok2 = selectorFromID(q.ids[1])
		if !ok1 || !ok2 {
			return ikeError("ike: bad quick mode IDs")
		}
	}
	if e.overLimit() {
		return nil // the peer retransmits
	}
	x := e.newExchange(now, sa, h.MessageID, false)
	x.iv = next
	x.ts = [2]Selector{cr, ci}
	x.ni = append([]byte(nil), q.nonce...)
	c, nt := chooseProposal(sa, e.polsByPeer[sa.remote.Addr()], ci, cr, q.sa.Proposals, q.ke)
	if nt != 0 {
		e.refuseQM(now, x, nt)
		return nil
	}
	reply := e.accept(x, c)
	x.nr = e.random(nonceLen)
	if x.group != alg.GroupNone {
		dh, err := suite.GenerateKey(x.group, e.rand)
		if err != nil {
			return err
		}
		if x.gqm, err = dh.Shared(q.ke); err != nil {
			x.done = true
			e.endExchange(now, x, "bad KE")
			return err
		}
		x.dh = dh
	}
	b := sa.hashed([][]byte{msgIDBytes(h.MessageID), x.ni}, func(b *wire.Builder) {
		b.Add(wire.PayloadSA, wire.SA{DOI: wire.DOIIPsec, Situation: wire.SituationIdentOnly, Proposals: reply}.Encode())
		b.Add(wire.PayloadNonce, x.nr)
		if x.dh != nil {
			b.Add(wire.PayloadKE, x.dh.Public())
		}
		if len(q.ids) == 2 {
			b.Add(wire.PayloadID, q.ids[0])
			b.Add(wire.PayloadID, q.ids[1])
		}
		e.addNATOA(b, sa, x.chosen.Mode)
	})
	msg, nextIV := sa.seal(sa.header(wire.ExchangeQuick, h.MessageID), b, x.iv)
	x.iv = nextIV
	x.lastIn = append([]byte(nil), data...)
	x.lastOut = msg
	x.rt = &retx{local: sa.local, remote: sa.remote, data: msg}
	e.request(now, x.rt, func(now time.Time) { e.endExchange(now, x, "no QM3") })
	e.prepareChild(now, x)
	return nil
}

// accept takes the choice into the responder's exchange: policy,
// transform, PFS group, the initiator's SPIs and lifetimes, and fresh
// inbound SPIs of ours. It returns the reply proposals with our SPIs.
func (e *Engine) accept(x *exchange, c qmChoice) []wire.Proposal {
	x.pol, x.chosen, x.group = c.pol, c.t, c.group
	x.life, x.lifeKB = x.pol.Lifetime, x.pol.LifetimeKB
	for _, r := range c.reply {
		x.outSPI[protoFromWire(r.Protocol)] = binary.BigEndian.Uint32(r.SPI)
		x.shortenLife(readP2(&r.Transforms[0]))
	}
	for i := range c.reply {
		pr := protoFromWire(c.reply[i].Protocol)
		x.inSPI[pr] = e.allocSPI(pr)
		c.reply[i].SPI = binary.BigEndian.AppendUint32(nil, x.inSPI[pr])
	}
	return c.reply
}

// refuseQM ends a responder exchange that found nothing to accept and
// tells the peer why (notify nt).
func (e *Engine) refuseQM(now time.Time, x *exchange, nt uint16) {
	sa := x.sa
	x.done = true // not a failure of ours to report twice
	e.endExchange(now, x, "refused")
	e.ctr.NoProposal++
	e.cfg.Log.Info("ike: quick mode refused", "peer", sa.remote, "local_ts", x.ts[0], "remote_ts", x.ts[1], "notify", nt)
	e.sendNotify(now, sa, wire.ProtoISAKMP, nil, nt)
	e.event(Event{Kind: EventExchangeFailed, Time: now, Local: sa.local.Addr(), Remote: sa.remote.Addr(), NotifyType: nt, Reason: "quick mode refused"})
}

// qmChoice is the responder's pick among an initiator's Quick Mode
// proposals: our policy and transform, the PFS group, and the reply (the
// matching proposals with one transform each, SPIs still the initiator's).
type qmChoice struct {
	pol   *ChildPolicy
	t     Transform
	group alg.Group
	reply []wire.Proposal
}

// chooseProposal picks what to answer a QM1 with: the first of our policies
// for the peer (pols, in order) whose selectors contain the initiator's IDs
// (ci its own side, cr ours), and within it the first of the peer's
// proposals that one of the policy's transforms matches, with the PFS group
// the KE payload (ke, nil without PFS) implies. On refusal it returns the
// notification to send: INVALID-ID-INFORMATION when no policy covers the
// IDs, else NO-PROPOSAL-CHOSEN.
func chooseProposal(sa *ikeSA, pols []*ChildPolicy, ci, cr Selector, props []wire.Proposal, ke []byte) (qmChoice, uint16) {
	idOK := false
	for _, pol := range pols {
		if !pol.RemoteTS.Contains(ci) || !pol.LocalTS.Contains(cr) {
			continue
		}
		idOK = true
		if pol.PFS != alg.GroupNone && ke == nil {
			continue
		}
		for _, grp := range proposalGroups(props) {
			g := alg.GroupNone
			if ke != nil {
				if a := readP2(&grp[0].Transforms[0]); a.group != 0 {
					g = alg.Group(a.group)
				}
				if g == alg.GroupNone || (pol.PFS != alg.GroupNone && g != pol.PFS) || suite.PublicLen(g) != len(ke) {
					continue
				}
			}
			for _, t := range pol.Proposals {
				if r, ok := matchGroup(sa, t, grp, g); ok {
					return qmChoice{pol: pol, t: t, group: g, reply: r}, 0
				}
			}
		}
	}
	if !idOK {
		return qmChoice{}, wire.NotifyInvalidID
	}
	return qmChoice{}, wire.NotifyNoProposalChosen
}

func (e *Engine) initQM2(now time.Time, x *exchange, h wire.Header, data []byte) error {
	sa := x.sa
	chain, ps, end, next, err := sa.open(h, data, x.iv)
	if err != nil {
		return err
	}
	if !sa.checkHash(chain, ps, end, msgIDBytes(x.msgID), x.ni) {
		return errBadHash
	}
	sa.heard(now)
	q, err := readQM(ps)
	if err != nil {
		return err
	}
	grps := proposalGroups(q.sa.Proposals)
	if len(grps) != 1 || int(grps[0][0].Number) < 1 || int(grps[0][0].Number) > len(x.offered) {
		return ikeError("ike: QM2 must choose one of our proposals")
	}
	t := x.offered[grps[0][0].Number-1]
	if _, ok := matchGroup(sa, t, grps[0], x.group); !ok {
		return ikeError("ike: QM2 chose something we did not offer")
	}
	if (x.dh != nil) != (q.ke != nil) {
		return ikeError("ike: QM2 PFS mismatch")
	}
	if x.dh != nil {
		if x.gqm, err = x.dh.Shared(q.ke); err != nil {
			return err
		}
	}
	for _, r := range grps[0] {
		x.outSPI[protoFromWire(r.Protocol)] = binary.BigEndian.Uint32(r.SPI)
		x.shortenLife(readP2(&r.Transforms[0]))
	}
	for _, n := range q.lifeNtf {
		applyResponderLifetime(x, n)
	}
	for p := range x.inSPI {
		if x.outSPI[p] == 0 {
			delete(e.reserved, spiKey{p, x.inSPI[p]})
			delete(x.inSPI, p)
		}
	}
	x.chosen = t
	x.nr = append([]byte(nil), q.nonce...)
	var b wire.Builder
	b.Add(wire.PayloadHash, suite.PRF(sa.pol.Hash, sa.keys.A, []byte{0}, msgIDBytes(x.msgID), x.ni, x.nr))
	msg, _ := sa.seal(sa.header(wire.ExchangeQuick, x.msgID), &b, next)
	x.rt.stop()
	e.send(sa.local, sa.remote, msg)
	x.lastIn, x.lastOut = append([]byte(nil), data...), msg
	e.complete(now, x)
	return nil
}

func applyResponderLifetime(x *exchange, n wire.Notify) {
	attrs, err := wire.DecodeAttrs(n.Data)
	if err != nil {
		return
	}
	t := wire.Transform{Attrs: attrs}
	x.shortenLife(readP2(&t))
}

// shortenLife applies the peer's lifetime attributes: the shorter of its
// and ours wins (RFC 2407 §4.5.4).
func (x *exchange) shortenLife(a p2) {
	if a.lifeSecs != 0 && time.Duration(a.lifeSecs)*time.Second < x.life {
		x.life = time.Duration(a.lifeSecs) * time.Second
	}
	if a.lifeKB != 0 && (x.lifeKB == 0 || a.lifeKB < x.lifeKB) {
		x.lifeKB = a.lifeKB
	}
}

func (e *Engine) respQM3(now time.Time, x *exchange, h wire.Header, data []byte) error {
	sa := x.sa
	_, ps, _, _, err := sa.open(h, data, x.iv)
	if err != nil {
		return err
	}
	if len(ps) == 0 || ps[0].Type != wire.PayloadHash ||
		!hmacEqual(ps[0].Body, suite.PRF(sa.pol.Hash, sa.keys.A, []byte{0}, msgIDBytes(x.msgID), x.ni, x.nr)) {
		return errBadHash
	}
	sa.heard(now)
	x.rt.stop()
	x.lastIn, x.lastOut = append([]byte(nil), data...), nil
	e.complete(now, x)
	return nil
}

// complete derives the keys, installs the child SA and keeps the exchange
// a while to answer retransmissions.
func (e *Engine) complete(now time.Time, x *exchange) {
	x.done = true
	e.uncount(x)
	e.negDone(now, x, true, "")
	x.timeout.stop()
	x.timeout = e.after(now.Add(e.cfg.ExchangeTimeout), func(now time.Time) { e.endExchange(now, x, "done") })
	e.addChild(now, x)
}

// uncount takes a finished exchange out of the in-negotiation gauge.
func (e *Engine) uncount(x *exchange) {
	if x.counted {
		x.counted = false
		e.countExchange(x.initiator, -1)
	}
}

package ike

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike/suite"
	"github.com/spiagent/spiagent/ike/wire"
)

// Main Mode with pre-shared keys (RFC 2409 §5, §5.4):
//
//	I: HDR, SA                         R: HDR, SA
//	I: HDR, KE, Ni [, NAT-D, NAT-D]    R: HDR, KE, Nr [, NAT-D, NAT-D]
//	I: HDR*, IDii, HASH_I [, N(IC)]    R: HDR*, IDir, HASH_R [, N(IC)]

func (e *Engine) newSA(now time.Time, local, remote netip.AddrPort, initiator bool) *ikeSA {
	e.nextID++
	sa := &ikeSA{id: e.nextID, initiator: initiator, local: local, remote: remote, remote0: remote,
		created: now, lastHeard: now, exchanges: map[uint32]*exchange{}, trace: e.cfg.Trace}
	e.halfOpen++
	e.countExchange(initiator, +1)
	e.peer(remote.Addr()).ikes[sa] = struct{}{}
	sa.timeout = e.after(now.Add(e.cfg.ExchangeTimeout), func(now time.Time) {
		if sa.state != stateEstablished {
			e.removeIKE(now, sa, "timeout")
		}
	})
	return sa
}

func (e *Engine) startMain(now time.Time, local, peerAddr netip.Addr) (*ikeSA, error) {
	if p := e.peers[peerAddr]; p != nil && len(p.ikes) >= e.cfg.MaxSAsPerPeer {
		e.ctr.PerPeerDropped++
		return nil, ikeError("ike: too many ISAKMP SAs with " + peerAddr.String())
	}
	if e.halfOpen >= e.cfg.MaxHalfOpen {
		e.ctr.HalfOpenDropped++
		return nil, ikeError("ike: too many half-open ISAKMP SAs")
	}
	psk, _ := e.cfg.key(peerAddr)
	sa := e.newSA(now, netip.AddrPortFrom(local, e.cfg.Port), netip.AddrPortFrom(peerAddr, e.cfg.Port), true)
	sa.psk = psk
	for {
		copy(sa.ck.i[:], e.random(8))
		if _, dup := e.initByI[sa.ck.i]; !dup && sa.ck.i != [8]byte{} {
			break
		}
	}
	e.initByI[sa.ck.i] = sa
	sa.offered = e.cfg.Policies
	prop := wire.Proposal{Number: 1, Protocol: wire.ProtoISAKMP}
	for i, p := range sa.offered {
		prop.Transforms = append(prop.Transforms, p1Transform(uint8(i+1), p))
	}
	body := wire.SA{DOI: wire.DOIIPsec, Situation: wire.SituationIdentOnly, Proposals: []wire.Proposal{prop}}.Encode()
	sa.saiB = body
	var b wire.Builder
	b.Add(wire.PayloadSA, body)
	e.addVIDs(&b)
	sa.state = stateMM1Sent
	sa.rt = &retx{local: sa.local, remote: sa.remote, data: b.Message(sa.header(wire.ExchangeMain, 0))}
	e.request(now, sa.rt, func(now time.Time) { e.removeIKE(now, sa, "no answer to MM1") })
	e.cfg.Log.Info("ike: initiating main mode", "peer", peerAddr)
	return sa, nil
}

func (e *Engine) addVIDs(b *wire.Builder) {
	if e.cfg.NATT != NATTOff {
		b.Add(wire.PayloadVendor, wire.VendorNATTRFC3947)
		b.Add(wire.PayloadVendor, wire.VendorNATTDraft02N)
		b.Add(wire.PayloadVendor, wire.VendorNATTDraft02)
	}
	b.Add(wire.PayloadVendor, wire.VendorDPD)
}

func p1Transform(n uint8, p Policy) wire.Transform {
	id, kb := suite.P1ID(p.Cipher)
	attrs := []wire.Attr{{Type: wire.AttrEncryption, Value: uint64(id)}}
	if kb != 0 {
		attrs = append(attrs, wire.Attr{Type: wire.AttrKeyLength, Value: uint64(kb)})
	}
	attrs = append(attrs,
		wire.Attr{Type: wire.AttrHash, Value: uint64(suite.HashP1ID(p.Hash))},
		wire.Attr{Type: wire.AttrAuthMethod, Value: wire.AuthPSK},
		wire.Attr{Type: wire.AttrGroup, Value: uint64(p.Group)},
		wire.Attr{Type: wire.AttrLifeType, Value: wire.LifeSeconds},
		wire.Attr{Type: wire.AttrLifeDur, Value: uint64(p.Lifetime / time.Second)})
	return wire.Transform{Number: n, ID: wire.TransformKeyIKE, Attrs: attrs}
}

// p1Policy reads a phase 1 transform; ok is false for anything but PSK
// with supported algorithms.
func p1Policy(t wire.Transform) (Policy, bool) {
	if t.ID != wire.TransformKeyIKE {
		return Policy{}, false
	}
	var p Policy
	var enc, kb, hash, auth, grp uint64
	life := uint64(0)
	lifeType := uint64(0)
	for _, a := range t.Attrs {
		switch a.Type {
		case wire.AttrEncryption:
			enc = a.Value
		case wire.AttrKeyLength:
			kb = a.Value
		case wire.AttrHash:
			hash = a.Value
		case wire.AttrAuthMethod:
			auth = a.Value
		case wire.AttrGroup:
			grp = a.Value
		case wire.AttrLifeType:
			lifeType = a.Value
		case wire.AttrLifeDur:
			if lifeType == wire.LifeSeconds {
				life = a.Value
			}
		}
	}
	var ok1, ok2 bool
	p.Cipher, ok1 = suite.CipherFromP1(enc, kb)
	p.Hash, ok2 = suite.HashFromP1(hash)
	p.Group = alg.Group(grp)
	if !ok1 || !ok2 || auth != wire.AuthPSK || grp > 0xffff || !p.Group.Valid() {
		return Policy{}, false
	}
	if life > 0 && life < 1<<32 {
		p.Lifetime = time.Duration(life) * time.Second
	}
	return p, true
}

func samePolicy(a, b Policy) bool {
	return a.Cipher == b.Cipher && a.Hash == b.Hash && a.Group == b.Group
}

func (e *Engine) handleMain(now time.Time, p Packet, h wire.Header, data []byte) {
	if h.RCookie == ([8]byte{}) {
		if sa := e.respHalf[respKey{h.ICookie, p.Remote}]; sa != nil {
			if !e.duplicate(sa, p, data) {
				e.ctr.Unknown++
			}
			return
		}
		e.respondMM1(now, p, h, data)
		return
	}
	sa := e.sas[cookies{h.ICookie, h.RCookie}]
	if sa == nil {
		if s := e.initByI[h.ICookie]; s != nil && s.state == stateMM1Sent {
			sa = s
		}
	}
	if sa == nil || sa.deleted {
		e.ctr.Unknown++
		return
	}
	if e.duplicate(sa, p, data) {
		return
	}
	if sa.lastResp != nil && bytes.Equal(sa.lastResp, data) {
		e.ctr.Duplicates++ // a response we already processed (our retransmission crossed it)
		return
	}
	var err error
	switch sa.state {
	case stateMM1Sent:
		err = e.initMM2(now, sa, p, h, data)
	case stateMM3Sent:
		err = e.initMM4(now, sa, p, h, data)
	case stateMM5Sent:
		err = e.initMM6(now, sa, p, h, data)
	case stateMM2Sent:
		err = e.respMM3(now, sa, p, h, data)
	case stateMM4Sent:
		err = e.respMM5(now, sa, p, h, data)
	default:
		e.ctr.Unknown++
		return
	}
	if err != nil {
		e.ctr.Malformed++
		e.cfg.Log.Debug("ike: main mode message dropped", "peer", p.Remote, "err", err)
	} else if sa.initiator {
		sa.lastResp = append(sa.lastResp[:0], data...)
	}
}

func plainPayloads(h wire.Header, data []byte) ([]wire.RawPayload, error) {
	if h.Flags&wire.FlagEncryption != 0 {
		return nil, ikeError("ike: unexpected encryption")
	}
	ps, _, err := wire.ParsePayloads(h.Next, data[wire.HeaderLen:])
	return ps, err
}

// vendorIDs records what the peer announced.
func (sa *ikeSA) vendorIDs(ps []wire.RawPayload) {
	for _, v := range ps {
		if v.Type != wire.PayloadVendor {
			continue
		}
		if n := wire.VendorNATT(v.Body); n > sa.nattVID {
			sa.nattVID = n
		}
		if wire.IsDPD(v.Body) {
			sa.dpdPeer = true
		}
	}
}

func (e *Engine) respondMM1(now time.Time, p Packet, h wire.Header, data []byte) {
	ps, err := plainPayloads(h, data)
	if err != nil || h.MessageID != 0 || len(ps) == 0 || ps[0].Type != wire.PayloadSA {
		e.ctr.Malformed++
		return
	}
	sa0, err := wire.DecodeSA(ps[0].Body)
	if err != nil || len(sa0.Proposals) != 1 || sa0.Proposals[0].Protocol != wire.ProtoISAKMP {
		e.ctr.Malformed++
		return
	}
	psk, ok := e.cfg.key(p.Remote.Addr())
	if !ok {
		e.ctr.Unknown++
		e.cfg.Log.Info("ike: main mode from peer without key", "peer", p.Remote)
		return
	}
	if e.overLimit() {
		return // the peer retransmits
	}
	if pp := e.peers[p.Remote.Addr()]; pp != nil && len(pp.ikes) >= e.cfg.MaxSAsPerPeer {
		e.ctr.PerPeerDropped++
		return
	}
	if e.halfOpen >= e.cfg.MaxHalfOpen {
		e.ctr.HalfOpenDropped++
		return
	}
	// IOS matching: the first of our policies, by priority, that equals
	// any of the initiator's transforms.
	var chosen *wire.Transform
	var pol Policy
	for _, mine := range e.cfg.Policies {
		for i := range sa0.Proposals[0].Transforms {
			t := &sa0.Proposals[0].Transforms[i]
			if theirs, ok := p1Policy(*t); ok && samePolicy(mine, theirs) {
				chosen, pol = t, mine
				if theirs.Lifetime != 0 && theirs.Lifetime < pol.Lifetime {
					pol.Lifetime = theirs.Lifetime
				}
				break
			}
		}
		if chosen != nil {
			break
		}
	}
	if chosen == nil {
		e.ctr.NoProposal++
		e.cfg.Log.Info("ike: no acceptable ISAKMP policy", "peer", p.Remote)
		return
	}
	sa := e.newSA(now, p.Local, p.Remote, false)
	sa.psk, sa.pol, sa.saiB = psk, pol, append([]byte(nil), ps[0].Body...)
	sa.ck.i = h.ICookie
	for {
		copy(sa.ck.r[:], e.random(8))
		if _, dup := e.sas[sa.ck]; !dup && sa.ck.r != [8]byte{} {
			break
		}
	}
	sa.vendorIDs(ps)
	e.sas[sa.ck] = sa
	e.respHalf[respKey{sa.ck.i, p.Remote}] = sa
	reply := sa0.Proposals[0]
	reply.Transforms = []wire.Transform{*chosen}
	var b wire.Builder
	b.Add(wire.PayloadSA, wire.SA{DOI: wire.DOIIPsec, Situation: wire.SituationIdentOnly, Proposals: []wire.Proposal{reply}}.Encode())
	e.addVIDs(&b)
	sa.state = stateMM2Sent
	e.reply(sa, data, b.Message(sa.header(wire.ExchangeMain, 0)))
}

// reply sends a response and caches it against the request.
func (e *Engine) reply(sa *ikeSA, req, resp []byte) {
	sa.lastIn = append(sa.lastIn[:0], req...)
	sa.lastOut = resp
	e.send(sa.local, sa.remote, resp)
}

func (e *Engine) initMM2(now time.Time, sa *ikeSA, p Packet, h wire.Header, data []byte) error {
	ps, err := plainPayloads(h, data)
	if err != nil {
		return err
	}
	if len(ps) == 0 || ps[0].Type != wire.PayloadSA {
		return ikeError("ike: MM2 without SA")
	}
	s, err := wire.DecodeSA(ps[0].Body)
	if err != nil {
		return err
	}
	if len(s.Proposals) != 1 || len(s.Proposals[0].Transforms) != 1 {
		return ikeError("ike: MM2 must choose one transform")
	}
	theirs, ok := p1Policy(s.Proposals[0].Transforms[0])
	if !ok {
		return ikeError("ike: MM2 chose an unusable transform")
	}
	found := false
	for _, mine := range sa.offered {
		if samePolicy(mine, theirs) {
			sa.pol, found = mine, true
			if theirs.Lifetime != 0 && theirs.Lifetime < sa.pol.Lifetime {
				sa.pol.Lifetime = theirs.Lifetime
			}
			break
		}
	}
	if !found {
		return ikeError("ike: MM2 chose a transform we did not offer")
	}
	sa.rt.stop()
	sa.ck.r = h.RCookie
	delete(e.initByI, sa.ck.i)
	e.sas[sa.ck] = sa
	sa.vendorIDs(ps)
	sa.lastHeard = now
	return e.sendKE(now, sa, stateMM3Sent)
}

// sendKE sends MM3 (initiator) or returns the MM4 chain (responder).
func (e *Engine) keChain(sa *ikeSA) (*wire.Builder, error) {
	dh, err := suite.GenerateKey(sa.pol.Group, e.rand)
	if err != nil {
		return nil, err
	}
	sa.dh = dh
	nonce := e.random(nonceLen)
	if sa.initiator {
		sa.gxi, sa.ni = dh.Public(), nonce
	} else {
		sa.gxr, sa.nr = dh.Public(), nonce
	}
	var b wire.Builder
	b.Add(wire.PayloadKE, dh.Public())
	b.Add(wire.PayloadNonce, nonce)
	if e.cfg.NATT != NATTOff && sa.nattVID != wire.NATTNone {
		t := wire.PayloadNATD
		if sa.nattVID == wire.NATTDraft {
			t = wire.PayloadNATDDraft
		}
		b.Add(t, natd(sa, sa.remote))
		if e.cfg.NATT == NATTForce {
			b.Add(t, e.random(sa.pol.Hash.Size()))
			sa.natLocal = true
		} else {
			b.Add(t, natd(sa, sa.local))
		}
	}
	return &b, nil
}

func (e *Engine) sendKE(now time.Time, sa *ikeSA, next saState) error {
	b, err := e.keChain(sa)
	if err != nil {
		return err
	}
	sa.state = next
	sa.rt = &retx{local: sa.local, remote: sa.remote, data: b.Message(sa.header(wire.ExchangeMain, 0))}
	e.request(now, sa.rt, func(now time.Time) { e.removeIKE(now, sa, "no answer to MM3") })
	return nil
}

// natd is HASH(CKY-I | CKY-R | IP | Port) (RFC 3947 §3.2).
func natd(sa *ikeSA, ap netip.AddrPort) []byte {
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], ap.Port())
	return suite.Sum(sa.pol.Hash, sa.ck.i[:], sa.ck.r[:], ap.Addr().Unmap().AsSlice(), port[:])
}

// readKE takes the peer's KE, nonce and NAT-D payloads and derives the keys.
func (e *Engine) readKE(sa *ikeSA, p Packet, ps []wire.RawPayload) error {
	ke, nonce := wire.Find(ps, wire.PayloadKE), wire.Find(ps, wire.PayloadNonce)
	if ke == nil || nonce == nil || len(nonce.Body) < 8 || len(nonce.Body) > 256 {
		return ikeError("ike: KE and nonce required")
	}
	gxy, err := sa.dh.Shared(ke.Body)
	if err != nil {
		return err
	}
	if sa.initiator {
		sa.gxr, sa.nr = append([]byte(nil), ke.Body...), append([]byte(nil), nonce.Body...)
	} else {
		sa.gxi, sa.ni = append([]byte(nil), ke.Body...), append([]byte(nil), nonce.Body...)
	}
	var nds [][]byte
	for _, x := range ps {
		if x.Type == wire.PayloadNATD || x.Type == wire.PayloadNATDDraft {
			nds = append(nds, x.Body)
		}
	}
	if e.cfg.NATT != NATTOff && len(nds) >= 2 {
		if !bytes.Equal(nds[0], natd(sa, p.Local)) {
			sa.natLocal = true
		}
		remoteOK := false
		for _, d := range nds[1:] {
			remoteOK = remoteOK || bytes.Equal(d, natd(sa, p.Remote))
		}
		sa.natRemote = !remoteOK
	} else if len(nds) == 0 {
		sa.nattVID = wire.NATTNone
	}
	skeyid := suite.SKEYIDPSK(sa.pol.Hash, sa.psk, sa.ni, sa.nr)
	sa.keys = suite.Derive(sa.pol.Hash, sa.pol.Cipher, skeyid, gxy, sa.ck.i[:], sa.ck.r[:])
	sa.iv = suite.Phase1IV(sa.pol.Hash, sa.pol.Cipher, sa.gxi, sa.gxr)
	sa.dh = nil
	return nil
}

func (e *Engine) respMM3(now time.Time, sa *ikeSA, p Packet, h wire.Header, data []byte) error {
	ps, err := plainPayloads(h, data)
	if err != nil {
		return err
	}
	b, err := e.keChain(sa)
	if err != nil {
		return err
	}
	if err := e.readKE(sa, p, ps); err != nil {
		return err
	}
	sa.state = stateMM4Sent
	sa.lastHeard = now
	e.reply(sa, data, b.Message(sa.header(wire.ExchangeMain, 0)))
	return nil
}

func (e *Engine) initMM4(now time.Time, sa *ikeSA, p Packet, h wire.Header, data []byte) error {
	ps, err := plainPayloads(h, data)
	if err != nil {
		return err
	}
	if err := e.readKE(sa, p, ps); err != nil {
		return err
	}
	sa.rt.stop()
	sa.lastHeard = now
	if sa.natt() {
		sa.local = netip.AddrPortFrom(sa.local.Addr(), e.cfg.NATTPort)
		sa.remote = netip.AddrPortFrom(sa.remote.Addr(), e.cfg.NATTPort)
	}
	b := e.authChain(sa)
	msg, next := sa.seal(sa.header(wire.ExchangeMain, 0), b, sa.iv)
	sa.iv = next
	sa.state = stateMM5Sent
	sa.rt = &retx{local: sa.local, remote: sa.remote, data: msg}
	e.request(now, sa.rt, func(now time.Time) { e.removeIKE(now, sa, "no answer to MM5") })
	return nil
}

// idPayload is our phase 1 identity: our IP address (ports and protocol zero).
func idBody(a netip.Addr) []byte {
	id := wire.IDFromPrefix(netip.PrefixFrom(a, a.BitLen()), 0, 0)
	return id.Encode()
}

// authHash is HASH_I or HASH_R (RFC 2409 §5).
func (sa *ikeSA) authHash(forInitiator bool, idb []byte) []byte {
	if forInitiator {
		return suite.PRF(sa.pol.Hash, sa.keys.SKEYID, sa.gxi, sa.gxr, sa.ck.i[:], sa.ck.r[:], sa.saiB, idb)
	}
	return suite.PRF(sa.pol.Hash, sa.keys.SKEYID, sa.gxr, sa.gxi, sa.ck.r[:], sa.ck.i[:], sa.saiB, idb)
}

func (e *Engine) authChain(sa *ikeSA) *wire.Builder {
	idb := idBody(sa.local.Addr())
	var b wire.Builder
	b.Add(wire.PayloadID, idb)
	b.Add(wire.PayloadHash, sa.authHash(sa.initiator, idb))
	if e.noOtherSA(sa) {
		sa.sentIC = true
		n := wire.Notify{DOI: wire.DOIIPsec, Protocol: wire.ProtoISAKMP, Type: wire.NotifyInitialContact,
			SPI: append(append([]byte{}, sa.ck.i[:]...), sa.ck.r[:]...)}
		b.Add(wire.PayloadNotify, n.Encode())
	}
	return &b
}

// noOtherSA: we hold no other ISAKMP SA (in any state) and no child SA with
// the peer. Counting half-open ones keeps parallel Main Modes from each
// sending INITIAL-CONTACT and deleting one another at the peer.
func (e *Engine) noOtherSA(sa *ikeSA) bool {
	p := e.peers[sa.remote.Addr()]
	if p == nil {
		return true
	}
	_, self := p.ikes[sa]
	others := len(p.ikes)
	if self {
		others--
	}
	return len(p.children) == 0 && others == 0
}

// readAuth decrypts MM5/MM6, checks the peer's HASH and notes INITIAL-CONTACT.
func (e *Engine) readAuth(sa *ikeSA, h wire.Header, data []byte) (ic bool, next []byte, err error) {
	_, ps, _, next, err := sa.open(h, data, sa.iv)
	if err != nil {
		return false, nil, err
	}
	id, hash := wire.Find(ps, wire.PayloadID), wire.Find(ps, wire.PayloadHash)
	if id == nil || hash == nil {
		return false, nil, ikeError("ike: ID and HASH required")
	}
	if !hmacEqual(hash.Body, sa.authHash(!sa.initiator, id.Body)) {
		return false, nil, errBadHash
	}
	for _, x := range ps {
		if x.Type == wire.PayloadNotify {
			if n, err := wire.DecodeNotify(x.Body); err == nil && n.Type == wire.NotifyInitialContact {
				ic = true
			}
		}
	}
	return ic, next, nil
}

func (e *Engine) respMM5(now time.Time, sa *ikeSA, p Packet, h wire.Header, data []byte) error {
	ic, next, err := e.readAuth(sa, h, data)
	if err != nil {
		if err == errBadHash {
			e.cfg.Log.Warn("ike: main mode authentication failed (pre-shared key mismatch?)", "peer", p.Remote)
		}
		return err
	}
	sa.iv = next
	sa.local, sa.remote = p.Local, p.Remote
	b := e.authChain(sa)
	msg, next := sa.seal(sa.header(wire.ExchangeMain, 0), b, sa.iv)
	sa.iv = next
	e.reply(sa, data, msg)
	e.establish(now, sa, ic)
	return nil
}

func (e *Engine) initMM6(now time.Time, sa *ikeSA, p Packet, h wire.Header, data []byte) error {
	ic, next, err := e.readAuth(sa, h, data)
	if err != nil {
		if err == errBadHash {
			e.cfg.Log.Warn("ike: main mode authentication failed (pre-shared key mismatch?)", "peer", p.Remote)
		}
		return err
	}
	sa.iv = next
	sa.rt.stop()
	sa.rt = nil
	e.establish(now, sa, ic)
	return nil
}

func (e *Engine) establish(now time.Time, sa *ikeSA, ic bool) {
	sa.state = stateEstablished
	sa.established, sa.lastHeard = now, now
	sa.lifetime = sa.pol.Lifetime
	sa.timeout.stop()
	e.halfOpen--
	e.countExchange(sa.initiator, -1)
	delete(e.respHalf, respKey{sa.ck.i, sa.remote0})
	if p := e.peers[sa.remote.Addr()]; p != nil {
		p.nEst++
		p.newest = sa
	}
	e.ctr.IKEEstablished++
	e.event(Event{Kind: EventIKEUp, Time: now, Local: sa.local.Addr(), Remote: sa.remote.Addr(), IKE: sa.info(now)})
	e.cfg.Log.Info("ike: ISAKMP SA established", "peer", sa.remote, "policy", sa.pol.String(), "initiator", sa.initiator, "natt", sa.natt())
	if sa.pol.Weak() {
		e.cfg.Log.Warn("ike: ISAKMP SA uses weak algorithms", "peer", sa.remote, "policy", sa.pol.String())
	}
	if ic {
		e.initialContact(now, sa)
	}
	e.armIKETimers(now, sa)
	// Main Mode material is needed only to answer a retransmitted MM5.
	e.after(now.Add(e.cfg.ExchangeTimeout), func(time.Time) {
		sa.lastResp = nil
		sa.lastIn, sa.lastOut, sa.saiB, sa.gxi, sa.gxr, sa.ni, sa.nr, sa.offered = nil, nil, nil, nil, nil, nil, nil, nil
	})
	up := sa.onUp
	sa.onUp = nil
	for _, f := range up {
		f(now, sa)
	}
}

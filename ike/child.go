package ike

import (
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike/suite"
	"github.com/spiagent/spiagent/ike/wire"
)

// child is an installed child SA and its timers.
type child struct {
	ChildSA
	ike        *ikeSA
	soft, hard *timer
	softAt     time.Time // its soft lifetime: a request for its tag negotiates again from then
	expiring   bool      // being replaced (RekeyChild)
}

// keyedSA derives KEYMAT for one SA (RFC 2409 §5.5).
func (x *exchange) keyedSA(p alg.Protocol, spi uint32, t Transform) SA {
	h := x.sa.pol.Hash
	s := SA{Proto: p, SPI: spi}
	switch p {
	case alg.AH:
		s.TransformID, s.Integ = ahID(t.AH), t.AH
		s.IntegKey = suite.KeyMat(h, x.sa.keys.D, x.gqm, byte(wire.ProtoAH), spi, x.ni, x.nr, t.AH.KeyLen())
	case alg.ESP:
		s.TransformID, _ = suite.ESPID(t.ESP)
		s.Cipher, s.Integ = t.ESP, t.ESPInteg
		// Encryption key first (for AES-GCM: key then 4-byte salt, RFC 4106
		// §8.1), then the integrity key; ESP NULL takes no encryption key.
		n := t.ESP.KeyMatLen()
		k := suite.KeyMat(h, x.sa.keys.D, x.gqm, byte(wire.ProtoESP), spi, x.ni, x.nr, n+t.ESPInteg.KeyLen())
		s.EncKey, s.IntegKey = alg.Key(k[:n]), alg.Key(k[n:])
		if n == 0 {
			s.EncKey = nil
		}
		if len(s.IntegKey) == 0 {
			s.IntegKey = nil
		}
	}
	return s
}

// weak reports transforms logged as weak: DES, NULL encryption, MD5, or
// ESP without integrity (neither HMAC, AH nor an AEAD).
func (t Transform) weak() bool {
	switch {
	case t.ESP == alg.DES || t.ESP == alg.ESPNull:
		return true
	case t.AH == alg.HMACMD5 || t.ESPInteg == alg.HMACMD5:
		return true
	}
	return t.ESP != alg.CipherNone && !t.ESP.IsAEAD() && t.ESPInteg == alg.IntegNone && t.AH == alg.IntegNone
}

// childOf describes the bundle an exchange negotiated, with keys; out
// false leaves the outbound SAs out (a responder's prepared inbound SAs).
func (e *Engine) childOf(now time.Time, x *exchange, out bool) ChildSA {
	sa := x.sa
	if x.childID == 0 {
		e.nextID++
		x.childID = e.nextID
	}
	c := ChildSA{ID: x.childID, Tag: x.pol.Tag, ReqID: x.pol.ReqID,
		Local: sa.local.Addr(), Remote: sa.remote.Addr(), Mode: x.chosen.Mode,
		LocalTS: x.ts[0], RemoteTS: x.ts[1], PFS: x.group, Lifetime: x.life, LifetimeKB: x.lifeKB,
		Initiator: x.initiator, Established: now}
	if sa.natt() {
		c.Encap = &Encap{LocalPort: sa.local.Port(), RemotePort: sa.remote.Port()}
	}
	for _, p := range []alg.Protocol{alg.AH, alg.ESP} {
		if x.inSPI[p] == 0 || x.outSPI[p] == 0 {
			continue
		}
		c.In = append(c.In, x.keyedSA(p, x.inSPI[p], x.chosen))
		if out {
			c.Out = append(c.Out, x.keyedSA(p, x.outSPI[p], x.chosen))
		}
	}
	return c
}

// prepareChild hands out a responder's inbound SAs with Quick Mode's
// second message (see Output.Prepare).
func (e *Engine) prepareChild(now time.Time, x *exchange) {
	e.out.Prepare = append(e.out.Prepare, e.childOf(now, x, false))
}

func (e *Engine) addChild(now time.Time, x *exchange) {
	c := &child{ike: x.sa, ChildSA: e.childOf(now, x, true)}
	for _, s := range c.In {
		delete(e.reserved, spiKey{s.Proto, s.SPI})
		e.byIn[spiKey{s.Proto, s.SPI}] = c
	}
	for _, s := range c.Out {
		e.byOut[outKey{c.Remote, s.Proto, s.SPI}] = c
	}
	e.children[c.ID] = c
	e.peer(c.Remote).children[c.ID] = c
	if e.byTag[c.Tag] == nil {
		e.byTag[c.Tag] = map[uint64]*child{}
	}
	e.byTag[c.Tag][c.ID] = c
	e.ctr.ChildInstalled++
	e.out.Install = append(e.out.Install, c.ChildSA)
	e.cfg.Log.Info("ike: child SA established", "peer", c.Remote, "crypto_map", c.Tag, "transform", x.chosen.String(),
		"spi_in", spiList(c.In), "spi_out", spiList(c.Out))
	if x.chosen.weak() {
		e.cfg.Log.Warn("ike: child SA uses weak algorithms", "peer", c.Remote, "crypto_map", c.Tag, "transform", x.chosen.String())
	}
	c.hard = e.after(now.Add(c.Lifetime), func(now time.Time) {
		e.notifyDelete(now, c)
		e.removeChild(c, ReasonExpired)
	})
	if !x.initiator {
		// The initiator rekeys; a request of ours after this point is a
		// negotiation of its own (no jitter: it draws no randomness).
		c.softAt = now.Add(c.Lifetime * 9 / 10)
		return
	}
	c.softAt = now.Add(e.softLife(c.Lifetime))
	c.soft = e.after(c.softAt, func(now time.Time) {
		if cur := e.policies[c.Tag]; cur != nil && e.children[c.ID] == c {
			_ = e.demand(now, cur, &[2]Selector{c.LocalTS, c.RemoteTS})
		}
	})
}

func spiList(s []SA) []string {
	var out []string
	for _, x := range s {
		out = append(out, x.Proto.String()+":"+hex32(x.SPI))
	}
	return out
}

func hex32(v uint32) string {
	const d = "0123456789abcdef"
	b := []byte("0x00000000")
	for i := 9; i >= 2; i-- {
		b[i] = d[v&15]
		v >>= 4
	}
	return string(b)
}

func (e *Engine) removeChild(c *child, r DeleteReason) {
	if e.children[c.ID] != c {
		return
	}
	c.soft.stop()
	c.hard.stop()
	delete(e.children, c.ID)
	if m := e.byTag[c.Tag]; m != nil {
		delete(m, c.ID)
		if len(m) == 0 {
			delete(e.byTag, c.Tag)
		}
	}
	for _, s := range c.In {
		delete(e.byIn, spiKey{s.Proto, s.SPI})
	}
	for _, s := range c.Out {
		delete(e.byOut, outKey{c.Remote, s.Proto, s.SPI})
	}
	if p := e.peers[c.Remote]; p != nil {
		delete(p.children, c.ID)
		e.gcPeer(c.Remote)
	}
	e.out.Delete = append(e.out.Delete, ChildDelete{ChildSA: c.withoutKeys(), Reason: r})
	e.cfg.Log.Info("ike: child SA deleted", "peer", c.Remote, "crypto_map", c.Tag, "reason", r.String(), "spi_in", spiList(c.In))
}

// notifyDelete sends DELETE for c's inbound SPIs over the ISAKMP SA that
// negotiated it, or the newest one with the peer.
func (e *Engine) notifyDelete(now time.Time, c *child) {
	sa := c.ike
	if sa == nil || sa.deleted || sa.state != stateEstablished {
		sa = e.established(c.Remote)
	}
	if sa == nil {
		return
	}
	for _, s := range c.In {
		d := wire.Delete{DOI: wire.DOIIPsec, Protocol: protoWire(s.Proto), SPISize: 4, SPIs: [][]byte{{byte(s.SPI >> 24), byte(s.SPI >> 16), byte(s.SPI >> 8), byte(s.SPI)}}}
		e.sendInfo(now, sa, wire.PayloadDelete, d.Encode())
		e.ctr.DeletesOut++
	}
}

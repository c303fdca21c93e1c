package ike

import (
	"encoding/binary"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike/suite"
	"github.com/spiagent/spiagent/ike/wire"
)

// Quick Mode proposals: encoding our transforms as IPsec DOI proposals
// (RFC 2407 §4.5) and matching the peer's against ours.

// p2 are the decoded attributes of a phase 2 transform.
type p2 struct {
	lifeSecs, lifeKB, encap, auth, keyLen, group uint64
}

func (e *Engine) encapMode(sa *ikeSA, m alg.Mode) uint64 {
	if !sa.natt() {
		return uint64(wire.EncapTunnel + uint64(m))
	}
	if sa.nattVID == wire.NATTDraft {
		return uint64(wire.EncapUDPTunnelDraft + uint64(m))
	}
	return uint64(wire.EncapUDPTunnel + uint64(m))
}

func (e *Engine) p2Attrs(sa *ikeSA, m alg.Mode, integ alg.Integrity, keyBits uint16, g alg.Group, life time.Duration, kb uint64) []wire.Attr {
	a := []wire.Attr{
		{Type: wire.AttrSALifeType, Value: wire.LifeSeconds}, {Type: wire.AttrSALifeDur, Value: uint64(life / time.Second)},
	}
	if kb > 0 {
		a = append(a, wire.Attr{Type: wire.AttrSALifeType, Value: wire.LifeKilobytes}, wire.Attr{Type: wire.AttrSALifeDur, Value: kb})
	}
	if g != alg.GroupNone {
		a = append(a, wire.Attr{Type: wire.AttrSAGroup, Value: uint64(g)})
	}
	a = append(a, wire.Attr{Type: wire.AttrEncapMode, Value: e.encapMode(sa, m)})
	if integ != alg.IntegNone {
		a = append(a, wire.Attr{Type: wire.AttrSAAuthAlg, Value: authAlg(integ)})
	}
	if keyBits != 0 {
		a = append(a, wire.Attr{Type: wire.AttrSAKeyLength, Value: uint64(keyBits)})
	}
	return a
}

// wireProps encodes transform t as proposal number n (two proposals with
// the same number for an AH+ESP bundle, AH first).
func (e *Engine) wireProps(sa *ikeSA, n uint8, t Transform, spis map[alg.Protocol]uint32, g alg.Group, life time.Duration, kb uint64) []wire.Proposal {
	var out []wire.Proposal
	spi := func(p alg.Protocol) []byte { return binary.BigEndian.AppendUint32(nil, spis[p]) }
	if t.AH != alg.IntegNone {
		out = append(out, wire.Proposal{Number: n, Protocol: wire.ProtoAH, SPI: spi(alg.AH), Transforms: []wire.Transform{
			{Number: 1, ID: ahID(t.AH), Attrs: e.p2Attrs(sa, t.Mode, t.AH, 0, g, life, kb)}}})
	}
	if t.ESP != alg.CipherNone {
		id, kbits := suite.ESPID(t.ESP)
		out = append(out, wire.Proposal{Number: n, Protocol: wire.ProtoESP, SPI: spi(alg.ESP), Transforms: []wire.Transform{
			{Number: 1, ID: id, Attrs: e.p2Attrs(sa, t.Mode, t.ESPInteg, kbits, g, life, kb)}}})
	}
	return out
}

func readP2(t *wire.Transform) p2 {
	var r p2
	var lt uint64
	for _, a := range t.Attrs {
		switch a.Type {
		case wire.AttrSALifeType:
			lt = a.Value
		case wire.AttrSALifeDur:
			if lt == wire.LifeSeconds {
				r.lifeSecs = a.Value
			} else if lt == wire.LifeKilobytes {
				r.lifeKB = a.Value
			}
		case wire.AttrEncapMode:
			r.encap = a.Value
		case wire.AttrSAAuthAlg:
			r.auth = a.Value
		case wire.AttrSAKeyLength:
			r.keyLen = a.Value
		case wire.AttrSAGroup:
			r.group = a.Value
		}
	}
	return r
}

// modeOf maps an encapsulation mode attribute to (mode, udp).
func modeOf(v uint64) (alg.Mode, bool, bool) {
	switch v {
	case wire.EncapTunnel:
		return alg.Tunnel, false, true
	case wire.EncapTransport:
		return alg.Transport, false, true
	case wire.EncapUDPTunnel, wire.EncapUDPTunnelDraft:
		return alg.Tunnel, true, true
	case wire.EncapUDPTransport, wire.EncapUDPTransportDraft:
		return alg.Transport, true, true
	}
	return 0, false, false
}

// matchTransform reports whether the wire transform wt of protocol p is ours.
func matchTransform(sa *ikeSA, t Transform, p wire.ProtocolID, wt *wire.Transform, g alg.Group) bool {
	a := readP2(wt)
	mode, udp, ok := modeOf(a.encap)
	if a.encap == 0 {
		mode, udp, ok = alg.Tunnel, false, true
	}
	if !ok || mode != t.Mode || udp != sa.natt() || a.group != uint64(g) {
		return false
	}
	switch p {
	case wire.ProtoAH:
		return t.AH != alg.IntegNone && wt.ID == ahID(t.AH) && (a.auth == 0 || a.auth == authAlg(t.AH))
	case wire.ProtoESP:
		c, ok := suite.CipherFromESP(wt.ID, a.keyLen)
		return ok && t.ESP != alg.CipherNone && c == t.ESP && a.auth == authAlg(t.ESPInteg)
	}
	return false
}

// proposalGroups splits proposals into groups with the same number (a bundle).
func proposalGroups(ps []wire.Proposal) [][]wire.Proposal {
	var out [][]wire.Proposal
	for i := 0; i < len(ps); {
		j := i + 1
		for j < len(ps) && ps[j].Number == ps[i].Number {
			j++
		}
		out = append(out, ps[i:j])
		i = j
	}
	return out
}

// matchGroup finds which transform of each proposal in grp matches t and
// returns the one-transform reply proposals (SPIs not yet replaced).
func matchGroup(sa *ikeSA, t Transform, grp []wire.Proposal, g alg.Group) ([]wire.Proposal, bool) {
	want := 0
	if t.AH != alg.IntegNone {
		want++
	}
	if t.ESP != alg.CipherNone {
		want++
	}
	if len(grp) != want {
		return nil, false
	}
	var reply []wire.Proposal
	for _, p := range grp {
		if (p.Protocol != wire.ProtoAH && p.Protocol != wire.ProtoESP) || len(p.SPI) != 4 {
			return nil, false
		}
		if p.Protocol == wire.ProtoAH && t.AH == alg.IntegNone || p.Protocol == wire.ProtoESP && t.ESP == alg.CipherNone {
			return nil, false
		}
		found := false
		for i := range p.Transforms {
			if matchTransform(sa, t, p.Protocol, &p.Transforms[i], g) {
				r := p
				r.Transforms = []wire.Transform{p.Transforms[i]}
				reply = append(reply, r)
				found = true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return reply, true
}

// authAlg is the IPsec DOI Authentication Algorithm attribute of an
// integrity algorithm (RFC 2407 §4.5, RFC 4868 §2.4); 0 for none.
func authAlg(i alg.Integrity) uint64 {
	if !i.Valid() {
		return 0
	}
	return [...]uint64{0, 1, 2, 5, 6, 7}[i]
}

// ahID is the AH transform ID of an integrity algorithm (RFC 2407 §4.4.3,
// RFC 4868 §2.4); 0 for none.
func ahID(i alg.Integrity) uint8 {
	if !i.Valid() {
		return 0
	}
	return [...]uint8{0, 2, 3, 5, 6, 7}[i]
}

package agent

import (
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"

	"github.com/spiagent/spiagent/agent/intent"
	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike"
	"github.com/spiagent/spiagent/ipsec"
)

// This file translates between the intent (the model, as values) and the
// engines' own types. Algorithms need no translation: the intent, ike and
// ipsec all speak alg's vocabulary; the IOS names are intent's (ios.go).

// ikeConfig builds the IKE engine's configuration from the intent.
func ikeConfig(in *intent.Intent, base ike.Config) ike.Config {
	c := base
	c.Policies = nil
	for _, p := range in.Policies {
		c.Policies = append(c.Policies, ike.Policy{
			Priority: int(p.Priority), Cipher: p.Encryption, Hash: p.Hash, Group: p.Group, Lifetime: p.Lifetime,
		})
	}
	c.Keys = maps.Clone(in.Keys)
	switch {
	case in.Global.ForceUDPEncap:
		c.NATT = ike.NATTForce
	case in.Global.NATTraversal:
		c.NATT = ike.NATTAuto
	default:
		c.NATT = ike.NATTOff
	}
	c.NATKeepalive = in.Global.NATKeepalive
	c.DPDInterval = in.Global.DPDInterval
	return c
}

// ikeTransform turns a transform set into an IKE proposal.
func ikeTransform(t intent.Transform) ike.Transform {
	return ike.Transform{AH: t.AH, ESP: t.ESP, ESPInteg: t.ESPInteg, Mode: t.Mode}
}

// ikeSelector turns one side of an ACL rule into an IKE identity.
func ikeSelector(p netip.Prefix, proto uint8, ports ipsec.PortRange) ike.Selector {
	s := ike.Selector{Prefix: p, Proto: proto}
	if !ports.Any() && ports.Lo == ports.Hi {
		s.Port = ports.Lo
	}
	return s
}

// reqIDSpan bounds request IDs (the XFRM dataplane owns 2^24 of them).
const reqIDSpan = 1 << 24

// reqIDFor gives a rule tag a request ID, stable across restarts (a hash of
// the tag, probed past collisions), so its SAs and policies find each other.
func reqIDFor(tag string, used map[uint32]string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(tag))
	id := h.Sum32() % reqIDSpan
	for {
		if owner, taken := used[id]; id != 0 && (!taken || owner == tag) {
			return id
		}
		id = (id + 1) % reqIDSpan
	}
}

// childPolicies builds what IKE needs to know about every tunnel: one per
// (tunnel, permit rule), since each permit entry of a crypto ACL is its own
// pair of IPsec SAs on a router.
func childPolicies(in *intent.Intent, ids map[string]uint32) []ike.ChildPolicy {
	var out []ike.ChildPolicy
	for i := range in.Tunnels {
		t := &in.Tunnels[i]
		if len(t.Peers) == 0 {
			continue
		}
		var props []ike.Transform
		for _, tr := range t.Transforms {
			props = append(props, ikeTransform(tr))
		}
		for _, r := range t.Rules {
			if !r.Permit {
				continue
			}
			tag := ruleTag(t, r)
			out = append(out, ike.ChildPolicy{
				Tag:        tag,
				ReqID:      ids[tag],
				Local:      t.Local,
				Peer:       t.Peers[0],
				LocalTS:    ikeSelector(r.Selector.Src, r.Selector.Proto, r.Selector.SrcPort),
				RemoteTS:   ikeSelector(r.Selector.Dst, r.Selector.Proto, r.Selector.DstPort),
				Proposals:  props,
				PFS:        t.PFS,
				Lifetime:   t.Lifetime,
				LifetimeKB: t.LifeKB,
			})
		}
	}
	return out
}

// ruleTag names the (tunnel, ACL entry) pair: "testtag1/10@wan0#10".
func ruleTag(t *intent.Tunnel, r intent.Rule) string {
	return fmt.Sprintf("%s#%d", t.ID(), r.Seq)
}

// dataplaneSAs turns a negotiated child SA bundle into dataplane SAs,
// inbound first. Both SAs of an AH+ESP bundle share the child's ReqID.
func dataplaneSAs(c *ike.ChildSA, replayWindow uint32) []ipsec.SA {
	// IKE rekeys on time itself; the dataplane counts bytes, so it raises
	// the soft expiry (at 90%) that makes IKE rekey on volume.
	life := ipsec.Lifetime{HardTime: c.Lifetime}
	if c.LifetimeKB > 0 {
		life.HardBytes = c.LifetimeKB * 1024
		life.SoftBytes = life.HardBytes / 10 * 9
	}
	localSel := ipsec.Selector{Src: c.LocalTS.Prefix, Dst: c.RemoteTS.Prefix, Proto: c.LocalTS.Proto,
		SrcPort: portOf(c.LocalTS.Port), DstPort: portOf(c.RemoteTS.Port)}
	esp := false
	for _, s := range c.In {
		esp = esp || s.Proto == alg.ESP
	}
	var out []ipsec.SA
	add := func(s ike.SA, in bool) {
		sa := ipsec.SA{
			Proto: s.Proto, SPI: s.SPI, Mode: bundleMode(s.Proto, c.Mode, esp), ReqID: c.ReqID, Lifetime: life,
			Integ: s.Integ, IntegKey: s.IntegKey,
		}
		if s.Proto == alg.ESP {
			sa.Cipher, sa.CipherKey = s.Cipher, s.EncKey
			if c.Encap != nil {
				sa.Encap = &ipsec.UDPEncap{SrcPort: c.Encap.LocalPort, DstPort: c.Encap.RemotePort}
				if in {
					sa.Encap = &ipsec.UDPEncap{SrcPort: c.Encap.RemotePort, DstPort: c.Encap.LocalPort}
				}
			}
		}
		if in {
			sa.Src, sa.Dst, sa.Dir = c.Remote, c.Local, ipsec.DirIn
			sa.ReplayWindow = replayWindow
			sa.Selector = localSel.Mirror()
		} else {
			sa.Src, sa.Dst, sa.Dir = c.Local, c.Remote, ipsec.DirOut
			sa.Selector = localSel
		}
		out = append(out, sa)
	}
	for _, s := range c.In {
		add(s, true)
	}
	for _, s := range c.Out {
		add(s, false)
	}
	return out
}

func portOf(p uint16) ipsec.PortRange {
	if p == 0 {
		return ipsec.PortRange{}
	}
	return ipsec.PortRange{Lo: p, Hi: p}
}

// templates lists the SAs a protected packet needs, innermost first (ESP,
// then AH), for a transform.
func templates(t intent.Transform, local, peer netip.Addr, id uint32) []ipsec.Template {
	var out []ipsec.Template
	if t.ESP != alg.CipherNone {
		out = append(out, ipsec.Template{Proto: alg.ESP, Mode: t.Mode, Src: local, Dst: peer, ReqID: id})
	}
	if t.AH != alg.IntegNone {
		out = append(out, ipsec.Template{Proto: alg.AH, Mode: bundleMode(alg.AH, t.Mode, t.ESP != alg.CipherNone), Src: local, Dst: peer, ReqID: id})
	}
	return out
}

// bundleMode is the dataplane mode of one SA of a bundle negotiated in
// mode: an AH+ESP bundle has one tunnel, ESP's, and AH protects it from
// outside in transport mode ([IP][AH][ESP][IP][data], what IOS puts on the
// wire, RFC 4301 §4.5's transport adjacency over the tunnel). Quick Mode
// still carries "tunnel" for both protocols; only the dataplane differs.
// The kernel takes the modes literally (tunnel AH would add a second outer
// header); the userspace dataplane applies one tunnel per bundle anyway.
func bundleMode(p alg.Protocol, mode alg.Mode, withESP bool) alg.Mode {
	if p == alg.AH && withESP {
		return alg.Transport
	}
	return mode
}

package agent

import (
	"fmt"
	"hash/fnv"
	"net/netip"

	"github.com/spiagent/spiagent/agent/intent"
	"github.com/spiagent/spiagent/ike"
	"github.com/spiagent/spiagent/ike/suite"
	"github.com/spiagent/spiagent/ipsec"
)

// This file translates between the intent (the model, as values) and the
// engines' own types. It is the only place that knows both vocabularies.

var p1Ciphers = map[string]suite.Cipher{
	"des": suite.DES, "3des": suite.TripleDES,
	"aes-128": suite.AES128, "aes-192": suite.AES192, "aes-256": suite.AES256,
}

var p1Hashes = map[string]suite.Hash{
	"md5": suite.MD5, "sha": suite.SHA1, "sha256": suite.SHA256, "sha384": suite.SHA384, "sha512": suite.SHA512,
}

// ikeConfig builds the IKE engine's configuration from the intent.
func ikeConfig(in *intent.Intent, base ike.Config) (ike.Config, error) {
	c := base
	c.Policies = nil
	for _, p := range in.Policies {
		ci, ok := p1Ciphers[p.Encryption]
		if !ok {
			return c, fmt.Errorf("isakmp policy %d: encryption %q not supported", p.Priority, p.Encryption)
		}
		h, ok := p1Hashes[p.Hash]
		if !ok {
			return c, fmt.Errorf("isakmp policy %d: hash %q not supported", p.Priority, p.Hash)
		}
		c.Policies = append(c.Policies, ike.Policy{
			Priority: int(p.Priority), Cipher: ci, Hash: h, Group: suite.Group(p.Group), Lifetime: p.Lifetime,
		})
	}
	c.Keys = make(map[netip.Addr]ike.PSK, len(in.Keys))
	for a, k := range in.Keys {
		c.Keys[a] = ike.PSK(k)
	}
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
	return c, nil
}

var ikeInteg = map[ipsec.Integrity]ike.Integrity{
	ipsec.IntegNone:          ike.IntegNone,
	ipsec.IntegHMACMD596:     ike.IntegMD5,
	ipsec.IntegHMACSHA196:    ike.IntegSHA1,
	ipsec.IntegHMACSHA256128: ike.IntegSHA256,
	ipsec.IntegHMACSHA384192: ike.IntegSHA384,
	ipsec.IntegHMACSHA512256: ike.IntegSHA512,
}

// ikeTransform turns a transform set into an IKE proposal.
func ikeTransform(t intent.Transform) (ike.Transform, error) {
	out := ike.Transform{AH: ikeInteg[t.AH], ESPInteg: ikeInteg[t.ESPInteg], Mode: ike.ModeTunnel}
	if t.Mode == ipsec.ModeTransport {
		out.Mode = ike.ModeTransport
	}
	if t.ESP {
		c, err := ikeESPCipher(t.Cipher, t.KeyBits)
		if err != nil {
			return out, fmt.Errorf("transform set %s: %w", t.Name, err)
		}
		out.ESP = c
	}
	return out, nil
}

func ikeESPCipher(c ipsec.Cipher, bits int) (suite.Cipher, error) {
	switch c {
	case ipsec.CipherDESCBC:
		return suite.DES, nil
	case ipsec.Cipher3DESCBC:
		return suite.TripleDES, nil
	case ipsec.CipherNull:
		return suite.ESPNull, nil
	case ipsec.CipherAESCBC:
		switch bits {
		case 128:
			return suite.AES128, nil
		case 192:
			return suite.AES192, nil
		case 256:
			return suite.AES256, nil
		}
	case ipsec.CipherAESGCM16:
		switch bits {
		case 128:
			return suite.AESGCM128, nil
		case 256:
			return suite.AESGCM256, nil
		}
	}
	return suite.CipherNone, fmt.Errorf("ESP %s %d is not negotiable by the IKE engine", c, bits)
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
func childPolicies(in *intent.Intent, ids map[string]uint32) ([]ike.ChildPolicy, error) {
	var out []ike.ChildPolicy
	for i := range in.Tunnels {
		t := &in.Tunnels[i]
		if len(t.Peers) == 0 {
			continue
		}
		var props []ike.Transform
		for _, tr := range t.Transforms {
			p, err := ikeTransform(tr)
			if err != nil {
				return nil, fmt.Errorf("crypto map %s %d: %w", t.Map, t.Seq, err)
			}
			props = append(props, p)
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
				PFS:        suite.Group(t.PFSGroup),
				Lifetime:   t.Lifetime,
				LifetimeKB: t.LifeKB,
			})
		}
	}
	return out, nil
}

// ruleTag names the (tunnel, ACL entry) pair: "testtag1/10@wan0#10".
func ruleTag(t *intent.Tunnel, r intent.Rule) string {
	return fmt.Sprintf("%s#%d", t.ID(), r.Seq)
}

var fromIKEInteg = map[ike.Integrity]ipsec.Integrity{
	ike.IntegNone:   ipsec.IntegNone,
	ike.IntegMD5:    ipsec.IntegHMACMD596,
	ike.IntegSHA1:   ipsec.IntegHMACSHA196,
	ike.IntegSHA256: ipsec.IntegHMACSHA256128,
	ike.IntegSHA384: ipsec.IntegHMACSHA384192,
	ike.IntegSHA512: ipsec.IntegHMACSHA512256,
}

func fromIKECipher(c suite.Cipher) ipsec.Cipher {
	switch c {
	case suite.DES:
		return ipsec.CipherDESCBC
	case suite.TripleDES:
		return ipsec.Cipher3DESCBC
	case suite.AES128, suite.AES192, suite.AES256:
		return ipsec.CipherAESCBC
	case suite.AESGCM128, suite.AESGCM256:
		// The key already carries the 4-byte salt at its end.
		return ipsec.CipherAESGCM16
	case suite.ESPNull:
		return ipsec.CipherNull
	}
	return ipsec.CipherNull
}

// dataplaneSAs turns a negotiated child SA bundle into dataplane SAs,
// inbound first. Both SAs of an AH+ESP bundle share the child's ReqID.
func dataplaneSAs(c *ike.ChildSA, replayWindow uint32) []ipsec.SA {
	mode := ipsec.ModeTunnel
	if c.Mode == ike.ModeTransport {
		mode = ipsec.ModeTransport
	}
	// IKE rekeys on time itself; the dataplane counts bytes, so it raises
	// the soft expiry (at 90%) that makes IKE rekey on volume.
	life := ipsec.Lifetime{HardTime: c.Lifetime}
	if c.LifetimeKB > 0 {
		life.HardBytes = c.LifetimeKB * 1024
		life.SoftBytes = life.HardBytes / 10 * 9
	}
	localSel := ipsec.Selector{Src: c.LocalTS.Prefix, Dst: c.RemoteTS.Prefix, Proto: c.LocalTS.Proto,
		SrcPort: portOf(c.LocalTS.Port), DstPort: portOf(c.RemoteTS.Port)}
	var out []ipsec.SA
	add := func(s ike.SA, in bool) {
		sa := ipsec.SA{
			Proto: ipsec.Protocol(s.Proto), SPI: s.SPI, Mode: mode, ReqID: c.ReqID, Lifetime: life,
			Integ: fromIKEInteg[s.Integ], IntegKey: ipsec.Key(s.IntegKey),
		}
		if s.Proto == ike.ProtoESP {
			sa.Cipher, sa.CipherKey = fromIKECipher(s.Cipher), ipsec.Key(s.EncKey)
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
	if t.ESP {
		out = append(out, ipsec.Template{Proto: ipsec.ProtoESP, Mode: t.Mode, Src: local, Dst: peer, ReqID: id})
	}
	if t.AH != ipsec.IntegNone {
		out = append(out, ipsec.Template{Proto: ipsec.ProtoAH, Mode: t.Mode, Src: local, Dst: peer, ReqID: id})
	}
	return out
}

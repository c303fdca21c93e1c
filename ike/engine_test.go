package ike

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike/wire"
)

// Every DH group and every phase 1 cipher/hash pair: Main alg.Mode + Quick alg.Mode
// must complete with mirrored keys.
func TestMainQuickAllSuites(t *testing.T) {
	ciphers := []alg.Cipher{alg.DES, alg.TripleDES, alg.AES128, alg.AES192, alg.AES256}
	hashes := []alg.Hash{alg.MD5, alg.SHA1, alg.SHA256, alg.SHA384, alg.SHA512}
	for _, g := range alg.Groups {
		for _, c := range ciphers {
			for _, h := range hashes {
				if testing.Short() && (c != alg.AES128 && h != alg.SHA1) {
					continue
				}
				t.Run(fmt.Sprintf("%v-%v-%v", c, h, g), func(t *testing.T) {
					cfg := baseConfig()
					cfg.Policies = []Policy{{Priority: 1, Cipher: c, Hash: h, Group: g}}
					p := newPair(t, cfg, cfg)
					p.initiate(p.a, "mapA")
					if len(p.a.install) != 1 || len(p.b.install) != 1 {
						t.Fatalf("installs: A %d B %d; events A %v B %v", len(p.a.install), len(p.b.install), p.a.events, p.b.events)
					}
					checkChildPair(t, p.a.install[0], p.b.install[0])
					if countEvents(p.a.events, EventIKEUp) != 1 || countEvents(p.b.events, EventIKEUp) != 1 {
						t.Fatal("IKE up events missing")
					}
					if up := p.a.events[0].IKE.Policy; up.Cipher != c || up.Hash != h || up.Group != g {
						t.Fatalf("negotiated %v", up)
					}
				})
			}
		}
	}
}

func TestChildVariants(t *testing.T) {
	seed := Transform{AH: alg.HMACSHA1, ESP: alg.DES, ESPInteg: alg.HMACSHA1} // ah-sha-hmac esp-des esp-sha-hmac
	tests := []struct {
		desc  string
		tr    []Transform
		pfs   alg.Group
		natt  NATTMode
		wantN int // SAs per direction
	}{
		{"esp aes128 sha1", []Transform{{ESP: alg.AES128, ESPInteg: alg.HMACSHA1}}, 0, NATTAuto, 1},
		{"esp 3des md5 transport", []Transform{{ESP: alg.TripleDES, ESPInteg: alg.HMACMD5, Mode: alg.Transport}}, 0, NATTAuto, 1},
		{"esp aes256 sha512 pfs14", []Transform{{ESP: alg.AES256, ESPInteg: alg.HMACSHA512}}, alg.MODP2048, NATTAuto, 1},
		{"esp aes192 sha384 pfs ecp384", []Transform{{ESP: alg.AES192, ESPInteg: alg.HMACSHA384}}, alg.ECP384, NATTAuto, 1},
		{"esp without integrity", []Transform{{ESP: alg.AES128}}, 0, NATTAuto, 1},
		{"ah sha256 only", []Transform{{AH: alg.HMACSHA256}}, 0, NATTAuto, 1},
		{"ah md5 transport", []Transform{{AH: alg.HMACMD5, Mode: alg.Transport}}, alg.MODP1024, NATTAuto, 1},
		{"seed bundle ah+esp", []Transform{seed}, 0, NATTAuto, 2},
		{"seed bundle pfs group2", []Transform{seed}, alg.MODP1024, NATTAuto, 2},
		{"bundle transport", []Transform{{AH: alg.HMACSHA1, ESP: alg.AES128, ESPInteg: alg.HMACSHA256, Mode: alg.Transport}}, 0, NATTAuto, 2},
		{"forced natt tunnel", []Transform{{ESP: alg.AES128, ESPInteg: alg.HMACSHA1}}, alg.MODP2048, NATTForce, 1},
		{"forced natt transport", []Transform{{ESP: alg.AES128, ESPInteg: alg.HMACSHA1, Mode: alg.Transport}}, 0, NATTForce, 1},
		{"natt off", []Transform{{ESP: alg.AES128, ESPInteg: alg.HMACSHA1}}, 0, NATTOff, 1},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := baseConfig()
			cfg.NATT = tc.natt
			p := newPair(t, cfg, cfg, tc.tr...)
			p.a.e.policies["mapA"].PFS = tc.pfs
			p.b.e.policies["mapB"].PFS = tc.pfs
			p.initiate(p.a, "mapA")
			if len(p.a.install) != 1 || len(p.b.install) != 1 {
				t.Fatalf("installs A %d B %d, events %v %v", len(p.a.install), len(p.b.install), p.a.events, p.b.events)
			}
			a, b := p.a.install[0], p.b.install[0]
			checkChildPair(t, a, b)
			if len(a.In) != tc.wantN || a.PFS != tc.pfs || a.Mode != tc.tr[0].Mode {
				t.Fatalf("got %d SAs, pfs %v, mode %v", len(a.In), a.PFS, a.Mode)
			}
			if tc.wantN == 2 && (a.In[0].Proto != alg.AH || a.In[1].Proto != alg.ESP) {
				t.Fatal("bundle order must be AH then ESP")
			}
			if tc.natt == NATTForce {
				if a.Encap == nil || a.Encap.LocalPort != 4500 || a.Encap.RemotePort != 4500 {
					t.Fatalf("forced NAT-T: encap %+v", a.Encap)
				}
				last := p.a.sent[len(p.a.sent)-1]
				if last.Local.Port() != 4500 || last.Remote.Port() != 4500 {
					t.Fatalf("did not float: %v -> %v", last.Local, last.Remote)
				}
			} else if a.Encap != nil {
				t.Fatal("encapsulation without NAT")
			}
			if a.Tag != "mapA" || b.Tag != "mapB" || a.ReqID != 7 || !a.Initiator || b.Initiator {
				t.Fatalf("tags %q %q", a.Tag, b.Tag)
			}
		})
	}
}

// A real NAT in front of A: both sides must detect it and A float.
func TestNATDetected(t *testing.T) {
	natIP := netip.MustParseAddr("203.0.113.99")
	ca, cb := baseConfig(), baseConfig()
	cb.Keys = map[netip.Addr]alg.Key{natIP: psk}
	p := newPair(t, ca, cb)
	p.nat, p.natIP = true, natIP
	pb := childPolicy("mapB", addrB, natIP, lanB, lanA)
	if err := p.b.e.SetChildPolicies([]ChildPolicy{pb}); err != nil {
		t.Fatal(err)
	}
	p.initiate(p.a, "mapA")
	if len(p.a.install) != 1 || len(p.b.install) != 1 {
		t.Fatalf("installs A %d B %d", len(p.a.install), len(p.b.install))
	}
	a, b := p.a.install[0], p.b.install[0]
	if a.Encap == nil || b.Encap == nil || b.Encap.RemotePort != 5500 || a.Encap.LocalPort != 4500 {
		t.Fatalf("encap A %+v B %+v", a.Encap, b.Encap)
	}
	s := p.a.e.Snapshot(p.now)
	if len(s.IKE) != 1 || !s.IKE[0].NATT {
		t.Fatalf("snapshot %+v", s.IKE)
	}
	// A is behind the NAT: it sends keepalives.
	p.advance(25*time.Second, 5*time.Second)
	if p.a.e.Counters().Keepalives == 0 || p.b.e.Counters().Keepalives != 0 {
		t.Fatalf("keepalives A %d B %d", p.a.e.Counters().Keepalives, p.b.e.Counters().Keepalives)
	}
}

func TestPolicyPriorityMatching(t *testing.T) {
	ca, cb := baseConfig(), baseConfig()
	ca.Policies = []Policy{
		{Priority: 1, Cipher: alg.AES256, Hash: alg.SHA256, Group: alg.MODP2048},
		{Priority: 2, Cipher: alg.DES, Hash: alg.SHA1, Group: alg.MODP768},
		{Priority: 3, Cipher: alg.AES128, Hash: alg.SHA1, Group: alg.MODP2048},
	}
	cb.Policies = []Policy{
		{Priority: 20, Cipher: alg.DES, Hash: alg.SHA1, Group: alg.MODP768},
		{Priority: 10, Cipher: alg.AES128, Hash: alg.SHA1, Group: alg.MODP2048},
	}
	p := newPair(t, ca, cb)
	p.initiate(p.a, "mapA")
	if len(p.a.install) != 1 {
		t.Fatal("no child")
	}
	// B's priority 10 policy is its best that A offers.
	if got := p.a.events[0].IKE.Policy; got.Cipher != alg.AES128 || got.Group != alg.MODP2048 {
		t.Fatalf("chose %v", got)
	}
	// No common policy: nothing established, counted.
	cb.Policies = []Policy{{Priority: 1, Cipher: alg.TripleDES, Hash: alg.MD5, Group: alg.MODP1536}}
	p = newPair(t, ca, cb)
	p.initiate(p.a, "mapA")
	if len(p.a.install) != 0 || p.b.e.Counters().NoProposal == 0 {
		t.Fatal("established without a common policy")
	}
}

func TestQuickModeRefusals(t *testing.T) {
	// B's selectors do not cover what A proposes: INVALID-ID-INFORMATION.
	p := newPair(t, baseConfig(), baseConfig())
	pb := childPolicy("mapB", addrB, addrA, netip.MustParsePrefix("203.0.113.0/25"), lanA)
	p.b.e.SetChildPolicies([]ChildPolicy{pb})
	p.initiate(p.a, "mapA")
	if len(p.a.install) != 0 || len(p.b.install) != 0 {
		t.Fatal("installed despite selector mismatch")
	}
	found := false
	for _, ev := range p.a.events {
		if ev.Kind == EventNotify && ev.NotifyType == wire.NotifyInvalidID && ev.Authenticated {
			found = true
		}
	}
	if !found {
		t.Fatalf("A did not get INVALID-ID-INFORMATION: %v", p.a.events)
	}
	// The refusal ends A's Quick alg.Mode at once: no retransmissions.
	if c := p.a.e.Counters(); c.ChildFailed != 1 || c.Retransmits != 0 || countEvents(p.a.events, EventExchangeFailed) != 1 {
		t.Fatalf("A counters %+v", c)
	}
	// B requires PFS, A offers none: NO-PROPOSAL-CHOSEN.
	p = newPair(t, baseConfig(), baseConfig())
	p.b.e.policies["mapB"].PFS = alg.MODP2048
	p.initiate(p.a, "mapA")
	if len(p.a.install) != 0 || p.b.e.Counters().NoProposal != 1 {
		t.Fatal("installed without required PFS")
	}
	// A narrower trigger within B's policy is accepted and narrowed.
	p = newPair(t, baseConfig(), baseConfig())
	trig := [2]Selector{{Prefix: netip.MustParsePrefix("198.51.100.10/32"), Proto: 17, Port: 0}, {Prefix: netip.MustParsePrefix("203.0.113.10/32"), Proto: 17, Port: 53}}
	if err := p.a.e.Initiate(p.now, "mapA", &trig); err != nil {
		t.Fatal(err)
	}
	p.pump()
	if len(p.b.install) != 1 || p.b.install[0].RemoteTS != trig[0] || p.b.install[0].LocalTS != trig[1] {
		t.Fatalf("narrowed child %+v", p.b.install)
	}
	if err := p.a.e.Initiate(p.now, "nope", nil); err == nil {
		t.Fatal("unknown tag accepted")
	}
}

// Peers that only speak draft-ietf-ipsec-nat-t-ike-02: NAT-D is payload 130
// and the encapsulation modes are 61443/61444. The harness hides the RFC
// 3947 vendor ID on the wire (vendor IDs are not covered by HASH_I/R).
func TestNATTDraftOnly(t *testing.T) {
	cfg := baseConfig()
	cfg.NATT = NATTForce
	for _, mode := range []alg.Mode{alg.Tunnel, alg.Transport} {
		p := newPair(t, cfg, cfg, Transform{ESP: alg.AES128, ESPInteg: alg.HMACSHA1, Mode: mode})
		var sawDraftNATD, sawDraftEncap bool
		p.drop = func(from *node, pkt Packet) bool {
			if i := bytes.Index(pkt.Data, wire.VendorNATTRFC3947); i >= 0 {
				copy(pkt.Data[i:], bytes.Repeat([]byte{0xee}, 16))
			}
			return false
		}
		p.a.e.cfg.Trace = func(sent bool, m []byte) {
			h, _ := wire.ParseHeader(m)
			ps, _, err := wire.ParsePayloads(h.Next, m[wire.HeaderLen:h.Length])
			if err != nil {
				return
			}
			for _, x := range ps {
				if x.Type == wire.PayloadNATDDraft {
					sawDraftNATD = true
				}
				if x.Type == wire.PayloadSA && h.Exchange == wire.ExchangeQuick {
					sa, _ := wire.DecodeSA(x.Body)
					if v, ok := sa.Proposals[0].Transforms[0].Attr(wire.AttrEncapMode); ok && v == wire.EncapUDPTunnelDraft+uint64(mode) {
						sawDraftEncap = true
					}
				}
			}
		}
		p.initiate(p.a, "mapA")
		if len(p.a.install) != 1 || len(p.b.install) != 1 || p.a.install[0].Encap == nil {
			t.Fatalf("%v: installs A %d B %d", mode, len(p.a.install), len(p.b.install))
		}
		if !sawDraftNATD || !sawDraftEncap {
			t.Fatalf("%v: draft NAT-D %v, draft encapsulation %v", mode, sawDraftNATD, sawDraftEncap)
		}
		checkChildPair(t, p.a.install[0], p.b.install[0])
	}
}

// IPv6 outer addresses and selectors (RFC 3849 documentation prefix).
func TestIPv6(t *testing.T) {
	a6, b6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	l6a, l6b := netip.MustParsePrefix("2001:db8:a::/48"), netip.MustParsePrefix("2001:db8:b::/48")
	cfg := baseConfig()
	cfg.Keys = map[netip.Addr]alg.Key{netip.IPv6Unspecified(): psk}
	cfg.NATT = NATTForce
	p := &pair{t: t, now: t0,
		a: newNode(t, a6, cfg, 1, childPolicy("mapA", a6, b6, l6a, l6b)),
		b: newNode(t, b6, cfg, 2, childPolicy("mapB", b6, a6, l6b, l6a))}
	p.initiate(p.a, "mapA")
	if len(p.a.install) != 1 || len(p.b.install) != 1 {
		t.Fatalf("installs A %d B %d", len(p.a.install), len(p.b.install))
	}
	checkChildPair(t, p.a.install[0], p.b.install[0])
	if p.b.install[0].RemoteTS.Prefix != l6a || p.a.install[0].Remote != b6 {
		t.Fatalf("child %+v", p.b.install[0])
	}
}

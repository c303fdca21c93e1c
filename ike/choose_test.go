package ike

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike/suite"
	"github.com/spiagent/spiagent/ike/wire"
)

// TestChooseProposal is the responder's choice among QM1 proposals:
// our policies in order, then the peer's proposals in its order, then the
// policy's transforms; PFS from the KE payload; and which notification a
// refusal sends.
func TestChooseProposal(t *testing.T) {
	sel := func(s string) Selector { return Selector{Prefix: netip.MustParsePrefix(s)} }
	lan, far, other := sel("198.51.100.0/24"), sel("203.0.113.0/24"), sel("192.0.2.128/25")
	aes128 := Transform{ESP: alg.AES128, ESPInteg: alg.HMACSHA1}
	aes256 := Transform{ESP: alg.AES256, ESPInteg: alg.HMACSHA256}
	gcm := Transform{ESP: alg.AESGCM128}
	bundle := Transform{AH: alg.HMACSHA1, ESP: alg.DES, ESPInteg: alg.HMACSHA1}
	transport := Transform{ESP: alg.AES128, ESPInteg: alg.HMACSHA1, Mode: alg.Transport}
	pol := func(tag string, pfs alg.Group, ts ...Transform) *ChildPolicy {
		return &ChildPolicy{Tag: tag, LocalTS: lan, RemoteTS: far, PFS: pfs, Proposals: ts, Lifetime: time.Hour}
	}
	// The peer's offer: its transforms as numbered proposals, as wireProps
	// encodes them (group g in every transform when PFS is on).
	offer := func(sa *ikeSA, g alg.Group, ts ...Transform) []wire.Proposal {
		var out []wire.Proposal
		for i, tr := range ts {
			out = append(out, (&Engine{}).wireProps(sa, uint8(i+1), tr, map[alg.Protocol]uint32{alg.ESP: 0x1001, alg.AH: 0x1002}, g, time.Hour, 0)...)
		}
		return out
	}
	ke := func(g alg.Group) []byte { return make([]byte, suite.PublicLen(g)) }
	plain := &ikeSA{}
	natted := &ikeSA{nattVID: wire.NATTRFC, natRemote: true}

	for _, tc := range []struct {
		desc     string
		sa       *ikeSA
		pols     []*ChildPolicy
		ci, cr   Selector // the initiator's side, ours
		props    []wire.Proposal
		ke       []byte
		wantTag  string
		wantT    Transform
		wantG    alg.Group
		wantNum  uint8 // proposal number chosen
		wantN    int   // reply proposals (2 for a bundle)
		wantNote uint16
	}{
		{desc: "peer's first acceptable proposal", sa: plain, pols: []*ChildPolicy{pol("p", 0, aes128, aes256)},
			ci: far, cr: lan, props: offer(plain, 0, gcm, aes256, aes128), wantTag: "p", wantT: aes256, wantNum: 2, wantN: 1},
		{desc: "our first policy wins", sa: plain, pols: []*ChildPolicy{pol("a", 0, aes128), pol("b", 0, aes256)},
			ci: far, cr: lan, props: offer(plain, 0, aes256, aes128), wantTag: "a", wantT: aes128, wantNum: 2, wantN: 1},
		{desc: "a later policy covers the IDs", sa: plain, pols: []*ChildPolicy{{Tag: "x", LocalTS: lan, RemoteTS: other, Proposals: []Transform{aes128}}, pol("y", 0, aes128)},
			ci: far, cr: lan, props: offer(plain, 0, aes128), wantTag: "y", wantT: aes128, wantNum: 1, wantN: 1},
		{desc: "narrower IDs within the policy", sa: plain, pols: []*ChildPolicy{pol("p", 0, aes128)},
			ci: sel("203.0.113.7/32"), cr: sel("198.51.100.9/32"), props: offer(plain, 0, aes128), wantTag: "p", wantT: aes128, wantNum: 1, wantN: 1},
		{desc: "AH+ESP bundle", sa: plain, pols: []*ChildPolicy{pol("p", 0, bundle)},
			ci: far, cr: lan, props: offer(plain, 0, bundle), wantTag: "p", wantT: bundle, wantNum: 1, wantN: 2},
		{desc: "PFS group from the proposal", sa: plain, pols: []*ChildPolicy{pol("p", alg.MODP2048, aes128)},
			ci: far, cr: lan, props: offer(plain, alg.MODP2048, aes128), ke: ke(alg.MODP2048), wantTag: "p", wantT: aes128, wantG: alg.MODP2048, wantNum: 1, wantN: 1},
		{desc: "peer's PFS accepted without ours", sa: plain, pols: []*ChildPolicy{pol("p", 0, aes128)},
			ci: far, cr: lan, props: offer(plain, alg.ECP256, aes128), ke: ke(alg.ECP256), wantTag: "p", wantT: aes128, wantG: alg.ECP256, wantNum: 1, wantN: 1},
		{desc: "NAT-T modes", sa: natted, pols: []*ChildPolicy{pol("p", 0, transport)},
			ci: far, cr: lan, props: offer(natted, 0, transport), wantTag: "p", wantT: transport, wantNum: 1, wantN: 1},

		{desc: "IDs outside every policy", sa: plain, pols: []*ChildPolicy{pol("p", 0, aes128)},
			ci: other, cr: lan, props: offer(plain, 0, aes128), wantNote: wire.NotifyInvalidID},
		{desc: "no policy for the peer", sa: plain, ci: far, cr: lan, props: offer(plain, 0, aes128), wantNote: wire.NotifyInvalidID},
		{desc: "IDs fit, algorithms do not", sa: plain, pols: []*ChildPolicy{pol("p", 0, aes128)},
			ci: far, cr: lan, props: offer(plain, 0, aes256, gcm), wantNote: wire.NotifyNoProposalChosen},
		{desc: "mode differs", sa: plain, pols: []*ChildPolicy{pol("p", 0, aes128)},
			ci: far, cr: lan, props: offer(plain, 0, transport), wantNote: wire.NotifyNoProposalChosen},
		{desc: "NAT-T encapsulation without NAT", sa: plain, pols: []*ChildPolicy{pol("p", 0, aes128)},
			ci: far, cr: lan, props: offer(natted, 0, aes128), wantNote: wire.NotifyNoProposalChosen},
		{desc: "our PFS, no KE", sa: plain, pols: []*ChildPolicy{pol("p", alg.MODP2048, aes128)},
			ci: far, cr: lan, props: offer(plain, 0, aes128), wantNote: wire.NotifyNoProposalChosen},
		{desc: "PFS group differs", sa: plain, pols: []*ChildPolicy{pol("p", alg.MODP2048, aes128)},
			ci: far, cr: lan, props: offer(plain, alg.MODP1536, aes128), ke: ke(alg.MODP1536), wantNote: wire.NotifyNoProposalChosen},
		{desc: "KE length not the group's", sa: plain, pols: []*ChildPolicy{pol("p", alg.MODP2048, aes128)},
			ci: far, cr: lan, props: offer(plain, alg.MODP2048, aes128), ke: ke(alg.MODP1024), wantNote: wire.NotifyNoProposalChosen},
		{desc: "KE without a group attribute", sa: plain, pols: []*ChildPolicy{pol("p", 0, aes128)},
			ci: far, cr: lan, props: offer(plain, 0, aes128), ke: ke(alg.MODP2048), wantNote: wire.NotifyNoProposalChosen},
		{desc: "half a bundle", sa: plain, pols: []*ChildPolicy{pol("p", 0, bundle)},
			ci: far, cr: lan, props: offer(plain, 0, Transform{ESP: alg.DES, ESPInteg: alg.HMACSHA1}), wantNote: wire.NotifyNoProposalChosen},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c, nt := chooseProposal(tc.sa, tc.pols, tc.ci, tc.cr, tc.props, tc.ke)
			if nt != tc.wantNote {
				t.Fatalf("notify %d, want %d (choice %+v)", nt, tc.wantNote, c)
			}
			if tc.wantNote != 0 {
				return
			}
			if c.pol.Tag != tc.wantTag || c.t != tc.wantT || c.group != tc.wantG || len(c.reply) != tc.wantN || c.reply[0].Number != tc.wantNum {
				t.Fatalf("chose policy %s transform %v group %v, %d proposals numbered %d; want %s %v %v, %d numbered %d",
					c.pol.Tag, c.t, c.group, len(c.reply), c.reply[0].Number, tc.wantTag, tc.wantT, tc.wantG, tc.wantN, tc.wantNum)
			}
			for _, r := range c.reply {
				if len(r.Transforms) != 1 {
					t.Fatalf("reply proposal with %d transforms, want 1", len(r.Transforms))
				}
			}
		})
	}
}

package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spiagent/spiagent/agent/intent"
	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike"
	"github.com/spiagent/spiagent/ipsec"
)

var (
	local = netip.MustParseAddr("192.0.2.1")
	peer  = netip.MustParseAddr("192.0.2.2")
)

func TestReqIDForIsStableAndProbesCollisions(t *testing.T) {
	used := map[uint32]string{}
	a := reqIDFor("m/10@wan0#10", used)
	if a == 0 || a >= reqIDSpan {
		t.Fatalf("reqid %d out of range", a)
	}
	if b := reqIDFor("m/10@wan0#10", used); b != a {
		t.Fatalf("not stable: %d then %d", a, b)
	}
	used[a] = "someone else"
	b := reqIDFor("m/10@wan0#10", used)
	if b == a || b == 0 {
		t.Fatalf("collision not probed past: %d", b)
	}
	used[a] = "m/10@wan0#10"
	if c := reqIDFor("m/10@wan0#10", used); c != a {
		t.Fatalf("own entry treated as a collision: %d, want %d", c, a)
	}
}

func TestDataplaneSAsBundle(t *testing.T) {
	c := &ike.ChildSA{
		ReqID: 7, Local: local, Remote: peer, Mode: alg.Tunnel,
		LocalTS:  ike.Selector{Prefix: netip.MustParsePrefix("198.51.100.0/24")},
		RemoteTS: ike.Selector{Prefix: netip.MustParsePrefix("203.0.113.0/24")},
		In: []ike.SA{{Proto: alg.AH, SPI: 0x1001, Integ: alg.HMACSHA1, IntegKey: make(alg.Key, 20)},
			{Proto: alg.ESP, SPI: 0x1002, Cipher: alg.DES, EncKey: make(alg.Key, 8), Integ: alg.HMACSHA1, IntegKey: make(alg.Key, 20)}},
		Out: []ike.SA{{Proto: alg.AH, SPI: 0x2001, Integ: alg.HMACSHA1, IntegKey: make(alg.Key, 20)},
			{Proto: alg.ESP, SPI: 0x2002, Cipher: alg.DES, EncKey: make(alg.Key, 8), Integ: alg.HMACSHA1, IntegKey: make(alg.Key, 20)}},
		Lifetime: time.Hour, LifetimeKB: 4608000,
	}
	sas := dataplaneSAs(c, 64)
	if len(sas) != 4 {
		t.Fatalf("%d SAs, want 4", len(sas))
	}
	for _, sa := range sas {
		if err := sa.Validate(); err != nil {
			t.Errorf("SA %s invalid: %v", sa.Key(), err)
		}
		if sa.ReqID != 7 || sa.Lifetime.HardBytes != 4608000*1024 || sa.Lifetime.SoftBytes >= sa.Lifetime.HardBytes {
			t.Errorf("SA %s: reqid %d lifetime %+v", sa.Key(), sa.ReqID, sa.Lifetime)
		}
		in := sa.Dir == ipsec.DirIn
		if in != (sa.Dst == local) || (in && sa.ReplayWindow != 64) || (!in && sa.ReplayWindow != 0) {
			t.Errorf("SA %s: direction %v, dst %v, replay %d", sa.Key(), sa.Dir, sa.Dst, sa.ReplayWindow)
		}
		// Every SA of the bundle, AH included, carries the inner selector.
		wantSrc := "198.51.100.0/24"
		if in {
			wantSrc = "203.0.113.0/24"
		}
		if sa.Selector.Src.String() != wantSrc {
			t.Errorf("SA %s selector %v", sa.Key(), sa.Selector)
		}
		// One tunnel per bundle: ESP's; AH is outside it in transport
		// mode (the kernel would otherwise add a second outer header,
		// which neither IOS nor the userspace dataplane understands).
		if want := map[alg.Protocol]alg.Mode{alg.ESP: alg.Tunnel, alg.AH: alg.Transport}[sa.Proto]; sa.Mode != want {
			t.Errorf("SA %s mode %v, want %v", sa.Key(), sa.Mode, want)
		}
	}
	// AH alone keeps the negotiated mode.
	c.In, c.Out = c.In[:1], c.Out[:1]
	for _, sa := range dataplaneSAs(c, 64) {
		if sa.Mode != alg.Tunnel {
			t.Errorf("AH-only SA %s mode %v, want tunnel", sa.Key(), sa.Mode)
		}
	}
}

func TestChildPoliciesFromTunnels(t *testing.T) {
	tr := intent.Transform{Name: "t", ESP: alg.AES256, ESPInteg: alg.HMACSHA256}
	in := &intent.Intent{Tunnels: []intent.Tunnel{{
		Map: "m", Seq: 10, Interface: "wan0", Local: local, Peers: []netip.Addr{peer}, Transforms: []intent.Transform{tr},
		Rules: []intent.Rule{
			{Seq: 5, Permit: false, Selector: ipsec.Selector{Src: netip.MustParsePrefix("198.51.100.7/32"), Dst: netip.MustParsePrefix("0.0.0.0/0")}},
			{Seq: 10, Permit: true, Selector: ipsec.Selector{Src: netip.MustParsePrefix("198.51.100.0/24"), Dst: netip.MustParsePrefix("203.0.113.0/24"),
				Proto: 17, DstPort: ipsec.PortRange{Lo: 53, Hi: 53}}},
		},
		PFS: alg.MODP2048, Lifetime: time.Hour, LifeKB: 1000,
	}}}
	cps := childPolicies(in, map[string]uint32{"m/10@wan0#10": 42})
	if len(cps) != 1 {
		t.Fatalf("%d child policies, want 1 (deny entries are bypass, not negotiated)", len(cps))
	}
	cp := cps[0]
	if cp.Tag != "m/10@wan0#10" || cp.ReqID != 42 || cp.Peer != peer || cp.Local != local || cp.PFS != alg.MODP2048 ||
		cp.RemoteTS.Port != 53 || cp.RemoteTS.Proto != 17 || cp.LocalTS.Port != 0 ||
		len(cp.Proposals) != 1 || cp.Proposals[0].ESP != alg.AES256 || cp.Proposals[0].ESPInteg != alg.HMACSHA256 {
		t.Errorf("child policy %+v", cp)
	}
	// GCM maps to the engine's ESP-only GCM ciphers. (That an unsupported
	// key size, esp-gcm 192, is a clear error and not a silent downgrade is
	// now the intent's to say: see intent.TestTransforms.)
	in.Tunnels[0].Transforms[0] = intent.Transform{Name: "g", ESP: alg.AESGCM256}
	if cps := childPolicies(in, nil); cps[0].Proposals[0].ESP != alg.AESGCM256 {
		t.Errorf("esp-gcm 256: %+v", cps)
	}
}

func TestTemplatesInnermostFirst(t *testing.T) {
	tm := templates(intent.Transform{AH: alg.HMACSHA1, ESP: alg.DES}, local, peer, 9)
	if len(tm) != 2 || tm[0].Proto != alg.ESP || tm[1].Proto != alg.AH || tm[0].ReqID != 9 || tm[1].Dst != peer {
		t.Fatalf("templates %+v: want ESP then AH, reqid 9, towards the peer", tm)
	}
	if tm[0].Mode != alg.Tunnel || tm[1].Mode != alg.Transport {
		t.Errorf("template modes %v, %v: want the tunnel on ESP and AH in transport mode outside it", tm[0].Mode, tm[1].Mode)
	}
	ah := templates(intent.Transform{AH: alg.HMACSHA1}, local, peer, 9)
	if len(ah) != 1 || ah[0].Mode != alg.Tunnel {
		t.Errorf("AH-only templates %+v: want one tunnel-mode AH", ah)
	}
}

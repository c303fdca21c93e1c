package ike

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike/suite"
	"github.com/spiagent/spiagent/ike/wire"
)

// wantKeyMat is RFC 2409 §5.5 written out independently of suite.KeyMat:
// K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b),
// Kn = prf(SKEYID_d, K(n-1) | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b).
func wantKeyMat(newHash func() hash.Hash, d, gqm []byte, proto byte, spi uint32, ni, nr []byte, n int) []byte {
	var out, k []byte
	for len(out) < n {
		m := hmac.New(newHash, d)
		m.Write(k)
		m.Write(gqm)
		m.Write([]byte{proto})
		m.Write(binary.BigEndian.AppendUint32(nil, spi))
		m.Write(ni)
		m.Write(nr)
		k = m.Sum(nil)
		out = append(out, k...)
	}
	return out[:n]
}

// doneExchange returns n's completed Quick alg.Mode exchange (kept a while to
// answer retransmissions), for its nonces, g(qm)^xy and SKEYID_d.
func doneExchange(t *testing.T, n *node) *exchange {
	t.Helper()
	for _, sa := range n.e.sas {
		for _, x := range sa.exchanges {
			if x.done {
				return x
			}
		}
	}
	t.Fatal("no completed Quick alg.Mode exchange")
	return nil
}

// checkKeyMat recomputes every ESP SA's KEYMAT of c from the exchange x
// and checks that the encryption key (key then salt) and the integrity key
// are its consecutive slices.
func checkKeyMat(t *testing.T, x *exchange, c ChildSA, newHash func() hash.Hash) {
	t.Helper()
	for _, s := range append(append([]SA{}, c.In...), c.Out...) {
		if s.Proto != alg.ESP {
			continue
		}
		encLen := map[alg.Cipher]int{alg.AESGCM128: 20, alg.AESGCM256: 36, alg.ESPNull: 0, alg.AES128: 16}[s.Cipher]
		n := encLen + s.Integ.KeyLen()
		k := wantKeyMat(newHash, x.sa.keys.D, x.gqm, 3, s.SPI, x.ni, x.nr, n)
		if len(s.EncKey) != encLen || !bytes.Equal(s.EncKey, k[:encLen]) {
			t.Fatalf("%v SPI %#x: EncKey (%d bytes) is not KEYMAT[0:%d]", s.Cipher, s.SPI, len(s.EncKey), encLen)
		}
		if s.Cipher.IsAEAD() {
			// RFC 4106 §8.1: the salt is the last 4 bytes of the KEYMAT taken.
			if salt := s.EncKey[len(s.EncKey)-4:]; !bytes.Equal(salt, k[encLen-4:encLen]) || s.Cipher.KeyLen() != encLen-4 {
				t.Fatalf("%v: salt placement", s.Cipher)
			}
		}
		if !bytes.Equal(s.IntegKey, k[encLen:]) || (s.Integ == alg.IntegNone) != (s.IntegKey == nil) {
			t.Fatalf("%v SPI %#x: IntegKey is not KEYMAT[%d:%d]", s.Cipher, s.SPI, encLen, n)
		}
	}
}

// AES-GCM (RFC 4106) and NULL (RFC 2410) ESP, both engines in memory.
func TestESPGCMAndNull(t *testing.T) {
	gcm128 := Transform{ESP: alg.AESGCM128}
	gcm256 := Transform{ESP: alg.AESGCM256}
	tests := []struct {
		desc   string
		tr     Transform
		pfs    alg.Group
		natt   NATTMode
		hash   alg.Hash
		id     uint8
		keyLen int
	}{
		{"gcm128", gcm128, 0, NATTAuto, alg.SHA1, 20, 20},
		{"gcm128 pfs", gcm128, alg.MODP2048, NATTAuto, alg.SHA1, 20, 20},
		{"gcm128 transport", Transform{ESP: alg.AESGCM128, Mode: alg.Transport}, 0, NATTAuto, alg.SHA1, 20, 20},
		{"gcm128 natt forced", gcm128, alg.ECP256, NATTForce, alg.SHA1, 20, 20},
		{"gcm128 natt forced transport", Transform{ESP: alg.AESGCM128, Mode: alg.Transport}, 0, NATTForce, alg.SHA1, 20, 20},
		{"gcm256", gcm256, 0, NATTAuto, alg.SHA256, 20, 36},
		{"gcm256 pfs", gcm256, alg.MODP2048, NATTAuto, alg.SHA256, 20, 36},
		{"gcm256 transport pfs", Transform{ESP: alg.AESGCM256, Mode: alg.Transport}, alg.MODP2048, NATTAuto, alg.SHA256, 20, 36},
		{"gcm256 natt forced", gcm256, 0, NATTForce, alg.SHA256, 20, 36},
		{"gcm256 natt forced transport pfs", Transform{ESP: alg.AESGCM256, Mode: alg.Transport}, alg.MODP2048, NATTForce, alg.SHA256, 20, 36},
		{"null sha1", Transform{ESP: alg.ESPNull, ESPInteg: alg.HMACSHA1}, 0, NATTAuto, alg.SHA1, 11, 0},
		{"null sha1 pfs natt forced", Transform{ESP: alg.ESPNull, ESPInteg: alg.HMACSHA1}, alg.MODP2048, NATTForce, alg.SHA1, 11, 0},
		{"null sha256 transport", Transform{ESP: alg.ESPNull, ESPInteg: alg.HMACSHA256, Mode: alg.Transport}, 0, NATTAuto, alg.SHA256, 11, 0},
		{"ah + gcm bundle", Transform{AH: alg.HMACSHA1, ESP: alg.AESGCM128}, 0, NATTAuto, alg.SHA1, 20, 20},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := baseConfig()
			cfg.NATT = tc.natt
			cfg.Policies[0].Hash = tc.hash
			var logs strings.Builder
			cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
			p := newPair(t, cfg, cfg, tc.tr)
			p.a.e.policies["mapA"].PFS = tc.pfs
			p.b.e.policies["mapB"].PFS = tc.pfs
			p.initiate(p.a, "mapA")
			if len(p.a.install) != 1 || len(p.b.install) != 1 {
				t.Fatalf("installs A %d B %d, events %v %v", len(p.a.install), len(p.b.install), p.a.events, p.b.events)
			}
			a, b := p.a.install[0], p.b.install[0]
			checkChildPair(t, a, b)
			if a.PFS != tc.pfs || a.Mode != tc.tr.Mode || (tc.natt == NATTForce) != (a.Encap != nil) {
				t.Fatalf("pfs %v mode %v encap %+v", a.PFS, a.Mode, a.Encap)
			}
			esp := a.In[len(a.In)-1]
			if esp.Proto != alg.ESP || esp.TransformID != tc.id || esp.Cipher != tc.tr.ESP || esp.Integ != tc.tr.ESPInteg ||
				len(esp.EncKey) != tc.keyLen || (tc.keyLen == 0) != (esp.EncKey == nil) {
				t.Fatalf("ESP SA: proto %v id %d cipher %v integ %v key %d bytes", esp.Proto, esp.TransformID, esp.Cipher, esp.Integ, len(esp.EncKey))
			}
			newHash := sha1.New
			if tc.hash == alg.SHA256 {
				newHash = sha256.New
			}
			xa, xb := doneExchange(t, p.a), doneExchange(t, p.b)
			if (tc.pfs != alg.GroupNone) != (xa.gqm != nil) || !bytes.Equal(xa.gqm, xb.gqm) {
				t.Fatal("g(qm)^xy")
			}
			checkKeyMat(t, xa, a, newHash)
			checkKeyMat(t, xb, b, newHash)
			weak := strings.Contains(logs.String(), "weak algorithms")
			if weak != (tc.tr.ESP == alg.ESPNull) {
				t.Fatalf("weak-algorithm warning %v for %v", weak, tc.tr)
			}
		})
	}
}

// The offer is GCM, B wants CBC (and the other way round, and GCM-128 vs
// GCM-256): NO-PROPOSAL-CHOSEN, nothing installed.
func TestESPGCMMismatch(t *testing.T) {
	for _, c := range [][2]Transform{
		{{ESP: alg.AESGCM128}, {ESP: alg.AES128, ESPInteg: alg.HMACSHA1}},
		{{ESP: alg.AES128, ESPInteg: alg.HMACSHA1}, {ESP: alg.AESGCM128}},
		{{ESP: alg.AESGCM128}, {ESP: alg.AESGCM256}},
		{{ESP: alg.ESPNull, ESPInteg: alg.HMACSHA1}, {ESP: alg.ESPNull, ESPInteg: alg.HMACSHA256}},
	} {
		p := newPair(t, baseConfig(), baseConfig(), c[0])
		pb := childPolicy("mapB", addrB, addrA, lanB, lanA, c[1])
		if err := p.b.e.SetChildPolicies([]ChildPolicy{pb}); err != nil {
			t.Fatal(err)
		}
		p.initiate(p.a, "mapA")
		if len(p.a.install) != 0 || len(p.b.install) != 0 || p.b.e.Counters().NoProposal != 1 {
			t.Fatalf("%v vs %v: installs A %d B %d, no-proposal %d", c[0], c[1], len(p.a.install), len(p.b.install), p.b.e.Counters().NoProposal)
		}
		found := false
		for _, ev := range p.a.events {
			if ev.Kind == EventNotify && ev.NotifyType == wire.NotifyNoProposalChosen {
				found = true
			}
		}
		if !found {
			t.Fatalf("%v vs %v: A got no NO-PROPOSAL-CHOSEN: %v", c[0], c[1], p.a.events)
		}
	}
	// A second, matching proposal is chosen over the GCM one B lacks.
	p := newPair(t, baseConfig(), baseConfig(), Transform{ESP: alg.AESGCM256}, Transform{ESP: alg.AESGCM128})
	pb := childPolicy("mapB", addrB, addrA, lanB, lanA, Transform{ESP: alg.AESGCM128})
	if err := p.b.e.SetChildPolicies([]ChildPolicy{pb}); err != nil {
		t.Fatal(err)
	}
	p.initiate(p.a, "mapA")
	if len(p.a.install) != 1 || p.a.install[0].In[0].Cipher != alg.AESGCM128 {
		t.Fatalf("installs %d", len(p.a.install))
	}
	checkChildPair(t, p.a.install[0], p.b.install[0])
}

// ESP-only ciphers are refused in phase 1 policies; bad ESP combinations
// are refused in child policies.
func TestESPOnlyValidation(t *testing.T) {
	for _, c := range []alg.Cipher{alg.ESPNull, alg.AESGCM128, alg.AESGCM256} {
		cfg := baseConfig()
		cfg.Policies[0].Cipher = c
		_, err := New(cfg, bytes.NewReader(make([]byte, 1024)))
		if err == nil || !strings.Contains(err.Error(), "ESP-only") {
			t.Fatalf("%v as phase 1 cipher: %v", c, err)
		}
		e, _ := New(baseConfig(), bytes.NewReader(make([]byte, 1024)))
		if err := e.SetConfig(cfg); err == nil || !strings.Contains(err.Error(), "ESP-only") {
			t.Fatalf("SetConfig %v as phase 1 cipher: %v", c, err)
		}
	}
	for _, tc := range []struct {
		tr   Transform
		want string
	}{
		{Transform{ESP: alg.ESPNull}, "integrity"},
		{Transform{ESP: alg.ESPNull, AH: alg.HMACSHA1}, "integrity"},
		{Transform{ESP: alg.AESGCM128, ESPInteg: alg.HMACSHA1}, "AEAD"},
		{Transform{ESP: alg.AESGCM256, ESPInteg: alg.HMACSHA256}, "AEAD"},
		{Transform{ESP: alg.Cipher(99), ESPInteg: alg.HMACSHA256}, "unsupported"},
	} {
		e, _ := New(baseConfig(), bytes.NewReader(make([]byte, 1024)))
		err := e.SetChildPolicies([]ChildPolicy{childPolicy("m", addrA, addrB, lanA, lanB, tc.tr)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%v: %v", tc.tr, err)
		}
	}
}

// What goes on the wire for GCM and NULL, and back.
func TestESPTransformAttrs(t *testing.T) {
	p := newPair(t, baseConfig(), baseConfig())
	p.initiate(p.a, "mapA")
	var sa *ikeSA
	for _, s := range p.a.e.sas {
		sa = s
	}
	for _, tc := range []struct {
		tr      Transform
		id      uint8
		keyBits uint64
		auth    uint64
	}{
		{Transform{ESP: alg.AESGCM128}, 20, 128, 0},
		{Transform{ESP: alg.AESGCM256, Mode: alg.Transport}, 20, 256, 0},
		{Transform{ESP: alg.ESPNull, ESPInteg: alg.HMACSHA1}, 11, 0, 2},
		{Transform{ESP: alg.ESPNull, ESPInteg: alg.HMACSHA256}, 11, 0, 5},
	} {
		props := p.a.e.wireProps(sa, 1, tc.tr, map[alg.Protocol]uint32{alg.ESP: 0x1234}, alg.MODP2048, time.Hour, 0)
		enc := wire.SA{DOI: wire.DOIIPsec, Situation: wire.SituationIdentOnly, Proposals: props}.Encode()
		dec, err := wire.DecodeSA(enc)
		if err != nil || len(dec.Proposals) != 1 || len(dec.Proposals[0].Transforms) != 1 {
			t.Fatalf("%v: %v %+v", tc.tr, err, dec)
		}
		if !bytes.Equal(dec.Encode(), enc) {
			t.Fatalf("%v: re-encoding differs", tc.tr)
		}
		wt := dec.Proposals[0].Transforms[0]
		kb, hasKB := wt.Attr(wire.AttrSAKeyLength)
		auth, hasAuth := wt.Attr(wire.AttrSAAuthAlg)
		if dec.Proposals[0].Protocol != wire.ProtoESP || wt.ID != tc.id || kb != tc.keyBits || hasKB != (tc.keyBits != 0) ||
			auth != tc.auth || hasAuth != (tc.auth != 0) {
			t.Fatalf("%v: id %d key length %d/%v auth %d/%v", tc.tr, wt.ID, kb, hasKB, auth, hasAuth)
		}
		if c, ok := suite.CipherFromESP(wt.ID, kb); !ok || c != tc.tr.ESP {
			t.Fatalf("%v: decoded cipher %v %v", tc.tr, c, ok)
		}
		if !matchTransform(sa, tc.tr, wire.ProtoESP, &wt, alg.MODP2048) {
			t.Fatalf("%v: does not match itself", tc.tr)
		}
	}
	// GCM with an authentication attribute, NULL without one, GCM with a
	// 192-bit key: none match.
	bad := []struct {
		tr Transform
		wt wire.Transform
	}{
		{Transform{ESP: alg.AESGCM128}, wire.Transform{ID: 20, Attrs: []wire.Attr{{Type: wire.AttrSAKeyLength, Value: 128}, {Type: wire.AttrSAAuthAlg, Value: 2}}}},
		{Transform{ESP: alg.AESGCM128}, wire.Transform{ID: 20}},
		{Transform{ESP: alg.AESGCM128}, wire.Transform{ID: 20, Attrs: []wire.Attr{{Type: wire.AttrSAKeyLength, Value: 192}}}},
		{Transform{ESP: alg.ESPNull, ESPInteg: alg.HMACSHA1}, wire.Transform{ID: 11}},
		{Transform{ESP: alg.ESPNull, ESPInteg: alg.HMACSHA1}, wire.Transform{ID: 11, Attrs: []wire.Attr{{Type: wire.AttrSAKeyLength, Value: 128}, {Type: wire.AttrSAAuthAlg, Value: 2}}}},
	}
	for _, b := range bad {
		if matchTransform(sa, b.tr, wire.ProtoESP, &b.wt, alg.GroupNone) {
			t.Fatalf("%v matched %+v", b.tr, b.wt)
		}
	}
}

package xfrm

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink/nl"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

func TestAlgorithmTables(t *testing.T) {
	ciphers := []struct {
		c    alg.Cipher
		name string
		icv  int
	}{
		{alg.ESPNull, "ecb(cipher_null)", 0},
		{alg.DES, "cbc(des)", 0},
		{alg.TripleDES, "cbc(des3_ede)", 0},
		{alg.AES128, "cbc(aes)", 0},
		{alg.AES192, "cbc(aes)", 0},
		{alg.AES256, "cbc(aes)", 0},
		{alg.AESGCM128, "rfc4106(gcm(aes))", 128},
		{alg.AESGCM256, "rfc4106(gcm(aes))", 128},
	}
	for _, tc := range ciphers {
		a, ok := cipherAlgo(tc.c)
		if !ok || a.name != tc.name || a.icv != tc.icv {
			t.Errorf("%s: got %+v %v", tc.c, a, ok)
		}
	}
	if _, ok := cipherAlgo(alg.Cipher(99)); ok {
		t.Error("unknown cipher mapped")
	}
	integs := []struct {
		i     alg.Integrity
		name  string
		trunc int
	}{
		{alg.HMACMD5, "hmac(md5)", 96},
		{alg.HMACSHA1, "hmac(sha1)", 96},
		{alg.HMACSHA256, "hmac(sha256)", 128},
		{alg.HMACSHA384, "hmac(sha384)", 192},
		{alg.HMACSHA512, "hmac(sha512)", 256},
	}
	for _, tc := range integs {
		a, ok := integAlgo(tc.i)
		if !ok || a.name != tc.name || a.trunc != tc.trunc {
			t.Errorf("%s: got %+v %v", tc.i, a, ok)
		}
	}
	if _, ok := integAlgo(alg.IntegNone); ok {
		t.Error("none mapped to an algorithm")
	}
}

func TestPortMask(t *testing.T) {
	for _, tc := range []struct {
		desc       string
		r          ipsec.PortRange
		port, mask uint16
		err        bool
	}{
		{"any zero", ipsec.PortRange{}, 0, 0, false},
		{"any full", ipsec.PortRange{Lo: 0, Hi: 65535}, 0, 0, false},
		{"single", ipsec.PortRange{Lo: 500, Hi: 500}, 500, 0xffff, false},
		{"aligned 4096", ipsec.PortRange{Lo: 4096, Hi: 8191}, 4096, 0xf000, false},
		{"aligned 2", ipsec.PortRange{Lo: 10, Hi: 11}, 10, 0xfffe, false},
		{"upper half", ipsec.PortRange{Lo: 32768, Hi: 65535}, 32768, 0x8000, false},
		{"unaligned", ipsec.PortRange{Lo: 1000, Hi: 2000}, 0, 0, true},
		{"misaligned block", ipsec.PortRange{Lo: 11, Hi: 12}, 0, 0, true},
		{"empty", ipsec.PortRange{Lo: 20, Hi: 10}, 0, 0, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p, m, err := portMask(tc.r)
			if (err != nil) != tc.err || (err != nil && !errors.Is(err, ErrPortRange)) {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if p != tc.port || m != tc.mask {
				t.Errorf("got %d/0x%x, want %d/0x%x", p, m, tc.port, tc.mask)
			}
			if err == nil && !tc.r.Any() {
				// The mask must match exactly the ports of the range.
				back := maskRange(p, m)
				if back != tc.r {
					t.Errorf("maskRange(%d, 0x%x) = %v, want %v", p, m, back, tc.r)
				}
			}
		})
	}
}

func TestPolicyIndexRoundTrip(t *testing.T) {
	for _, k := range []ipsec.PolicyKey{{Dir: ipsec.DirIn, ID: 0}, {Dir: ipsec.DirOut, ID: 7}, {Dir: ipsec.DirFwd, ID: maxPolicyID}} {
		idx, err := policyIndex(k)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := xfrmDir(k.Dir); idx&7 != uint32(d) {
			t.Errorf("%v: index 0x%x does not carry the direction", k, idx)
		}
		if back, ok := policyKey(idx); !ok || back != k {
			t.Errorf("%v -> 0x%x -> %v %v", k, idx, back, ok)
		}
	}
	if _, err := policyIndex(ipsec.PolicyKey{ID: maxPolicyID + 1}); err == nil {
		t.Error("policy id above the range accepted")
	}
	if _, ok := policyKey(0x29); ok {
		t.Error("kernel-generated index taken as ours")
	}
}

func TestSelector(t *testing.T) {
	sel, err := xfrmSelector(ipsec.Selector{
		Src: netip.MustParsePrefix("198.51.100.7/24"), Dst: netip.MustParsePrefix("203.0.113.0/25"),
		Proto: 6, DstPort: ipsec.PortRange{Lo: 443, Hi: 443},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sel.Family != 2 || sel.PrefixlenS != 24 || sel.PrefixlenD != 25 || sel.Proto != 6 {
		t.Errorf("selector %+v", sel)
	}
	if sel.Saddr[3] != 0 { // masked to the prefix
		t.Errorf("source not masked: %v", sel.Saddr[:4])
	}
	if nl.Swap16(sel.Dport) != 443 || sel.DportMask != 0xffff || sel.Sport != 0 || sel.SportMask != 0 {
		t.Errorf("ports %x/%x %x/%x", sel.Dport, sel.DportMask, sel.Sport, sel.SportMask)
	}
	for _, tc := range []struct {
		desc string
		s    ipsec.Selector
	}{
		{"ports without protocol", ipsec.Selector{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8"), DstPort: ipsec.PortRange{Lo: 80, Hi: 80}}},
		{"icmp with ports", ipsec.Selector{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8"), Proto: 1, DstPort: ipsec.PortRange{Lo: 80, Hi: 80}}},
		{"unaligned range", ipsec.Selector{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8"), Proto: 17, SrcPort: ipsec.PortRange{Lo: 1000, Hi: 2000}}},
		{"no prefixes", ipsec.Selector{}},
		{"mixed families", ipsec.Selector{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("2001:db8::/32")}},
	} {
		if _, err := xfrmSelector(tc.s); err == nil {
			t.Errorf("%s: accepted", tc.desc)
		}
	}
}

func testSA() ipsec.SA {
	return ipsec.SA{
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
		Proto: alg.ESP, SPI: 0x1000, Dir: ipsec.DirOut, Mode: alg.Tunnel,
		Cipher: alg.AES128, CipherKey: make(alg.Key, 16),
		Integ: alg.HMACSHA256, IntegKey: make(alg.Key, 32),
		ReqID: 9,
	}
}

func TestStateInfo(t *testing.T) {
	d := &Dataplane{cfg: config{reqIDBase: DefaultReqIDBase}}
	sa := testSA()
	sa.ReplayWindow = 32
	sa.Lifetime = ipsec.Lifetime{SoftBytes: 1000, HardBytes: 2000, SoftTime: 1500 * time.Millisecond, HardTime: 3 * time.Second}
	m, err := d.stateInfo(&sa)
	if err != nil {
		t.Fatal(err)
	}
	if m.Reqid != DefaultReqIDBase+9 || !d.ownsReqID(m.Reqid) || m.Mode != 1 || m.ReplayWindow != 32 {
		t.Errorf("info: reqid 0x%x mode %d window %d", m.Reqid, m.Mode, m.ReplayWindow)
	}
	if nl.Swap32(m.Id.Spi) != 0x1000 || m.Id.Proto != 50 || m.Family != 2 {
		t.Errorf("id: %+v family %d", m.Id, m.Family)
	}
	l := m.Lft
	if l.SoftByteLimit != 1000 || l.HardByteLimit != 2000 || l.SoftAddExpiresSeconds != 2 || l.HardAddExpiresSeconds != 3 || l.SoftPacketLimit != nl.XFRM_INF {
		t.Errorf("lifetime %+v", l)
	}
	if m.Sel.Family != 0 {
		t.Errorf("tunnel-mode SA got a selector: %+v", m.Sel)
	}
	sa.Mode = alg.Transport
	sa.Selector = ipsec.Selector{Src: netip.MustParsePrefix("192.0.2.1/32"), Dst: netip.MustParsePrefix("192.0.2.2/32"), Proto: 17, DstPort: ipsec.PortRange{Lo: 1000, Hi: 2000}}
	if m, err = d.stateInfo(&sa); err != nil {
		t.Fatal(err)
	}
	if m.Mode != 0 || m.Sel.Family != 2 || m.Sel.Proto != 17 || m.Sel.DportMask != 0 {
		t.Errorf("transport selector %+v", m.Sel)
	}
	sa.ReqID = ReqIDSpan
	if _, err := d.stateInfo(&sa); err == nil {
		t.Error("reqid outside the span accepted")
	}
	if d.ownsReqID(DefaultReqIDBase-1) || d.ownsReqID(DefaultReqIDBase+ReqIDSpan) || d.ownsReqID(1) {
		t.Error("ownsReqID accepts reqids outside the range")
	}
}

func TestStateAttrs(t *testing.T) {
	types := func(sa ipsec.SA) []int {
		attrs, err := stateAttrs(&sa)
		if err != nil {
			t.Fatal(err)
		}
		var ts []int
		for _, a := range attrs {
			ts = append(ts, int(a.Type))
		}
		return ts
	}
	eq := func(a, b []int) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	sa := testSA()
	if got := types(sa); !eq(got, []int{nl.XFRMA_ALG_CRYPT, nl.XFRMA_ALG_AUTH_TRUNC}) {
		t.Errorf("cbc+hmac: %v", got)
	}
	gcm := testSA()
	gcm.Cipher, gcm.CipherKey, gcm.Integ, gcm.IntegKey = alg.AESGCM128, make(alg.Key, 20), alg.IntegNone, nil
	gcm.Encap = &ipsec.UDPEncap{SrcPort: 4500, DstPort: 4500}
	gcm.ReplayWindow = 128
	if got := types(gcm); !eq(got, []int{nl.XFRMA_ALG_AEAD, nl.XFRMA_ENCAP, nl.XFRMA_REPLAY_ESN_VAL}) {
		t.Errorf("gcm+encap+window: %v", got)
	}
	ah := testSA()
	ah.Proto, ah.Cipher, ah.CipherKey = alg.AH, alg.CipherNone, nil
	if got := types(ah); !eq(got, []int{nl.XFRMA_ALG_AUTH_TRUNC}) {
		t.Errorf("ah: %v", got)
	}
	attrs, _ := stateAttrs(&gcm)
	aead := attrs[0].Serialize()[4:]
	if string(aead[:17]) != "rfc4106(gcm(aes))" || nl.NativeEndian().Uint32(aead[64:]) != 160 || nl.NativeEndian().Uint32(aead[68:]) != 128 {
		t.Errorf("aead attr: name %q keylen %d icv %d", aead[:17], nl.NativeEndian().Uint32(aead[64:]), nl.NativeEndian().Uint32(aead[68:]))
	}
	enc := attrs[1].Serialize()[4:]
	if enc[0] != 2 || enc[2] != 0x11 || enc[3] != 0x94 { // UDP_ENCAP_ESPINUDP, sport 4500 big-endian
		t.Errorf("encap attr % x", enc[:8])
	}
}

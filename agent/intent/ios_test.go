package intent

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/gen"
)

// enumValues lists every value of a generated enum type but UNSET, from
// ygot's own table of the YANG enumeration.
func enumValues[E ~int64](t *testing.T) []E {
	t.Helper()
	var zero E
	name := strings.TrimPrefix(fmt.Sprintf("%T", zero), "gen.")
	defs, ok := gen.ΛEnum[name]
	if !ok || len(defs) == 0 {
		t.Fatalf("no enum %s in gen.ΛEnum", name)
	}
	var out []E
	for v := range defs {
		if v != 0 {
			out = append(out, E(v))
		}
	}
	return out
}

// covers checks that every value of the enum has a row, and that no two
// rows share a key or (for reverse lookups) a value.
func covers[K ~int64, V comparable](t *testing.T, ns names[K, V]) {
	t.Helper()
	for _, e := range enumValues[K](t) {
		if _, ok := ns.byKey(e); !ok {
			t.Errorf("%T %v has no row in the IOS table", e, e)
		}
	}
	keys, vals := map[K]bool{}, map[V]bool{}
	for _, n := range ns {
		if keys[n.key] || vals[n.val] {
			t.Errorf("%T %v: duplicate row", n.key, n.key)
		}
		keys[n.key], vals[n.val] = true, true
	}
}

// TestIOSTablesCoverEnums fails when a YANG enum value is added without a
// row (a renamed or removed one does not compile).
func TestIOSTablesCoverEnums(t *testing.T) {
	covers(t, isakmpEncryptions)
	covers(t, isakmpHashes)
	covers(t, isakmpAuthentications)
	covers(t, dhGroups)
	covers(t, pfsGroups)
	covers(t, ahTransforms)
	covers(t, espIntegrities)
	covers(t, ipsecModes)
	covers(t, ipsecProtocols)
	covers(t, aclProtocols)

	// ESP ciphers are keyed by (esp-encryption, esp-key-bits).
	for _, e := range enumValues[gen.E_SpiagentTypes_EspEncryption](t) {
		found := false
		for _, n := range espEncryptions {
			found = found || n.key.enc == e
		}
		if !found {
			t.Errorf("esp-encryption %v has no row in the IOS table", e)
		}
		if _, ok := espEncryptions.byKey(espCipher{e, espDefaultBits[e]}); !ok {
			t.Errorf("esp-encryption %v without esp-key-bits has no row", e)
		}
	}
	vals := map[alg.Cipher]bool{}
	for _, n := range espEncryptions {
		if vals[n.val] {
			t.Errorf("%v: two rows", n.val)
		}
		vals[n.val] = true
	}
}

// TestIOSTablesCoverEngine checks the other direction: every algorithm the
// engines negotiate can be shown in state.
func TestIOSTablesCoverEngine(t *testing.T) {
	for _, c := range alg.Ciphers {
		if c.ValidP1() {
			if _, ok := EncryptionEnum(c); !ok {
				t.Errorf("phase 1 cipher %v has no enum", c)
			}
		}
		if _, err := SATransform(alg.ESP, c, alg.IntegNone); err != nil {
			t.Errorf("ESP %v: %v", c, err)
		}
	}
	for _, h := range alg.Hashes {
		if _, ok := HashEnum(h); !ok {
			t.Errorf("hash %v has no enum", h)
		}
	}
	for _, g := range alg.Groups {
		if _, ok := GroupEnum(g); !ok {
			t.Errorf("group %v has no enum", g)
		}
	}
	for _, i := range alg.Integrities {
		if _, err := SATransform(alg.AH, alg.CipherNone, i); err != nil {
			t.Errorf("AH %v: %v", i, err)
		}
		if _, err := SATransform(alg.ESP, alg.AES128, i); err != nil {
			t.Errorf("ESP integrity %v: %v", i, err)
		}
	}
	for _, m := range []alg.Mode{alg.Tunnel, alg.Transport} {
		if _, ok := ModeEnum(m); !ok {
			t.Errorf("mode %v has no enum", m)
		}
	}
	for _, p := range []alg.Protocol{alg.ESP, alg.AH} {
		e, ok := ProtocolEnum(p)
		if back, ok2 := ProtocolOf(e); !ok || !ok2 || back != p {
			t.Errorf("protocol %v: enum %v, back %v", p, e, back)
		}
	}
}

func TestSATransform(t *testing.T) {
	for _, tc := range []struct {
		p    alg.Protocol
		c    alg.Cipher
		i    alg.Integrity
		want string
	}{
		{alg.AH, alg.CipherNone, alg.HMACSHA1, "ah-sha-hmac"},
		{alg.ESP, alg.DES, alg.HMACSHA1, "esp-des esp-sha-hmac"},
		{alg.ESP, alg.AES256, alg.HMACSHA256, "esp-aes 256 esp-sha256-hmac"},
		{alg.ESP, alg.AESGCM128, alg.IntegNone, "esp-gcm 128"},
		{alg.ESP, alg.ESPNull, alg.HMACMD5, "esp-null esp-md5-hmac"},
	} {
		if got, err := SATransform(tc.p, tc.c, tc.i); err != nil || got != tc.want {
			t.Errorf("SATransform(%v, %v, %v) = %q, %v; want %q", tc.p, tc.c, tc.i, got, err, tc.want)
		}
	}
	// Unknown values are errors, never a guess.
	for _, bad := range []struct {
		p alg.Protocol
		c alg.Cipher
		i alg.Integrity
	}{{alg.ESP, alg.Cipher(99), alg.IntegNone}, {alg.ESP, alg.AES128, alg.Integrity(99)}, {alg.AH, alg.CipherNone, alg.IntegNone}, {6, alg.AES128, alg.IntegNone}} {
		if got, err := SATransform(bad.p, bad.c, bad.i); err == nil {
			t.Errorf("SATransform(%v, %v, %v) = %q, want an error", bad.p, bad.c, bad.i, got)
		}
	}
}

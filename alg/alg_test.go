package alg

import (
	"strings"
	"testing"
)

// Sizes are specification constants: RFC 2405, 2451, 3602 (CBC keys and
// blocks), RFC 4106 §8.1 (GCM key + 4-byte salt, 16-byte ICV).
func TestCipherSizes(t *testing.T) {
	for _, tc := range []struct {
		c                             Cipher
		key, salt, keymat, block, icv int
		p1, esp, espOnly, aead, aes   bool
	}{
		{CipherNone, 0, 0, 0, 0, 0, false, false, false, false, false},
		{DES, 8, 0, 8, 8, 0, true, true, false, false, false},
		{TripleDES, 24, 0, 24, 8, 0, true, true, false, false, false},
		{AES128, 16, 0, 16, 16, 0, true, true, false, false, true},
		{AES192, 24, 0, 24, 16, 0, true, true, false, false, true},
		{AES256, 32, 0, 32, 16, 0, true, true, false, false, true},
		{ESPNull, 0, 0, 0, 0, 0, false, true, true, false, false},
		{AESGCM128, 16, 4, 20, 0, 16, false, true, true, true, false},
		{AESGCM256, 32, 4, 36, 0, 16, false, true, true, true, false},
		{Cipher(99), 0, 0, 0, 0, 0, false, false, false, false, false},
	} {
		c := tc.c
		if c.KeyLen() != tc.key || c.SaltLen() != tc.salt || c.KeyMatLen() != tc.keymat || c.BlockSize() != tc.block || c.ICVLen() != tc.icv {
			t.Errorf("%v: key %d salt %d keymat %d block %d icv %d", c, c.KeyLen(), c.SaltLen(), c.KeyMatLen(), c.BlockSize(), c.ICVLen())
		}
		if c.ValidP1() != tc.p1 || c.ValidESP() != tc.esp || c.ESPOnly() != tc.espOnly || c.IsAEAD() != tc.aead || c.IsAESCBC() != tc.aes {
			t.Errorf("%v: p1 %v esp %v esp-only %v aead %v aes-cbc %v", c, c.ValidP1(), c.ValidESP(), c.ESPOnly(), c.IsAEAD(), c.IsAESCBC())
		}
	}
	if !DES.Weak() || AES128.Weak() {
		t.Error("Weak")
	}
}

// RFC 2403, 2404, 4868: key lengths are the hash output, ICVs truncated.
func TestIntegritySizes(t *testing.T) {
	for _, tc := range []struct {
		i        Integrity
		key, icv int
	}{
		{IntegNone, 0, 0}, {HMACMD5, 16, 12}, {HMACSHA1, 20, 12}, {HMACSHA256, 32, 16},
		{HMACSHA384, 48, 24}, {HMACSHA512, 64, 32}, {Integrity(99), 0, 0},
	} {
		if tc.i.KeyLen() != tc.key || tc.i.ICVLen() != tc.icv || tc.i.Valid() != (tc.key != 0) {
			t.Errorf("%v: key %d icv %d valid %v", tc.i, tc.i.KeyLen(), tc.i.ICVLen(), tc.i.Valid())
		}
		if tc.i.ICVLen() > MaxICVLen {
			t.Errorf("%v: ICV above MaxICVLen", tc.i)
		}
	}
	for h, size := range map[Hash]int{HashNone: 0, MD5: 16, SHA1: 20, SHA256: 32, SHA384: 48, SHA512: 64, Hash(99): 0} {
		if h.Size() != size || h.Valid() != (size != 0) {
			t.Errorf("%v: size %d valid %v", h, h.Size(), h.Valid())
		}
	}
	if !HMACMD5.Weak() || HMACSHA1.Weak() || !MD5.Weak() || SHA1.Weak() {
		t.Error("Weak")
	}
}

func TestGroups(t *testing.T) {
	for _, g := range Groups {
		if !g.Valid() || strings.Contains(g.String(), "(") {
			t.Errorf("%d: valid %v name %q", g, g.Valid(), g)
		}
		if g.Weak() != (g < MODP2048) || g.IsECP() != (g >= ECP256) {
			t.Errorf("%v: weak %v ecp %v", g, g.Weak(), g.IsECP())
		}
	}
	for _, g := range []Group{GroupNone, 3, 18, 22} {
		if g.Valid() {
			t.Errorf("group %d valid", g)
		}
	}
	if MODP2048.String() != "modp2048" || ECP521.String() != "ecp521" || Group(3).String() != "group(3)" {
		t.Error("group names")
	}
}

// Every value has one name of its own; an unknown value says its number
// instead of passing for a known one.
func TestNamesDistinct(t *testing.T) {
	seen := map[string]bool{}
	check := func(s string) {
		if s == "" || seen[s] {
			t.Errorf("name %q empty or repeated", s)
		}
		seen[s] = true
	}
	for _, c := range append([]Cipher{CipherNone}, Ciphers...) {
		check("cipher " + c.String())
	}
	for _, i := range append([]Integrity{IntegNone}, Integrities...) {
		check("integ " + i.String())
	}
	for _, h := range append([]Hash{HashNone}, Hashes...) {
		check("hash " + h.String())
	}
	for _, g := range append([]Group{GroupNone}, Groups...) {
		check("group " + g.String())
	}
	for _, s := range []string{ESP.String(), AH.String(), Tunnel.String(), Transport.String()} {
		check(s)
	}
	for _, s := range []string{Cipher(99).String(), Integrity(99).String(), Hash(99).String(), Protocol(6).String(), Mode(7).String()} {
		if !strings.ContainsAny(s, "0123456789") {
			t.Errorf("unknown value named %q", s)
		}
	}
	if Protocol(6).Valid() || !ESP.Valid() || !AH.Valid() || Mode(2).Valid() || !Transport.Valid() {
		t.Error("Valid")
	}
}

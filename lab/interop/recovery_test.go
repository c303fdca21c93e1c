package interop

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
)

// charon's libipsec sends real ESP-in-UDP to us: it must reach the
// transport's ESP handler (not the engine), carry our inbound SPI, and
// decrypt and verify with the keys our engine derived.
func TestCharonESPReachesHandlerAndDecrypts(t *testing.T) {
	s := suites[0] // aes128-sha1: ESP AES-CBC-128 + HMAC-SHA1-96
	l, o, c := establish(t, s)
	// One ping from charon's LAN address into the tunnel (no reply: we have no dataplane here).
	exec.Command("ip", "netns", "exec", l.nsCharon, "ping", "-c", "1", "-W", "1", "-I", "203.0.113.1", "198.51.100.1").Run()
	in := recv(t, l, o.esp, "ESP-in-UDP from charon")
	if in.src != netip.MustParseAddrPort(addrCharon+":4500") || in.dst.Port() != 4500 {
		t.Fatalf("ESP from %v to %v", in.src, in.dst)
	}
	sa := c.In[0]
	if spi := binary.BigEndian.Uint32(in.pkt); spi != sa.SPI {
		t.Fatalf("ESP SPI %#x, our inbound SPI %#x", spi, sa.SPI)
	}
	// RFC 4303 + RFC 3602 + RFC 2404: SPI | seq | IV(16) | ciphertext | ICV(12).
	p := in.pkt
	if len(p) < 8+16+16+12 {
		t.Fatalf("ESP packet of %d bytes", len(p))
	}
	icv := p[len(p)-12:]
	m := hmac.New(sha1.New, sa.IntegKey)
	m.Write(p[:len(p)-12])
	if !hmac.Equal(m.Sum(nil)[:12], icv) {
		t.Fatal("ICV does not verify with our inbound integrity key")
	}
	blk, err := aes.NewCipher(sa.EncKey)
	if err != nil {
		t.Fatal(err)
	}
	ct := p[24 : len(p)-12]
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(blk, p[8:24]).CryptBlocks(pt, ct)
	if pt[len(pt)-1] != 4 { // next header: IPv4 (tunnel mode)
		t.Fatalf("next header %d", pt[len(pt)-1])
	}
	if pt[0]>>4 != 4 || pt[9] != 1 || !bytes.Equal(pt[12:16], []byte{203, 0, 113, 1}) || !bytes.Equal(pt[16:20], []byte{198, 51, 100, 1}) {
		t.Fatalf("inner packet %x", pt[:20])
	}
	t.Logf("ESP seq %d from %v: inner ICMP 203.0.113.1 -> 198.51.100.1 decrypted with our keys", binary.BigEndian.Uint32(p[4:]), in.src)
}

// Invalid-SPI recovery against charon: our side lost its SAs (restart);
// charon's ESP arrives with an SPI we do not know; we send INVALID-SPI,
// which needs a new ISAKMP SA first. That Main Mode carries INITIAL-CONTACT,
// and INITIAL-CONTACT is what makes charon 5.9.8 drop its stale SAs (it
// only logs INVALID_SPI).
func TestInvalidSPIRecoveryAfterRestart(t *testing.T) {
	s := suites[0]
	l, o, old := establish(t, s)
	o.tr.Close() // "reboot": all our state is gone, charon keeps its SAs

	o2 := l.startOurs(s.pol, childPolicy(s.tr, s.pfs))
	exec.Command("ip", "netns", "exec", l.nsCharon, "ping", "-c", "1", "-W", "1", "-I", "203.0.113.1", "198.51.100.1").Run()
	in := recv(t, l, o2.esp, "stale ESP from charon")
	spi := binary.BigEndian.Uint32(in.pkt)
	if spi != old.InSPI(alg.ESP) {
		t.Fatalf("stale ESP SPI %#x, expected the old %#x", spi, old.InSPI(alg.ESP))
	}
	if err := o2.tr.SendInvalidSPI(in.dst.Addr(), in.src.Addr(), alg.ESP, spi); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return strings.Contains(l.log(), "received INVALID_SPI error notify") }) {
		t.Fatalf("charon never got the INVALID-SPI notify:\n%s", l.log())
	}
	if !waitFor(5*time.Second, func() bool { return !strings.Contains(l.listSAs(), "INSTALLED") }) {
		t.Fatalf("charon still has the stale CHILD_SA:\n%s", l.listSAs())
	}
	if n := strings.Count(l.listSAs(), "ESTABLISHED"); n != 1 {
		t.Fatalf("charon has %d IKE SAs, want only the new one:\n%s", n, l.listSAs())
	}
	logLines(t, l, "INITIAL_CONTACT")
	logLines(t, l, "INVALID_SPI")
}

// The same with AES-GCM-16 (RFC 4106): charon's ESP opens with our inbound
// KEYMAT taken as AES-128 key || 4-byte salt, the salt being the nonce's
// first 4 bytes and the packet's 8-byte IV the rest, SPI | seq as AAD.
// This pins the salt placement against a real peer.
func TestCharonGCMESPDecrypts(t *testing.T) {
	s := suites[len(suites)-1]
	if s.tr.ESP != alg.AESGCM128 {
		t.Fatal("the last interop suite must be aes128gcm16")
	}
	l, o, c := establish(t, s)
	if list := l.listSAs(); !strings.Contains(list, "AES_GCM_16-128") {
		t.Fatalf("charon's CHILD_SA is not AES_GCM_16-128:\n%s", list)
	}
	exec.Command("ip", "netns", "exec", l.nsCharon, "ping", "-c", "1", "-W", "1", "-I", "203.0.113.1", "198.51.100.1").Run()
	in := recv(t, l, o.esp, "ESP-in-UDP from charon")
	sa := c.In[0]
	if spi := binary.BigEndian.Uint32(in.pkt); spi != sa.SPI {
		t.Fatalf("ESP SPI %#x, our inbound SPI %#x", spi, sa.SPI)
	}
	if sa.Cipher != alg.AESGCM128 || sa.TransformID != 20 || len(sa.EncKey) != 20 || sa.Integ != alg.IntegNone || sa.IntegKey != nil {
		t.Fatalf("our SA: %v id %d key %d bytes integ %v", sa.Cipher, sa.TransformID, len(sa.EncKey), sa.Integ)
	}
	// SPI | seq | IV(8) | ciphertext | ICV(16).
	p := in.pkt
	if len(p) < 8+8+16+20 {
		t.Fatalf("ESP packet of %d bytes", len(p))
	}
	blk, err := aes.NewCipher(sa.EncKey[:16])
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		t.Fatal(err)
	}
	nonce := append(append([]byte{}, sa.EncKey[16:]...), p[8:16]...)
	pt, err := aead.Open(nil, nonce, p[16:], p[:8])
	if err != nil {
		t.Fatalf("charon's ESP does not open with our key || salt: %v", err)
	}
	if pt[len(pt)-1] != 4 || pt[0]>>4 != 4 || pt[9] != 1 || !bytes.Equal(pt[12:16], []byte{203, 0, 113, 1}) || !bytes.Equal(pt[16:20], []byte{198, 51, 100, 1}) {
		t.Fatalf("inner packet %x", pt)
	}
	t.Logf("ESP seq %d: AES-GCM-16 opened with our key || salt, inner ICMP 203.0.113.1 -> 198.51.100.1", binary.BigEndian.Uint32(p[4:]))
}

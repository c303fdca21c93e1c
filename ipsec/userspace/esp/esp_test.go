package esp

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/spiagent/spiagent/alg"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kat is a published ESP packet: the payload (before padding), the next
// header, and the whole ESP packet from the SPI to the ICV.
type kat struct {
	desc    string
	cipher  alg.Cipher
	key     string
	spi     uint32
	seq     uint32
	iv      string
	payload string
	nextHdr uint8
	packet  string
}

var kats = []kat{
	// RFC 3602 §4, Case #5: ICMP echo in transport mode, AES-128-CBC, no
	// authentication.
	{
		desc: "rfc3602-case5", cipher: alg.AES128,
		key: "90d382b410eeba7ad938c46cec1a82bf", spi: 0x4321, seq: 1,
		iv:      "e96e8c08ab465763fd098d45dd3ff893",
		payload: "08000ebda70a00008e9c083db95b070008090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
		nextHdr: 1,
		packet:  "0000432100000001e96e8c08ab465763fd098d45dd3ff893f663c25d325c18c6a9453e194e120849a4870b66cc6b9965330013b4898dc856a4699e523a55db080b59ec3a8e4b7e52775b07d1db34ed9c538ab50c551b874aa269add047ad2d5913ac19b7cfbad4a6",
	},
	// RFC 3602 §4, Case #6: transport mode, 28-byte ICMP.
	{
		desc: "rfc3602-case6", cipher: alg.AES128,
		key: "90d382b410eeba7ad938c46cec1a82bf", spi: 0x4321, seq: 8,
		iv:      "69d08df7d203329db093fc4924e5bd80",
		payload: "0800b5e8a80a0500a69c083d0b660e00777777777777777777777777",
		nextHdr: 1,
		packet:  "000043210000000869d08df7d203329db093fc4924e5bd80f51995881ec4e0c4488987ce742e8109689bb379d2d750c0d915dca346a89f75",
	},
	// RFC 3602 §4, Case #7: tunnel mode, the inner IPv4 packet is the payload.
	{
		desc: "rfc3602-case7", cipher: alg.AES128,
		key: "0123456789abcdef0123456789abcdef", spi: 0x8765, seq: 2,
		iv:      "f4e765244f6407adf13dc1380f673f37",
		payload: "45000054090400004001f988c0a87b03c0a87bc808009f76a90a0100b49c083d02a2040008090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
		nextHdr: 4,
		packet:  "0000876500000002f4e765244f6407adf13dc1380f673f37773b5241a4c449225e4f3ce5ed611b0c237ca96cf74a93013c1b0ea1a0cf70f8e4ecaec78ac53aad7a0f022b859243c647752e94a859352b8a4d4d2decd136e5c177f132ad3fbfb2201ac9904c74ee0a109e0ca1e4dfe9d5a100b842f1c22f0d",
	},
	// RFC 3602 §4, Case #8: tunnel mode.
	{
		desc: "rfc3602-case8", cipher: alg.AES128,
		key: "0123456789abcdef0123456789abcdef", spi: 0x8765, seq: 5,
		iv:      "85d47224b5f3dd5d2101d4ea8dffab22",
		payload: "45000044090c00004001f990c0a87b03c0a87bc80800d63caa0a0200c69c083da3de0300ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		nextHdr: 4,
		packet:  "000087650000000585d47224b5f3dd5d2101d4ea8dffab2215b92683819596a8047232cc00f7048fe45318e11f8a0f62ede3c3fc61203bb50f980a08c9843fd3a1b06d5c07ff9639b7eb7dfb3512e5de435e7207ed971ef3d2726d9b5ef6affc6d17a0decbb13892",
	},
}

// gcmKAT is a draft-mcgrew-gcm-test-01 §4 case: key||salt, the explicit
// IV, SPI and 32-bit sequence number (the AAD), the plaintext including the
// ESP trailer, and ciphertext||tag.
type gcmKAT struct {
	desc                  string
	key, salt, iv         string
	spi, seq              uint32
	plaintext, ciphertext string
}

var gcmKATs = []gcmKAT{
	{
		desc: "gcm-test-01-case2-aes128", key: "feffe9928665731c6d6a8f9467308308", salt: "cafebabe", iv: "facedbaddecaf888",
		spi: 0x0000a5f8, seq: 0x0a,
		plaintext:  "4500003e698f000080114dccc0a80102c0a801010a980035002a2343b2d001000001000000000000037369700963796265726369747902646b00000100010001",
		ciphertext: "deb22cd9b07c72c16e3a65beeb8df304a5a5897d33ae530f1ba76d5d114d2a5c3de81827c10e9a4f51330d0eec416642cfbb85a5b47e48a4ec3b9ba95d918bd1" + "83b70d3aa8bc6ee4c309e9d85a41ad4a",
	},
	{
		desc: "gcm-test-01-case3-aes256", key: "abbccddef00112233445566778899aababbccddef00112233445566778899aab", salt: "11223344", iv: "0102030405060708",
		spi: 0x4a2cbfe3, seq: 2,
		plaintext:  "4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee0000000007002400020bf0000020405b40101040201020201",
		ciphertext: "ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763748a637985771d347f0545659f14e99def842d8e" + "b335f4eecfdbf831824b4c4915956c96",
	},
	{
		desc: "gcm-test-01-case4-aes128-zero", key: "00000000000000000000000000000000", salt: "00000000", iv: "0000000000000000",
		spi: 0, seq: 1,
		plaintext:  "4500003c99c500008001cb7a40679318010101010800075c020044006162636465666768696a6b6c6d6e6f707172737475767761626364656667686901020201",
		ciphertext: "4688daf2f973a392732909c331d56d60f694abaa414b5e7ff5fdcdfff5e9a284456476492719ffb64de7d9dca1e1d894bc3bd57873ed4d181d19d4d5c8c18af3" + "f821d496eeb096e98ad2b69e4799c71d",
	},
}

func TestKnownAnswerCBC(t *testing.T) {
	for _, tc := range kats {
		t.Run(tc.desc, func(t *testing.T) {
			sa, err := New(tc.spi, tc.cipher, unhex(t, tc.key), alg.IntegNone, nil)
			if err != nil {
				t.Fatal(err)
			}
			payload, want := unhex(t, tc.payload), unhex(t, tc.packet)
			buf := make([]byte, sa.HeaderLen()+len(payload), 2048)
			copy(buf[sa.HeaderLen():], payload)
			got, err := sa.SealIV(buf, len(payload), tc.seq, tc.nextHdr, unhex(t, tc.iv))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Seal:\n got %x\nwant %x", got, want)
			}
			pt, nh, err := sa.Open(bytes.Clone(want))
			if err != nil {
				t.Fatal(err)
			}
			if nh != tc.nextHdr || !bytes.Equal(pt, payload) {
				t.Fatalf("Open: next header %d payload %x, want %d %x", nh, pt, tc.nextHdr, payload)
			}
		})
	}
}

func TestKnownAnswerGCM(t *testing.T) {
	for _, tc := range gcmKATs {
		t.Run(tc.desc, func(t *testing.T) {
			key := unhex(t, tc.key+tc.salt)
			sa, err := New(tc.spi, map[int]alg.Cipher{20: alg.AESGCM128, 36: alg.AESGCM256}[len(key)], key, alg.IntegNone, nil)
			if err != nil {
				t.Fatal(err)
			}
			pt := unhex(t, tc.plaintext)
			nextHdr := pt[len(pt)-1]
			padLen := int(pt[len(pt)-2])
			payload := pt[:len(pt)-2-padLen]
			wire := fmt.Sprintf("%08x%08x%s%s", tc.spi, tc.seq, tc.iv, tc.ciphertext)
			want := unhex(t, wire)

			got, nh, err := sa.Open(bytes.Clone(want))
			if err != nil {
				t.Fatal(err)
			}
			if nh != nextHdr || !bytes.Equal(got, payload) {
				t.Fatalf("Open: next header %d payload %x, want %d %x", nh, got, nextHdr, payload)
			}
			// Our padding is RFC 4303's default 1, 2, 3 ...; where the
			// vector's is too, Seal must give the same bytes.
			buf := make([]byte, sa.HeaderLen()+len(payload), 2048)
			copy(buf[sa.HeaderLen():], payload)
			sealed, err := sa.SealIV(buf, len(payload), tc.seq, nextHdr, unhex(t, tc.iv))
			if err != nil {
				t.Fatal(err)
			}
			if !defaultPad(pt) || len(sealed) != len(want) {
				t.Logf("vector pads differently; Seal not compared")
				return
			}
			if !bytes.Equal(sealed, want) {
				t.Fatalf("Seal:\n got %x\nwant %x", sealed, want)
			}
		})
	}
}

func defaultPad(pt []byte) bool {
	n := int(pt[len(pt)-2])
	for i := 0; i < n; i++ {
		if pt[len(pt)-2-n+i] != byte(i+1) {
			return false
		}
	}
	return true
}

var ciphers = []struct {
	c      alg.Cipher
	keyLen int
	name   string
}{
	{alg.ESPNull, 0, "null"},
	{alg.DES, 8, "des-cbc"},
	{alg.TripleDES, 24, "3des-cbc"},
	{alg.AES128, 16, "aes-cbc-128"},
	{alg.AES192, 24, "aes-cbc-192"},
	{alg.AES256, 32, "aes-cbc-256"},
	{alg.AESGCM128, 20, "aes-gcm-16-128"},
	{alg.AESGCM256, 36, "aes-gcm-16-256"},
}

var integs = []alg.Integrity{
	alg.IntegNone, alg.HMACMD5, alg.HMACSHA1,
	alg.HMACSHA256, alg.HMACSHA384, alg.HMACSHA512,
}

func key(n int, fill byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = fill + byte(i)
	}
	return k
}

// TestRoundTrip seals and opens payloads of many sizes with every valid
// cipher and integrity pair, then checks that a flipped bit anywhere in an
// authenticated packet is refused.
func TestRoundTrip(t *testing.T) {
	for _, c := range ciphers {
		for _, ig := range integs {
			if c.c.IsAEAD() && ig != alg.IntegNone || c.c == alg.ESPNull && ig == alg.IntegNone {
				continue
			}
			t.Run(c.name+"/"+ig.String(), func(t *testing.T) {
				sa, err := New(0x1000, c.c, key(c.keyLen, 1), ig, key(ig.KeyLen(), 7))
				if err != nil {
					t.Fatal(err)
				}
				rx, err := New(0x1000, c.c, key(c.keyLen, 1), ig, key(ig.KeyLen(), 7))
				if err != nil {
					t.Fatal(err)
				}
				for n := 0; n < 300; n += 7 {
					payload := key(n, byte(n))
					buf := make([]byte, sa.HeaderLen()+n, sa.SealedLen(n))
					copy(buf[sa.HeaderLen():], payload)
					pkt, err := sa.Seal(buf, n, uint32(n+1), 4)
					if err != nil {
						t.Fatal(err)
					}
					if spi, seq, _ := ParseHeader(pkt); spi != 0x1000 || seq != uint32(n+1) {
						t.Fatalf("header spi %x seq %d", spi, seq)
					}
					if (len(pkt)-sa.HeaderLen()-sa.ICVLen())%4 != 0 {
						t.Fatalf("n=%d: body not 4-byte aligned", n)
					}
					if ig != alg.IntegNone || c.c.IsAEAD() {
						bad := bytes.Clone(pkt)
						bad[(n*31)%len(bad)] ^= 0x10
						if _, _, err := rx.Open(bad); err != ErrAuth {
							t.Fatalf("n=%d: tampered packet: err %v, want ErrAuth", n, err)
						}
					}
					got, nh, err := rx.Open(pkt)
					if err != nil {
						t.Fatalf("n=%d: %v", n, err)
					}
					if nh != 4 || !bytes.Equal(got, payload) {
						t.Fatalf("n=%d: got nh %d %x", n, nh, got)
					}
				}
			})
		}
	}
}

func TestIVsDiffer(t *testing.T) {
	for _, c := range []alg.Cipher{alg.AES128, alg.AESGCM128, alg.DES} {
		kl := map[alg.Cipher]int{alg.AES128: 16, alg.AESGCM128: 20, alg.DES: 8}[c]
		ig := alg.HMACSHA1
		if c == alg.AESGCM128 {
			ig = alg.IntegNone
		}
		sa, err := New(0x1000, c, key(kl, 1), ig, key(ig.KeyLen(), 2))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for i := range 1000 {
			buf := make([]byte, sa.HeaderLen()+10, 256)
			pkt, _ := sa.Seal(buf, 10, uint32(i+1), 4)
			iv := string(pkt[HeaderLen:sa.HeaderLen()])
			if seen[iv] {
				t.Fatalf("%s: IV repeated after %d packets", c, i)
			}
			seen[iv] = true
		}
	}
}

func TestOpenGarbage(t *testing.T) {
	sa, err := New(0x1000, alg.AES128, key(16, 1), alg.HMACSHA1, key(20, 2))
	if err != nil {
		t.Fatal(err)
	}
	null, err := New(0x1000, alg.ESPNull, nil, alg.IntegNone, nil)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 80; n++ {
		b := key(n, byte(n))
		if _, _, err := sa.Open(b); err == nil {
			t.Fatalf("len %d garbage accepted", n)
		}
		null.Open(key(n, 0xf0)) // must not panic
	}
	// Null cipher, no integrity: a pad length past the start is malformed.
	b := []byte{0, 0, 0x10, 0, 0, 0, 0, 1, 0xff, 4, 0xff, 4}
	if _, _, err := null.Open(b); err != ErrMalformed {
		t.Fatalf("bad pad length: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(1, alg.AES128, key(15, 0), alg.IntegNone, nil); err == nil {
		t.Error("15-byte AES key accepted")
	}
	if _, err := New(1, alg.AESGCM128, key(16, 0), alg.IntegNone, nil); err == nil {
		t.Error("GCM key without salt accepted")
	}
	if _, err := New(1, alg.AESGCM128, key(20, 0), alg.HMACSHA1, key(20, 0)); err == nil {
		t.Error("GCM with HMAC accepted")
	}
	_, err := New(1, alg.DES, key(7, 0x55), alg.IntegNone, nil)
	if err == nil || strings.Contains(err.Error(), "55") {
		t.Errorf("bad DES key: err %v", err)
	}
}

func TestSealAllocs(t *testing.T) {
	for _, c := range []struct {
		c  alg.Cipher
		kl int
		ig alg.Integrity
	}{{alg.AESGCM128, 20, alg.IntegNone}, {alg.AES128, 16, alg.HMACSHA1}, {alg.TripleDES, 24, alg.HMACSHA256}} {
		sa, err := New(0x1000, c.c, key(c.kl, 1), c.ig, key(c.ig.KeyLen(), 2))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		seq := uint32(0)
		allocs := testing.AllocsPerRun(100, func() {
			seq++
			pkt, err := sa.Seal(buf, 1400, seq, 4)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := sa.Open(pkt); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s/%s: %.1f allocations per Seal+Open, want 0", c.c, c.ig, allocs)
		}
	}
}

package alg

import "fmt"

// Cipher is an encryption algorithm with its key size: an ESP cipher, an
// IKE phase 1 cipher, or both. DES, TripleDES and AES128/192/256 (CBC)
// serve phase 1 and ESP; ESPNull and the AES-GCM ciphers are ESP-only.
type Cipher uint8

// Ciphers. CipherNone is the absence of encryption: an AH SA, or a
// transform without ESP. ESPNull is ESP that does not encrypt.
const (
	CipherNone Cipher = iota
	DES               // DES-CBC (RFC 2405); weak
	TripleDES         // 3DES-CBC (RFC 2451)
	AES128            // AES-CBC (RFC 3602), 128-bit key
	AES192            // AES-CBC, 192-bit key
	AES256            // AES-CBC, 256-bit key
	// ESPNull is ESP without encryption (RFC 2410); it needs an integrity
	// algorithm.
	ESPNull
	// AESGCM128 and AESGCM256 are AES-GCM with a 16-byte ICV (RFC 4106,
	// "aes-gcm-16"). They are AEADs: no separate integrity algorithm, and
	// their key material is the AES key followed by a 4-byte salt
	// (RFC 4106 §8.1), as KEYMAT yields it and XFRM's rfc4106(gcm(aes))
	// takes it.
	AESGCM128
	AESGCM256
)

// Ciphers lists every cipher, CipherNone excluded.
var Ciphers = []Cipher{DES, TripleDES, AES128, AES192, AES256, ESPNull, AESGCM128, AESGCM256}

var cipherNames = [...]string{"none", "des", "3des", "aes128", "aes192", "aes256", "null", "aes128gcm16", "aes256gcm16"}

// String is the cipher's name as strongSwan proposals spell it.
func (c Cipher) String() string {
	if int(c) < len(cipherNames) {
		return cipherNames[c]
	}
	return fmt.Sprintf("cipher(%d)", uint8(c))
}

// KeyLen is the cipher key length in bytes: for AES-GCM without the salt,
// for ESPNull and CipherNone 0.
func (c Cipher) KeyLen() int {
	switch c {
	case DES:
		return 8
	case TripleDES, AES192:
		return 24
	case AES128, AESGCM128:
		return 16
	case AES256, AESGCM256:
		return 32
	}
	return 0
}

// SaltLen is the length of the salt that follows the key: 4 for AES-GCM
// (RFC 4106 §8.1), 0 otherwise.
func (c Cipher) SaltLen() int {
	if c.IsAEAD() {
		return 4
	}
	return 0
}

// KeyMatLen is the length of the cipher's key material: KeyLen plus
// SaltLen (20 or 36 bytes for AES-GCM, key then salt). An SA's cipher key
// is exactly this long.
func (c Cipher) KeyMatLen() int { return c.KeyLen() + c.SaltLen() }

// BlockSize is the CBC block size in bytes; 0 for ciphers that are not CBC
// block ciphers (CipherNone, ESPNull, AES-GCM).
func (c Cipher) BlockSize() int {
	switch c {
	case DES, TripleDES:
		return 8
	case AES128, AES192, AES256:
		return 16
	}
	return 0
}

// ICVLen is an AEAD's integrity check value length in bytes (16 for
// aes-gcm-16); 0 for other ciphers, whose ICV comes from an Integrity.
func (c Cipher) ICVLen() int {
	if c.IsAEAD() {
		return 16
	}
	return 0
}

// IsAESCBC reports whether c is an AES-CBC variant.
func (c Cipher) IsAESCBC() bool { return c >= AES128 && c <= AES256 }

// IsAEAD reports whether c is a combined-mode (AES-GCM) cipher.
func (c Cipher) IsAEAD() bool { return c == AESGCM128 || c == AESGCM256 }

// ESPOnly reports whether c exists for ESP only and cannot protect IKE.
func (c Cipher) ESPOnly() bool { return c >= ESPNull && c <= AESGCM256 }

// ValidP1 reports whether c can be an IKE phase 1 cipher.
func (c Cipher) ValidP1() bool { return c >= DES && c <= AES256 }

// ValidESP reports whether c can be an ESP cipher.
func (c Cipher) ValidESP() bool { return c >= DES && c <= AESGCM256 }

// Weak reports ciphers kept for compatibility only (DES).
func (c Cipher) Weak() bool { return c == DES }

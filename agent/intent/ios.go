package intent

import (
	"fmt"
	"strings"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/gen"
)

// The one table of IOS names. Every enumeration of spiagent-types that
// names an algorithm is listed here, keyed by its generated Go value, with
// the alg value it means and, for transforms, the text IOS prints for it
// ("esp-aes 256", "ah-sha-hmac"). It is read both ways: from the config to
// the engines (FromConfig) and from the engines back to state (the Enum
// functions and SATransform below, for show crypto isakmp sa and show
// crypto ipsec sa). A YANG enum value that is renamed or removed breaks the
// build here; one that is added fails TestIOSTablesCoverEnums until it has
// a row.

// name is one row: a YANG enum value (or, for ESP ciphers, an enum value
// and a key size), the alg value it means, and its IOS text.
type name[K, V comparable] struct {
	key K
	val V
	ios string
}

// names is a table, searched linearly: every table has at most a dozen rows.
type names[K, V comparable] []name[K, V]

func (ns names[K, V]) byKey(k K) (name[K, V], bool) {
	for _, n := range ns {
		if n.key == k {
			return n, true
		}
	}
	return name[K, V]{}, false
}

func (ns names[K, V]) byVal(v V) (name[K, V], bool) {
	for _, n := range ns {
		if n.val == v {
			return n, true
		}
	}
	return name[K, V]{}, false
}

var isakmpEncryptions = names[gen.E_SpiagentTypes_IsakmpEncryption, alg.Cipher]{
	{gen.SpiagentTypes_IsakmpEncryption_des, alg.DES, "des"},
	{gen.SpiagentTypes_IsakmpEncryption_3des, alg.TripleDES, "3des"},
	{gen.SpiagentTypes_IsakmpEncryption_aes_128, alg.AES128, "aes 128"},
	{gen.SpiagentTypes_IsakmpEncryption_aes_192, alg.AES192, "aes 192"},
	{gen.SpiagentTypes_IsakmpEncryption_aes_256, alg.AES256, "aes 256"},
}

var isakmpHashes = names[gen.E_SpiagentTypes_IsakmpHash, alg.Hash]{
	{gen.SpiagentTypes_IsakmpHash_md5, alg.MD5, "md5"},
	{gen.SpiagentTypes_IsakmpHash_sha, alg.SHA1, "sha"},
	{gen.SpiagentTypes_IsakmpHash_sha256, alg.SHA256, "sha256"},
	{gen.SpiagentTypes_IsakmpHash_sha384, alg.SHA384, "sha384"},
	{gen.SpiagentTypes_IsakmpHash_sha512, alg.SHA512, "sha512"},
}

// isakmpAuthentications lists the authentication methods the engine
// implements; the value says nothing more than "supported".
var isakmpAuthentications = names[gen.E_SpiagentTypes_IsakmpAuthentication, bool]{
	{gen.SpiagentTypes_IsakmpAuthentication_pre_share, true, "pre-share"},
}

var dhGroups = names[gen.E_SpiagentTypes_DhGroup, alg.Group]{
	{gen.SpiagentTypes_DhGroup_group1, alg.MODP768, "1"},
	{gen.SpiagentTypes_DhGroup_group2, alg.MODP1024, "2"},
	{gen.SpiagentTypes_DhGroup_group5, alg.MODP1536, "5"},
	{gen.SpiagentTypes_DhGroup_group14, alg.MODP2048, "14"},
	{gen.SpiagentTypes_DhGroup_group15, alg.MODP3072, "15"},
	{gen.SpiagentTypes_DhGroup_group16, alg.MODP4096, "16"},
	{gen.SpiagentTypes_DhGroup_group19, alg.ECP256, "19"},
	{gen.SpiagentTypes_DhGroup_group20, alg.ECP384, "20"},
	{gen.SpiagentTypes_DhGroup_group21, alg.ECP521, "21"},
}

var pfsGroups = names[gen.E_SpiagentTypes_PfsGroup, alg.Group]{
	{gen.SpiagentTypes_PfsGroup_none, alg.GroupNone, ""},
	{gen.SpiagentTypes_PfsGroup_group1, alg.MODP768, "group1"},
	{gen.SpiagentTypes_PfsGroup_group2, alg.MODP1024, "group2"},
	{gen.SpiagentTypes_PfsGroup_group5, alg.MODP1536, "group5"},
	{gen.SpiagentTypes_PfsGroup_group14, alg.MODP2048, "group14"},
	{gen.SpiagentTypes_PfsGroup_group15, alg.MODP3072, "group15"},
	{gen.SpiagentTypes_PfsGroup_group16, alg.MODP4096, "group16"},
	{gen.SpiagentTypes_PfsGroup_group19, alg.ECP256, "group19"},
	{gen.SpiagentTypes_PfsGroup_group20, alg.ECP384, "group20"},
	{gen.SpiagentTypes_PfsGroup_group21, alg.ECP521, "group21"},
}

var ahTransforms = names[gen.E_SpiagentTypes_AhTransform, alg.Integrity]{
	{gen.SpiagentTypes_AhTransform_ah_md5_hmac, alg.HMACMD5, "ah-md5-hmac"},
	{gen.SpiagentTypes_AhTransform_ah_sha_hmac, alg.HMACSHA1, "ah-sha-hmac"},
	{gen.SpiagentTypes_AhTransform_ah_sha256_hmac, alg.HMACSHA256, "ah-sha256-hmac"},
	{gen.SpiagentTypes_AhTransform_ah_sha384_hmac, alg.HMACSHA384, "ah-sha384-hmac"},
	{gen.SpiagentTypes_AhTransform_ah_sha512_hmac, alg.HMACSHA512, "ah-sha512-hmac"},
}

// espCipher is an ESP cipher as the model spells it: esp-encryption and
// esp-key-bits (0 for the ciphers that take none).
type espCipher struct {
	enc  gen.E_SpiagentTypes_EspEncryption
	bits uint16
}

var espEncryptions = names[espCipher, alg.Cipher]{
	{espCipher{gen.SpiagentTypes_EspEncryption_esp_null, 0}, alg.ESPNull, "esp-null"},
	{espCipher{gen.SpiagentTypes_EspEncryption_esp_des, 0}, alg.DES, "esp-des"},
	{espCipher{gen.SpiagentTypes_EspEncryption_esp_3des, 0}, alg.TripleDES, "esp-3des"},
	{espCipher{gen.SpiagentTypes_EspEncryption_esp_aes, 128}, alg.AES128, "esp-aes 128"},
	{espCipher{gen.SpiagentTypes_EspEncryption_esp_aes, 192}, alg.AES192, "esp-aes 192"},
	{espCipher{gen.SpiagentTypes_EspEncryption_esp_aes, 256}, alg.AES256, "esp-aes 256"},
	{espCipher{gen.SpiagentTypes_EspEncryption_esp_gcm, 128}, alg.AESGCM128, "esp-gcm 128"},
	{espCipher{gen.SpiagentTypes_EspEncryption_esp_gcm, 256}, alg.AESGCM256, "esp-gcm 256"},
}

// espDefaultBits is esp-key-bits when it is absent (IOS: esp-aes is
// esp-aes 128); ciphers not listed take no key size.
var espDefaultBits = map[gen.E_SpiagentTypes_EspEncryption]uint16{
	gen.SpiagentTypes_EspEncryption_esp_aes: 128,
	gen.SpiagentTypes_EspEncryption_esp_gcm: 128,
}

var espIntegrities = names[gen.E_SpiagentTypes_EspIntegrity, alg.Integrity]{
	{gen.SpiagentTypes_EspIntegrity_esp_md5_hmac, alg.HMACMD5, "esp-md5-hmac"},
	{gen.SpiagentTypes_EspIntegrity_esp_sha_hmac, alg.HMACSHA1, "esp-sha-hmac"},
	{gen.SpiagentTypes_EspIntegrity_esp_sha256_hmac, alg.HMACSHA256, "esp-sha256-hmac"},
	{gen.SpiagentTypes_EspIntegrity_esp_sha384_hmac, alg.HMACSHA384, "esp-sha384-hmac"},
	{gen.SpiagentTypes_EspIntegrity_esp_sha512_hmac, alg.HMACSHA512, "esp-sha512-hmac"},
}

var ipsecModes = names[gen.E_SpiagentTypes_IpsecMode, alg.Mode]{
	{gen.SpiagentTypes_IpsecMode_tunnel, alg.Tunnel, "tunnel"},
	{gen.SpiagentTypes_IpsecMode_transport, alg.Transport, "transport"},
}

var ipsecProtocols = names[gen.E_SpiagentTypes_IpsecProtocol, alg.Protocol]{
	{gen.SpiagentTypes_IpsecProtocol_esp, alg.ESP, "esp"},
	{gen.SpiagentTypes_IpsecProtocol_ah, alg.AH, "ah"},
}

// aclProtocols are the IP protocol numbers of the access-list keywords.
var aclProtocols = names[gen.E_SpiagentTypes_AclProtocol_Enum, uint8]{
	{gen.SpiagentTypes_AclProtocol_Enum_ip, 0, "ip"},
	{gen.SpiagentTypes_AclProtocol_Enum_icmp, 1, "icmp"},
	{gen.SpiagentTypes_AclProtocol_Enum_tcp, 6, "tcp"},
	{gen.SpiagentTypes_AclProtocol_Enum_udp, 17, "udp"},
	{gen.SpiagentTypes_AclProtocol_Enum_gre, 47, "gre"},
	{gen.SpiagentTypes_AclProtocol_Enum_esp, 50, "esp"},
	{gen.SpiagentTypes_AclProtocol_Enum_ahp, 51, "ahp"},
}

// Engine values back to the model, for state. Each reports false for a
// value the model cannot name.

// EncryptionEnum names a phase 1 cipher.
func EncryptionEnum(c alg.Cipher) (gen.E_SpiagentTypes_IsakmpEncryption, bool) {
	n, ok := isakmpEncryptions.byVal(c)
	return n.key, ok
}

// HashEnum names a phase 1 hash.
func HashEnum(h alg.Hash) (gen.E_SpiagentTypes_IsakmpHash, bool) {
	n, ok := isakmpHashes.byVal(h)
	return n.key, ok
}

// GroupEnum names a Diffie-Hellman group.
func GroupEnum(g alg.Group) (gen.E_SpiagentTypes_DhGroup, bool) {
	n, ok := dhGroups.byVal(g)
	return n.key, ok
}

// ModeEnum names an IPsec mode.
func ModeEnum(m alg.Mode) (gen.E_SpiagentTypes_IpsecMode, bool) {
	n, ok := ipsecModes.byVal(m)
	return n.key, ok
}

// ProtocolEnum names an IPsec protocol.
func ProtocolEnum(p alg.Protocol) (gen.E_SpiagentTypes_IpsecProtocol, bool) {
	n, ok := ipsecProtocols.byVal(p)
	return n.key, ok
}

// ProtocolOf is the IPsec protocol a model enum names.
func ProtocolOf(e gen.E_SpiagentTypes_IpsecProtocol) (alg.Protocol, bool) {
	n, ok := ipsecProtocols.byKey(e)
	return n.val, ok
}

// SATransform is the transform of one negotiated SA as show crypto ipsec
// sa prints it: "ah-sha-hmac" for AH, "esp-aes 256 esp-sha-hmac" or
// "esp-gcm 128" for ESP.
func SATransform(p alg.Protocol, c alg.Cipher, i alg.Integrity) (string, error) {
	switch p {
	case alg.AH:
		n, ok := ahTransforms.byVal(i)
		if !ok {
			return "", fmt.Errorf("intent: AH %s has no IOS name", i)
		}
		return n.ios, nil
	case alg.ESP:
		n, ok := espEncryptions.byVal(c)
		if !ok {
			return "", fmt.Errorf("intent: ESP cipher %s has no IOS name", c)
		}
		words := []string{n.ios}
		if i != alg.IntegNone {
			n, ok := espIntegrities.byVal(i)
			if !ok {
				return "", fmt.Errorf("intent: ESP integrity %s has no IOS name", i)
			}
			words = append(words, n.ios)
		}
		return strings.Join(words, " "), nil
	}
	return "", fmt.Errorf("intent: protocol %s has no IOS transform", p)
}

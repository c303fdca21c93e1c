// Package testconfig builds large configurations for benchmarks: n
// crypto-map entries in one crypto map, each with its own peer and that
// peer's pre-shared key, one ISAKMP policy, transform set and access list.
// The peers are in 198.18.0.0/15 (RFC 2544's benchmarking range); they are
// configuration only and never receive traffic.
package testconfig

import (
	"fmt"
	"strings"
)

// Peer is the address of the i-th entry's peer.
func Peer(i int) string { return fmt.Sprintf("198.18.%d.%d", i/250, i%250+1) }

// BigJSON returns the configuration as RFC 7951 JSON (JSON_IETF).
func BigJSON(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"spiagent-crypto:crypto":{"isakmp":{"policies":{"policy":[{"priority":1,"config":{"priority":1,"encryption":"aes-256","hash":"sha256","group":"group14"}}]},"keys":{"key":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"address":%q,"config":{"address":%q,"key":"k%06d"}}`, Peer(i), Peer(i), i)
	}
	b.WriteString(`]}},"transform-sets":{"transform-set":[{"name":"ts","config":{"name":"ts","esp-encryption":"esp-aes","esp-key-bits":256,"esp-integrity":"esp-sha256-hmac"}}]},`)
	b.WriteString(`"access-lists":{"access-list":[{"name":"150","config":{"name":"150"},"entries":{"entry":[{"sequence":10,"config":{"sequence":10,"action":"permit","source":"198.51.100.0/24","destination":"203.0.113.0/24"}}]}}]},`)
	b.WriteString(`"crypto-maps":{"crypto-map":[{"name":"big","config":{"name":"big"},"entries":{"entry":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sequence":%d,"config":{"sequence":%d,"peer":[%q],"transform-set":["ts"],"match-address":"150"}}`, i+1, i+1, Peer(i))
	}
	b.WriteString(`]}}]}}}`)
	return []byte(b.String())
}

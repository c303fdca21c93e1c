// Package scale measures spiagent as a hub router is used: the seed lab's
// two routers (userspace dataplane, or the kernel's XFRM in the lab/qemu
// guest) with one crypto map of N entries, each
// matching its own access list that protects one host pair (host
// 198.51.100.x to host 203.0.113.y), ESP aes-128/sha1, all brought up at
// once by one UDP packet per pair from host1. It reports how long every
// tunnel took to come up, the agents' CPU per tunnel, their memory, their
// idle cost, what a SAMPLE subscriber costs, how long a one-entry change
// takes, and how Gets and Sets answer during the burst.
//
// Only TEST-NET addresses are used, inside the lab's namespaces. It needs
// root, iproute2 and the spiagent binary; lab/scalebench is its command.
package scale

import (
	"fmt"
	"net/netip"
	"strings"
)

// hostsPerSide bounds the host addresses used on each LAN: .10 to .249.
const (
	firstHost    = 10
	hostsPerSide = 240
)

// MaxPairs is the largest N the address plan allows.
const MaxPairs = hostsPerSide * hostsPerSide

// Pair returns the i-th protected host pair: host1-side source and
// host2-side destination (TEST-NET-2 and TEST-NET-3).
func Pair(i int) (src, dst netip.Addr) {
	x, y := i/hostsPerSide, i%hostsPerSide
	return netip.AddrFrom4([4]byte{198, 51, 100, byte(firstHost + x)}), netip.AddrFrom4([4]byte{203, 0, 113, byte(firstHost + y)})
}

// side describes one router of the lab.
type side struct {
	wan, lan, peer string
	aclFromDst     bool // routerB's ACLs go from host2's side to host1's
}

var (
	routerA = side{wan: "192.0.2.1", lan: "198.51.100.1", peer: "192.0.2.2"}
	routerB = side{wan: "192.0.2.2", lan: "203.0.113.1", peer: "192.0.2.1", aclFromDst: true}
)

// RouterJSON returns router A's (a true) or router B's configuration for n
// pairs as JSON_IETF: the crypto map "hub" on wan0 with entries 1..n, entry
// i matching access list "acl-i" (one permit of host pair i).
func RouterJSON(n int, a bool) []byte {
	s := routerB
	if a {
		s = routerA
	}
	var b strings.Builder
	fmt.Fprintf(&b, `{"spiagent-crypto:crypto":{"isakmp":{"policies":{"policy":[{"priority":10,"config":{"priority":10,"encryption":"aes-128","hash":"sha","group":"group14","authentication":"pre-share"}}]},`)
	fmt.Fprintf(&b, `"keys":{"key":[{"address":%q,"config":{"address":%q,"key":"scale-lab-key"}}]}},`, s.peer, s.peer)
	b.WriteString(`"transform-sets":{"transform-set":[{"name":"ts","config":{"name":"ts","esp-encryption":"esp-aes","esp-key-bits":128,"esp-integrity":"esp-sha-hmac"}}]},`)
	b.WriteString(`"access-lists":{"access-list":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(aclJSON(i, s))
	}
	b.WriteString(`]},"crypto-maps":{"crypto-map":[{"name":"hub","config":{"name":"hub"},"entries":{"entry":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(entryJSON(i, s))
	}
	fmt.Fprintf(&b, `]}}]},"interfaces":{"interface":[{"name":"wan0","config":{"name":"wan0","ipv4-address":%q,"ipv4-prefix-length":24,"crypto-map":"hub"}},`, s.wan)
	fmt.Fprintf(&b, `{"name":"lan0","config":{"name":"lan0","ipv4-address":%q,"ipv4-prefix-length":24}}]}}}`, s.lan)
	return []byte(b.String())
}

func aclJSON(i int, s side) string {
	src, dst := Pair(i)
	if s.aclFromDst {
		src, dst = dst, src
	}
	return fmt.Sprintf(`{"name":"acl-%d","config":{"name":"acl-%d"},"entries":{"entry":[{"sequence":10,"config":{"sequence":10,"action":"permit","protocol":"ip","source":"%s/32","destination":"%s/32"}}]}}`,
		i, i, src, dst)
}

func entryJSON(i int, s side) string {
	return fmt.Sprintf(`{"sequence":%d,"config":{"sequence":%d,"type":"ipsec-isakmp","peer":[%q],"transform-set":["ts"],"match-address":"acl-%d"}}`,
		i+1, i+1, s.peer, i)
}

// InterfacesJSON is router A's (a true) or router B's configuration with
// its interfaces alone: no crypto map, so no tunnel.
func InterfacesJSON(a bool) []byte {
	s := routerB
	if a {
		s = routerA
	}
	return []byte(fmt.Sprintf(`{"spiagent-crypto:crypto":{"interfaces":{"interface":[{"name":"wan0","config":{"name":"wan0","ipv4-address":%q,"ipv4-prefix-length":24}},`+
		`{"name":"lan0","config":{"name":"lan0","ipv4-address":%q,"ipv4-prefix-length":24}}]}}}`, s.wan, s.lan))
}

// AddEntryJSON is what adding pair i to a running lab takes on one router:
// its access list and its crypto-map entry, as one JSON_IETF update of
// /crypto.
func AddEntryJSON(i int, a bool) []byte {
	s := routerB
	if a {
		s = routerA
	}
	return []byte(fmt.Sprintf(`{"spiagent-crypto:access-lists":{"access-list":[%s]},"spiagent-crypto:crypto-maps":{"crypto-map":[{"name":"hub","entries":{"entry":[%s]}}]}}`,
		aclJSON(i, s), entryJSON(i, s)))
}

package alg

import "fmt"

// Group is a Diffie-Hellman group, numbered as in IKE (RFC 2409 §6,
// RFC 3526, RFC 5903).
type Group uint16

// Groups by IKE number. GroupNone is no group (no PFS).
const (
	GroupNone Group = 0
	MODP768   Group = 1
	MODP1024  Group = 2
	MODP1536  Group = 5
	MODP2048  Group = 14
	MODP3072  Group = 15
	MODP4096  Group = 16
	ECP256    Group = 19
	ECP384    Group = 20
	ECP521    Group = 21
)

// Groups lists every supported group, GroupNone excluded.
var Groups = []Group{MODP768, MODP1024, MODP1536, MODP2048, MODP3072, MODP4096, ECP256, ECP384, ECP521}

var groupNames = map[Group]string{
	GroupNone: "none",
	MODP768:   "modp768", MODP1024: "modp1024", MODP1536: "modp1536", MODP2048: "modp2048",
	MODP3072: "modp3072", MODP4096: "modp4096",
	ECP256: "ecp256", ECP384: "ecp384", ECP521: "ecp521",
}

func (g Group) String() string {
	if n, ok := groupNames[g]; ok {
		return n
	}
	return fmt.Sprintf("group(%d)", uint16(g))
}

// Valid reports whether g is a supported group (GroupNone is not one).
func (g Group) Valid() bool {
	_, ok := groupNames[g]
	return ok && g != GroupNone
}

// IsECP reports the elliptic-curve groups (RFC 5903).
func (g Group) IsECP() bool { return g == ECP256 || g == ECP384 || g == ECP521 }

// Weak reports groups below 2048-bit MODP strength.
func (g Group) Weak() bool { return g == MODP768 || g == MODP1024 || g == MODP1536 }

// Package intent turns the YANG configuration (gen structs) into plain,
// engine-shaped values: ISAKMP policies, keys, transform proposals, and one
// Tunnel per crypto-map entry bound to an interface, with its local address,
// peers and traffic selectors. It is the one place where the model's IOS-style
// names (esp-des, group14, host/any prefixes) become algorithm values (package
// alg) and back: one table (ios.go), keyed by the generated enums, serves the
// config and the state.
//
// It knows gen, alg and the ipsec types; it does not know the datastore, the
// engines' runtime, or gNMI. Everything here is pure and deterministic, so the
// reconciler can compute an Intent for the old and the new config and diff
// them.
package intent

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ipsec"
)

// Policy is an ISAKMP policy.
type Policy struct {
	Priority   uint16
	Encryption alg.Cipher
	Hash       alg.Hash
	Group      alg.Group
	Lifetime   time.Duration
}

// Limits bound invalid SPI recovery.
type Limits struct {
	PerPeerPerMinute uint32
	PerPeerBurst     uint32
	GlobalPerMinute  uint32
	DedupWindow      time.Duration
}

// Global holds the global ISAKMP settings.
type Global struct {
	InvalidSPIRecovery bool
	NATTraversal       bool
	ForceUDPEncap      bool
	NATKeepalive       time.Duration
	DPDInterval        time.Duration
	DPDRetry           time.Duration
	Limits             Limits
}

// Transform is one transform set, as algorithms.
type Transform struct {
	Name      string
	AH        alg.Integrity // alg.IntegNone: no AH
	ESP       alg.Cipher    // alg.CipherNone: no ESP; alg.ESPNull: integrity only
	ESPInteg  alg.Integrity
	Mode      alg.Mode
	IOSString string // "ah-sha-hmac esp-des esp-sha-hmac"
}

// Rule is one access-list entry as a selector.
type Rule struct {
	Seq      uint32
	Permit   bool
	Selector ipsec.Selector
}

// Tunnel is a crypto-map entry applied on an interface.
type Tunnel struct {
	Map        string
	Seq        uint32
	Interface  string
	Local      netip.Addr
	Peers      []netip.Addr
	Transforms []Transform
	ACL        string
	Rules      []Rule
	PFS        alg.Group // alg.GroupNone: none
	Lifetime   time.Duration
	LifeKB     uint64
}

// ID names the tunnel for logs and telemetry: "testtag1/10@wan0".
func (t *Tunnel) ID() string { return fmt.Sprintf("%s/%d@%s", t.Map, t.Seq, t.Interface) }

// Interface is an interface's configured address.
type Interface struct {
	Name      string
	Prefix    netip.Prefix // address/len; invalid when none configured
	CryptoMap string
}

// Intent is the whole configuration, ready for the engines.
type Intent struct {
	Global     Global
	Policies   []Policy               // by priority
	Keys       map[netip.Addr]alg.Key // pre-shared keys; never printed
	Interfaces []Interface            // by name
	Tunnels    []Tunnel               // by interface, map, sequence
}

// FromConfig computes the Intent of a configuration. The configuration must
// have passed store validation; FromConfig still reports what it cannot
// translate instead of guessing.
func FromConfig(root *gen.Device) (*Intent, error) {
	c := root.GetCrypto()
	in := &Intent{Keys: map[netip.Addr]alg.Key{}}
	in.Global = global(c)
	for _, p := range PoliciesOf(c) {
		pol, err := policy(p.GetConfig())
		if err != nil {
			return nil, err
		}
		in.Policies = append(in.Policies, pol)
	}
	slices.SortFunc(in.Policies, func(a, b Policy) int { return int(a.Priority) - int(b.Priority) })
	for _, k := range KeysOf(c) {
		a, err := netip.ParseAddr(k.GetConfig().GetAddress())
		if err != nil {
			return nil, fmt.Errorf("intent: key %q: %w", k.GetAddress(), err)
		}
		in.Keys[a] = alg.Key(k.GetConfig().GetKey())
	}
	ifs, err := interfaces(c)
	if err != nil {
		return nil, err
	}
	in.Interfaces = ifs
	for _, ifc := range ifs {
		if ifc.CryptoMap == "" {
			continue
		}
		ts, err := tunnels(c, ifc)
		if err != nil {
			return nil, err
		}
		in.Tunnels = append(in.Tunnels, ts...)
	}
	return in, nil
}

func global(c *gen.SpiagentCrypto_Crypto) Global {
	g := c.GetIsakmp().GetConfig()
	l := c.GetIsakmp().GetInvalidSpiRecoveryLimits().GetConfig()
	return Global{
		InvalidSPIRecovery: g.GetInvalidSpiRecovery(),
		NATTraversal:       g.GetNatTraversal(),
		ForceUDPEncap:      g.GetForceUdpEncapsulation(),
		NATKeepalive:       time.Duration(g.GetNatKeepalive()) * time.Second,
		DPDInterval:        time.Duration(g.GetDpdInterval()) * time.Second,
		DPDRetry:           time.Duration(g.GetDpdRetry()) * time.Second,
		Limits: Limits{
			PerPeerPerMinute: l.GetPerPeerRate(),
			PerPeerBurst:     l.GetPerPeerBurst(),
			GlobalPerMinute:  l.GetGlobalRate(),
			DedupWindow:      time.Duration(l.GetDedupWindow()) * time.Second,
		},
	}
}

func policy(p *gen.SpiagentCrypto_Crypto_Isakmp_Policies_Policy_Config) (Policy, error) {
	pol := Policy{Priority: p.GetPriority(), Lifetime: time.Duration(p.GetLifetime()) * time.Second}
	enc, ok := isakmpEncryptions.byKey(p.GetEncryption())
	if !ok {
		return pol, fmt.Errorf("intent: isakmp policy %d: unknown encryption %v", pol.Priority, p.GetEncryption())
	}
	hash, ok := isakmpHashes.byKey(p.GetHash())
	if !ok {
		return pol, fmt.Errorf("intent: isakmp policy %d: unknown hash %v", pol.Priority, p.GetHash())
	}
	group, ok := dhGroups.byKey(p.GetGroup())
	if !ok {
		return pol, fmt.Errorf("intent: isakmp policy %d: unknown DH group %v", pol.Priority, p.GetGroup())
	}
	if _, ok := isakmpAuthentications.byKey(p.GetAuthentication()); !ok {
		return pol, fmt.Errorf("intent: isakmp policy %d: unsupported authentication %v", pol.Priority, p.GetAuthentication())
	}
	pol.Encryption, pol.Hash, pol.Group = enc.val, hash.val, group.val
	return pol, nil
}

func interfaces(c *gen.SpiagentCrypto_Crypto) ([]Interface, error) {
	var out []Interface
	for name, i := range InterfacesOf(c) {
		cfg := i.GetConfig()
		ifc := Interface{Name: name, CryptoMap: cfg.GetCryptoMap()}
		if cfg.Ipv4Address != nil {
			a, err := netip.ParseAddr(cfg.GetIpv4Address())
			if err != nil {
				return nil, fmt.Errorf("intent: interface %s: %w", name, err)
			}
			plen := 32
			if cfg.Ipv4PrefixLength != nil {
				plen = int(cfg.GetIpv4PrefixLength())
			}
			ifc.Prefix = netip.PrefixFrom(a, plen)
		}
		out = append(out, ifc)
	}
	slices.SortFunc(out, func(a, b Interface) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func tunnels(c *gen.SpiagentCrypto_Crypto, ifc Interface) ([]Tunnel, error) {
	cm := cryptoMapsOf(c)[ifc.CryptoMap]
	if cm == nil {
		return nil, fmt.Errorf("intent: interface %s: crypto map %q does not exist", ifc.Name, ifc.CryptoMap)
	}
	if !ifc.Prefix.IsValid() {
		return nil, fmt.Errorf("intent: interface %s: crypto map %s needs an IPv4 address on the interface", ifc.Name, ifc.CryptoMap)
	}
	var out []Tunnel
	for seq, e := range mapEntriesOf(cm) {
		t, err := tunnel(c, ifc, seq, e.GetConfig())
		if err != nil {
			return nil, fmt.Errorf("intent: crypto map %s %d: %w", ifc.CryptoMap, seq, err)
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Tunnel) int { return int(a.Seq) - int(b.Seq) })
	return out, nil
}

func tunnel(c *gen.SpiagentCrypto_Crypto, ifc Interface, seq uint32, e *gen.SpiagentCrypto_Crypto_CryptoMaps_CryptoMap_Entries_Entry_Config) (Tunnel, error) {
	t := Tunnel{
		Map:       ifc.CryptoMap,
		Seq:       seq,
		Interface: ifc.Name,
		Local:     ifc.Prefix.Addr(),
		ACL:       e.GetMatchAddress(),
		Lifetime:  time.Duration(e.GetSaLifetimeSeconds()) * time.Second,
		LifeKB:    uint64(e.GetSaLifetimeKilobytes()),
	}
	pfs, ok := pfsGroups.byKey(e.GetPfs())
	if !ok {
		return t, fmt.Errorf("unknown PFS group %v", e.GetPfs())
	}
	t.PFS = pfs.val
	for _, p := range e.GetPeer() {
		a, err := netip.ParseAddr(p)
		if err != nil {
			return t, fmt.Errorf("peer %q: %w", p, err)
		}
		t.Peers = append(t.Peers, a)
	}
	for _, name := range e.GetTransformSet() {
		ts := transformSetsOf(c)[name]
		if ts == nil {
			return t, fmt.Errorf("transform set %q does not exist", name)
		}
		tr, err := TransformFromConfig(ts.GetConfig())
		if err != nil {
			return t, err
		}
		t.Transforms = append(t.Transforms, tr)
	}
	acl := accessListsOf(c)[t.ACL]
	if acl == nil {
		return t, fmt.Errorf("access list %q does not exist", t.ACL)
	}
	rules, err := Rules(acl)
	if err != nil {
		return t, err
	}
	t.Rules = rules
	return t, nil
}

// TransformFromConfig translates a transform set.
func TransformFromConfig(ts *gen.SpiagentCrypto_Crypto_TransformSets_TransformSet_Config) (Transform, error) {
	tr := Transform{Name: ts.GetName()}
	mode, ok := ipsecModes.byKey(ts.GetMode())
	if !ok {
		return tr, fmt.Errorf("transform set %s: unknown mode %v", tr.Name, ts.GetMode())
	}
	tr.Mode = mode.val
	var words []string
	if a := ts.GetAh(); a != gen.SpiagentTypes_AhTransform_UNSET {
		n, ok := ahTransforms.byKey(a)
		if !ok {
			return tr, fmt.Errorf("transform set %s: unknown AH transform %v", tr.Name, a)
		}
		tr.AH = n.val
		words = append(words, n.ios)
	}
	if e := ts.GetEspEncryption(); e != gen.SpiagentTypes_EspEncryption_UNSET {
		key := espCipher{e, ts.GetEspKeyBits()}
		if ts.EspKeyBits == nil {
			key.bits = espDefaultBits[e]
		}
		n, ok := espEncryptions.byKey(key)
		if !ok {
			return tr, fmt.Errorf("transform set %s: unsupported ESP cipher %v with %d-bit key", tr.Name, e, key.bits)
		}
		tr.ESP = n.val
		words = append(words, n.ios)
	}
	if i := ts.GetEspIntegrity(); i != gen.SpiagentTypes_EspIntegrity_UNSET {
		n, ok := espIntegrities.byKey(i)
		if !ok {
			return tr, fmt.Errorf("transform set %s: unknown ESP integrity %v", tr.Name, i)
		}
		if tr.ESP == alg.CipherNone {
			// IOS allows an integrity-only ESP transform set: esp-null implied.
			tr.ESP = alg.ESPNull
		}
		tr.ESPInteg = n.val
		words = append(words, n.ios)
	}
	if tr.ESP == alg.CipherNone && tr.AH == alg.IntegNone {
		return tr, fmt.Errorf("transform set %s: neither AH nor ESP", tr.Name)
	}
	tr.IOSString = strings.Join(words, " ")
	return tr, nil
}

// Rules translates an access list into selectors, in sequence order.
func Rules(acl *gen.SpiagentCrypto_Crypto_AccessLists_AccessList) ([]Rule, error) {
	var out []Rule
	for seq, e := range aclEntriesOf(acl) {
		cfg := e.GetConfig()
		r := Rule{Seq: seq}
		switch cfg.GetAction() {
		case gen.SpiagentCrypto_Crypto_AccessLists_AccessList_Entries_Entry_Config_Action_permit:
			r.Permit = true
		case gen.SpiagentCrypto_Crypto_AccessLists_AccessList_Entries_Entry_Config_Action_deny:
		default:
			return nil, fmt.Errorf("access list %s entry %d: unknown action %v", acl.GetName(), seq, cfg.GetAction())
		}
		var err error
		if r.Selector.Src, err = netip.ParsePrefix(cfg.GetSource()); err != nil {
			return nil, fmt.Errorf("access list %s entry %d: source: %w", acl.GetName(), seq, err)
		}
		if r.Selector.Dst, err = netip.ParsePrefix(cfg.GetDestination()); err != nil {
			return nil, fmt.Errorf("access list %s entry %d: destination: %w", acl.GetName(), seq, err)
		}
		switch p := cfg.GetProtocol().(type) {
		case gen.E_SpiagentTypes_AclProtocol_Enum:
			n, ok := aclProtocols.byKey(p)
			if !ok {
				return nil, fmt.Errorf("access list %s entry %d: unknown protocol %v", acl.GetName(), seq, p)
			}
			r.Selector.Proto = n.val
		case gen.UnionUint8:
			r.Selector.Proto = uint8(p)
		default:
			return nil, fmt.Errorf("access list %s entry %d: unsupported protocol value %T", acl.GetName(), seq, p)
		}
		r.Selector.SrcPort = portRange(cfg.SourcePortMin, cfg.SourcePortMax)
		r.Selector.DstPort = portRange(cfg.DestinationPortMin, cfg.DestinationPortMax)
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Rule) int { return int(a.Seq) - int(b.Seq) })
	return out, nil
}

func portRange(lo, hi *uint16) ipsec.PortRange {
	switch {
	case lo == nil && hi == nil:
		return ipsec.PortRange{}
	case hi == nil:
		return ipsec.PortRange{Lo: *lo, Hi: *lo}
	case lo == nil:
		return ipsec.PortRange{Lo: 0, Hi: *hi}
	}
	return ipsec.PortRange{Lo: *lo, Hi: *hi}
}

// Nil-safe views of the generated lists (ygot's list getters take a key).
// PoliciesOf, KeysOf and InterfacesOf are exported for the agent's state
// publisher.

func PoliciesOf(c *gen.SpiagentCrypto_Crypto) map[uint16]*gen.SpiagentCrypto_Crypto_Isakmp_Policies_Policy {
	if p := c.GetIsakmp().GetPolicies(); p != nil {
		return p.Policy
	}
	return nil
}

func KeysOf(c *gen.SpiagentCrypto_Crypto) map[string]*gen.SpiagentCrypto_Crypto_Isakmp_Keys_Key {
	if k := c.GetIsakmp().GetKeys(); k != nil {
		return k.Key
	}
	return nil
}

func InterfacesOf(c *gen.SpiagentCrypto_Crypto) map[string]*gen.SpiagentCrypto_Crypto_Interfaces_Interface {
	if i := c.GetInterfaces(); i != nil {
		return i.Interface
	}
	return nil
}

func cryptoMapsOf(c *gen.SpiagentCrypto_Crypto) map[string]*gen.SpiagentCrypto_Crypto_CryptoMaps_CryptoMap {
	if m := c.GetCryptoMaps(); m != nil {
		return m.CryptoMap
	}
	return nil
}

func mapEntriesOf(m *gen.SpiagentCrypto_Crypto_CryptoMaps_CryptoMap) map[uint32]*gen.SpiagentCrypto_Crypto_CryptoMaps_CryptoMap_Entries_Entry {
	if e := m.GetEntries(); e != nil {
		return e.Entry
	}
	return nil
}

func transformSetsOf(c *gen.SpiagentCrypto_Crypto) map[string]*gen.SpiagentCrypto_Crypto_TransformSets_TransformSet {
	if t := c.GetTransformSets(); t != nil {
		return t.TransformSet
	}
	return nil
}

func accessListsOf(c *gen.SpiagentCrypto_Crypto) map[string]*gen.SpiagentCrypto_Crypto_AccessLists_AccessList {
	if a := c.GetAccessLists(); a != nil {
		return a.AccessList
	}
	return nil
}

func aclEntriesOf(a *gen.SpiagentCrypto_Crypto_AccessLists_AccessList) map[uint32]*gen.SpiagentCrypto_Crypto_AccessLists_AccessList_Entries_Entry {
	if e := a.GetEntries(); e != nil {
		return e.Entry
	}
	return nil
}

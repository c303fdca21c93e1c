package xfrm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// Ownership markers (see the package doc).
const (
	// DefaultReqIDBase is where the kernel reqids of this package's SAs and
	// templates start: kernel reqid = base + ipsec reqid.
	DefaultReqIDBase uint32 = 0x5a000000
	// ReqIDSpan is how many reqids the agent may use.
	ReqIDSpan uint32 = 1 << 24

	ownedIndex  uint32 = 1 << 31
	maxPolicyID uint32 = 1<<28 - 1
)

// ErrPortRange is returned for a port range XFRM cannot express as port/mask.
var ErrPortRange = errors.New("xfrm: port range is not a single port or an aligned power-of-two block")

// algo is an XFRM algorithm name with the lengths XFRM wants.
type algo struct {
	name  string
	trunc int // bits, integrity only
	icv   int // bits, AEAD only
}

// cipherAlgo maps an ESP cipher to XFRM's crypto API name (the key size
// is the key's length; for AES-GCM the key carries the salt).
func cipherAlgo(c alg.Cipher) (algo, bool) {
	switch {
	case c == alg.ESPNull:
		return algo{name: "ecb(cipher_null)"}, true
	case c == alg.DES:
		return algo{name: "cbc(des)"}, true
	case c == alg.TripleDES:
		return algo{name: "cbc(des3_ede)"}, true
	case c.IsAESCBC():
		return algo{name: "cbc(aes)"}, true
	case c.IsAEAD():
		return algo{name: "rfc4106(gcm(aes))", icv: c.ICVLen() * 8}, true
	}
	return algo{}, false
}

// integAlgo maps an integrity algorithm to XFRM's name and truncation.
func integAlgo(i alg.Integrity) (algo, bool) {
	names := map[alg.Integrity]string{
		alg.HMACMD5: "hmac(md5)", alg.HMACSHA1: "hmac(sha1)", alg.HMACSHA256: "hmac(sha256)",
		alg.HMACSHA384: "hmac(sha384)", alg.HMACSHA512: "hmac(sha512)",
	}
	n, ok := names[i]
	return algo{name: n, trunc: i.ICVLen() * 8}, ok
}

func xfrmMode(m alg.Mode) uint8 {
	if m == alg.Transport {
		return 0 // XFRM_MODE_TRANSPORT
	}
	return 1 // XFRM_MODE_TUNNEL
}

func xfrmDir(d ipsec.Direction) (uint8, error) {
	switch d {
	case ipsec.DirIn:
		return 0, nil // XFRM_POLICY_IN
	case ipsec.DirOut:
		return 1, nil
	case ipsec.DirFwd:
		return 2, nil
	}
	return 0, fmt.Errorf("xfrm: unknown direction %d", d)
}

func ipsecDir(d uint8) (ipsec.Direction, bool) {
	switch d {
	case 0:
		return ipsec.DirIn, true
	case 1:
		return ipsec.DirOut, true
	case 2:
		return ipsec.DirFwd, true
	}
	return 0, false
}

// policyIndex encodes an owned policy key as a kernel policy index.
func policyIndex(k ipsec.PolicyKey) (uint32, error) {
	d, err := xfrmDir(k.Dir)
	if err != nil {
		return 0, err
	}
	if k.ID > maxPolicyID {
		return 0, fmt.Errorf("xfrm: policy id %d above %d", k.ID, maxPolicyID)
	}
	return ownedIndex | k.ID<<3 | uint32(d), nil
}

// policyKey decodes a kernel policy index; ok is false for indices not ours.
func policyKey(index uint32) (ipsec.PolicyKey, bool) {
	if index&ownedIndex == 0 {
		return ipsec.PolicyKey{}, false
	}
	d, ok := ipsecDir(uint8(index & 7))
	if !ok {
		return ipsec.PolicyKey{}, false
	}
	return ipsec.PolicyKey{Dir: d, ID: (index &^ ownedIndex) >> 3}, true
}

// portMask turns a port range into XFRM's port/mask (host byte order).
func portMask(r ipsec.PortRange) (port, mask uint16, err error) {
	if r.Any() {
		return 0, 0, nil
	}
	if r.Lo > r.Hi {
		return 0, 0, fmt.Errorf("%w: %d-%d is empty", ErrPortRange, r.Lo, r.Hi)
	}
	size := uint32(r.Hi) - uint32(r.Lo) + 1
	if size&(size-1) != 0 || uint32(r.Lo)%size != 0 {
		return 0, 0, fmt.Errorf("%w: %d-%d", ErrPortRange, r.Lo, r.Hi)
	}
	return r.Lo, uint16(^(size - 1)), nil
}

func family(a netip.Addr) uint16 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func xfrmAddr(a netip.Addr) nl.XfrmAddress {
	var x nl.XfrmAddress
	if a.Is4() {
		b := a.As4()
		copy(x[:4], b[:])
	} else if a.IsValid() {
		b := a.As16()
		copy(x[:], b[:])
	}
	return x
}

// xfrmSelector translates an ipsec selector. Ports need a protocol.
func xfrmSelector(s ipsec.Selector) (nl.XfrmSelector, error) {
	var sel nl.XfrmSelector
	if !s.Src.IsValid() || !s.Dst.IsValid() {
		return sel, errors.New("xfrm: selector needs source and destination prefixes")
	}
	if s.Src.Addr().Is4() != s.Dst.Addr().Is4() {
		return sel, errors.New("xfrm: selector mixes IPv4 and IPv6")
	}
	src, dst := s.Src.Masked(), s.Dst.Masked()
	sel.Family = family(src.Addr())
	sel.Saddr = xfrmAddr(src.Addr())
	sel.Daddr = xfrmAddr(dst.Addr())
	sel.PrefixlenS = uint8(src.Bits())
	sel.PrefixlenD = uint8(dst.Bits())
	sel.Proto = s.Proto
	sp, spm, err := portMask(s.SrcPort)
	if err != nil {
		return sel, fmt.Errorf("source port: %w", err)
	}
	dp, dpm, err := portMask(s.DstPort)
	if err != nil {
		return sel, fmt.Errorf("destination port: %w", err)
	}
	if (spm != 0 || dpm != 0) && !hasPorts(s.Proto) {
		return sel, fmt.Errorf("xfrm: ports need TCP, UDP, SCTP or UDP-Lite, not protocol %d", s.Proto)
	}
	sel.Sport, sel.SportMask = nl.Swap16(sp), nl.Swap16(spm)
	sel.Dport, sel.DportMask = nl.Swap16(dp), nl.Swap16(dpm)
	return sel, nil
}

func hasPorts(proto uint8) bool {
	switch proto {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_SCTP, unix.IPPROTO_UDPLITE:
		return true
	}
	return false
}

func netIP(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

// kernelReqID translates an ipsec reqid into the owned kernel range.
func (d *Dataplane) kernelReqID(r uint32) (uint32, error) {
	if r >= ReqIDSpan {
		return 0, fmt.Errorf("xfrm: reqid %d above %d", r, ReqIDSpan-1)
	}
	return d.cfg.reqIDBase + r, nil
}

func (d *Dataplane) ownsReqID(k uint32) bool {
	return k >= d.cfg.reqIDBase && k-d.cfg.reqIDBase < ReqIDSpan
}

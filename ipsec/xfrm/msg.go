package xfrm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// Kernel XFRM uapi layouts (include/uapi/linux/xfrm.h), decoded by hand from
// bytes so that the decoder can be fuzzed and never trusts a length it has not
// checked. Multi-byte fields are host order except addresses, SPIs and ports.
const (
	sizeofSelector   = 56  // struct xfrm_selector
	sizeofID         = 24  // struct xfrm_id
	sizeofAddress    = 16  // xfrm_address_t
	sizeofLftCfg     = 64  // struct xfrm_lifetime_cfg
	sizeofLftCur     = 32  // struct xfrm_lifetime_cur
	sizeofPolicyInfo = 168 // struct xfrm_userpolicy_info
	sizeofUsersaInfo = 224 // struct xfrm_usersa_info
	sizeofAcquire    = 280 // struct xfrm_user_acquire
	sizeofExpire     = 232 // struct xfrm_user_expire

	msgAcquire = 0x17 // XFRM_MSG_ACQUIRE
	msgExpire  = 0x18 // XFRM_MSG_EXPIRE
)

var errShort = errors.New("xfrm: message too short")

var ne = binary.NativeEndian

// selector is a decoded struct xfrm_selector.
type selector struct {
	family           uint16
	dst, src         netip.Addr
	plenD, plenS     uint8
	proto            uint8
	dport, dportMask uint16
	sport, sportMask uint16
}

func decodeAddr(b []byte, fam uint16) netip.Addr {
	switch fam {
	case unix.AF_INET:
		return netip.AddrFrom4([4]byte(b[:4]))
	case unix.AF_INET6:
		return netip.AddrFrom16([16]byte(b[:16]))
	}
	return netip.Addr{}
}

func decodeSelector(b []byte) (selector, error) {
	if len(b) < sizeofSelector {
		return selector{}, errShort
	}
	s := selector{
		dport:     binary.BigEndian.Uint16(b[32:]),
		dportMask: binary.BigEndian.Uint16(b[34:]),
		sport:     binary.BigEndian.Uint16(b[36:]),
		sportMask: binary.BigEndian.Uint16(b[38:]),
		family:    ne.Uint16(b[40:]),
		plenD:     b[42],
		plenS:     b[43],
		proto:     b[44],
	}
	s.dst = decodeAddr(b[0:16], s.family)
	s.src = decodeAddr(b[16:32], s.family)
	return s, nil
}

// ipsecSelector converts to the ipsec form; a masked port becomes a range.
func (s selector) ipsecSelector() (ipsec.Selector, error) {
	if !s.src.IsValid() || !s.dst.IsValid() {
		return ipsec.Selector{}, fmt.Errorf("xfrm: selector family %d", s.family)
	}
	src, err := s.src.Prefix(int(s.plenS))
	if err != nil {
		return ipsec.Selector{}, fmt.Errorf("xfrm: selector source: %w", err)
	}
	dst, err := s.dst.Prefix(int(s.plenD))
	if err != nil {
		return ipsec.Selector{}, fmt.Errorf("xfrm: selector destination: %w", err)
	}
	return ipsec.Selector{
		Src: src, Dst: dst, Proto: s.proto,
		SrcPort: maskRange(s.sport, s.sportMask),
		DstPort: maskRange(s.dport, s.dportMask),
	}, nil
}

func maskRange(port, mask uint16) ipsec.PortRange {
	if mask == 0 {
		return ipsec.PortRange{}
	}
	lo := port & mask
	return ipsec.PortRange{Lo: lo, Hi: lo | ^mask}
}

// acquire is a decoded XFRM_MSG_ACQUIRE.
type acquire struct {
	peer, local netip.Addr // template's destination and source
	proto       alg.Protocol
	trigger     selector // the packet
	policyIndex uint32
	policyDir   uint8
	seq         uint32
}

// decodeAcquire decodes the payload of an XFRM_MSG_ACQUIRE (after nlmsghdr).
func decodeAcquire(b []byte) (acquire, error) {
	if len(b) < sizeofAcquire {
		return acquire{}, fmt.Errorf("xfrm: acquire of %d bytes: %w", len(b), errShort)
	}
	var a acquire
	var err error
	// xfrm_id id: daddr[16] spi[4] proto[1]; then saddr; then sel.
	a.proto = alg.Protocol(b[20])
	a.trigger, err = decodeSelector(b[sizeofID+sizeofAddress:])
	if err != nil {
		return acquire{}, err
	}
	// The template addresses share the packet's family in practice; the
	// acquire carries no separate family for them.
	a.peer = decodeAddr(b[0:16], a.trigger.family)
	a.local = decodeAddr(b[sizeofID:sizeofID+16], a.trigger.family)
	pol := b[sizeofID+sizeofAddress+sizeofSelector:]
	off := sizeofSelector + sizeofLftCfg + sizeofLftCur // priority
	a.policyIndex = ne.Uint32(pol[off+4:])
	a.policyDir = pol[off+8]
	a.seq = ne.Uint32(b[sizeofAcquire-4:])
	return a, nil
}

// expire is a decoded XFRM_MSG_EXPIRE.
type expire struct {
	key   ipsec.SAKey
	src   netip.Addr
	reqid uint32
	hard  bool
}

// decodeExpire decodes the payload of an XFRM_MSG_EXPIRE.
func decodeExpire(b []byte) (expire, error) {
	if len(b) < sizeofExpire {
		return expire{}, fmt.Errorf("xfrm: expire of %d bytes: %w", len(b), errShort)
	}
	id := b[sizeofSelector:]
	fam := ne.Uint16(b[212:])
	e := expire{
		key: ipsec.SAKey{
			Dst:   decodeAddr(id[0:16], fam),
			SPI:   binary.BigEndian.Uint32(id[16:]),
			Proto: alg.Protocol(id[20]),
		},
		src:   decodeAddr(b[sizeofSelector+sizeofID:], fam),
		reqid: ne.Uint32(b[208:]),
		hard:  b[sizeofUsersaInfo] != 0,
	}
	if !e.key.Dst.IsValid() {
		return expire{}, fmt.Errorf("xfrm: expire for family %d", fam)
	}
	return e, nil
}

// splitNetlink walks a buffer of netlink messages, calling f with each
// message's type and payload. It stops at the first malformed header.
func splitNetlink(b []byte, f func(typ uint16, payload []byte)) error {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(ne.Uint32(b[0:]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return fmt.Errorf("xfrm: netlink message length %d of %d", l, len(b))
		}
		f(ne.Uint16(b[4:]), b[unix.NLMSG_HDRLEN:l])
		l = (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if l >= len(b) {
			return nil
		}
		b = b[l:]
	}
	return nil
}

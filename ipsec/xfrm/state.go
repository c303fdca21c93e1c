package xfrm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

const legacyReplayMax = 32 // bits in xfrm_replay_state.bitmap

// stateInfo builds the xfrm_usersa_info of an SA (without algorithms).
func (d *Dataplane) stateInfo(sa *ipsec.SA) (*nl.XfrmUsersaInfo, error) {
	reqid, err := d.kernelReqID(sa.ReqID)
	if err != nil {
		return nil, err
	}
	if sa.Src.Is4() != sa.Dst.Is4() {
		return nil, errors.New("xfrm: SA mixes IPv4 and IPv6 addresses")
	}
	m := &nl.XfrmUsersaInfo{}
	m.Family = family(sa.Dst)
	m.Id.Daddr = xfrmAddr(sa.Dst)
	m.Id.Spi = nl.Swap32(sa.SPI)
	m.Id.Proto = uint8(sa.Proto)
	m.Saddr = xfrmAddr(sa.Src)
	m.Mode = xfrmMode(sa.Mode)
	m.Reqid = reqid
	if sa.ReplayWindow <= legacyReplayMax {
		m.ReplayWindow = uint8(sa.ReplayWindow)
	}
	m.Lft = lifetimeCfg(sa.Lifetime)
	if sa.Mode == alg.Transport && sa.Selector.Src.IsValid() && sa.Selector.Dst.IsValid() {
		sel := sa.Selector
		sel.SrcPort, sel.DstPort = ipsec.PortRange{}, ipsec.PortRange{}
		if m.Sel, err = xfrmSelector(sel); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func lifetimeCfg(l ipsec.Lifetime) nl.XfrmLifetimeCfg {
	inf := func(v uint64) uint64 {
		if v == 0 {
			return nl.XFRM_INF
		}
		return v
	}
	return nl.XfrmLifetimeCfg{
		SoftByteLimit:         inf(l.SoftBytes),
		HardByteLimit:         inf(l.HardBytes),
		SoftPacketLimit:       nl.XFRM_INF,
		HardPacketLimit:       nl.XFRM_INF,
		SoftAddExpiresSeconds: seconds(l.SoftTime),
		HardAddExpiresSeconds: seconds(l.HardTime),
	}
}

// seconds rounds a positive duration up to whole seconds (XFRM's unit).
func seconds(t time.Duration) uint64 {
	if t <= 0 {
		return 0
	}
	return uint64((t + time.Second - 1) / time.Second)
}

// stateAttrs returns the algorithm, encapsulation and replay attributes.
func stateAttrs(sa *ipsec.SA) ([]*nl.RtAttr, error) {
	var attrs []*nl.RtAttr
	name := func(s string) (b [64]byte) { copy(b[:], s); return b }
	if sa.Proto == alg.ESP {
		c, ok := cipherAlgo(sa.Cipher)
		if !ok {
			return nil, fmt.Errorf("xfrm: cipher %s not supported", sa.Cipher)
		}
		key := []byte(sa.CipherKey)
		if c.icv != 0 {
			a := nl.XfrmAlgoAEAD{AlgName: name(c.name), AlgKeyLen: uint32(len(key) * 8), AlgICVLen: uint32(c.icv), AlgKey: key}
			attrs = append(attrs, nl.NewRtAttr(nl.XFRMA_ALG_AEAD, a.Serialize()))
		} else {
			a := nl.XfrmAlgo{AlgName: name(c.name), AlgKeyLen: uint32(len(key) * 8), AlgKey: key}
			attrs = append(attrs, nl.NewRtAttr(nl.XFRMA_ALG_CRYPT, a.Serialize()))
		}
	}
	if sa.Integ != alg.IntegNone {
		i, ok := integAlgo(sa.Integ)
		if !ok {
			return nil, fmt.Errorf("xfrm: integrity %s not supported", sa.Integ)
		}
		key := []byte(sa.IntegKey)
		a := nl.XfrmAlgoAuth{AlgName: name(i.name), AlgKeyLen: uint32(len(key) * 8), AlgTruncLen: uint32(i.trunc), AlgKey: key}
		attrs = append(attrs, nl.NewRtAttr(nl.XFRMA_ALG_AUTH_TRUNC, a.Serialize()))
	}
	if sa.Encap != nil {
		e := nl.XfrmEncapTmpl{
			EncapType:  unix.UDP_ENCAP_ESPINUDP,
			EncapSport: nl.Swap16(sa.Encap.SrcPort),
			EncapDport: nl.Swap16(sa.Encap.DstPort),
		}
		attrs = append(attrs, nl.NewRtAttr(nl.XFRMA_ENCAP, e.Serialize()))
	}
	if sa.ReplayWindow > legacyReplayMax {
		r := nl.XfrmReplayStateEsn{ReplayWindow: sa.ReplayWindow, BmpLen: (sa.ReplayWindow + 31) / 32}
		attrs = append(attrs, nl.NewRtAttr(nl.XFRMA_REPLAY_ESN_VAL, r.Serialize()))
	}
	return attrs, nil
}

// AddSA implements ipsec.Dataplane. An SA whose SPI came from AllocSPI
// replaces the larval kernel state (XFRM_MSG_UPDSA); others are created
// (XFRM_MSG_NEWSA) and an existing key is ErrExists. An inbound SA's SPI joins
// the known-SPI set before the SA exists, so no packet is misreported.
func (d *Dataplane) AddSA(ctx context.Context, sa ipsec.SA) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if err := sa.Validate(); err != nil {
		return fmt.Errorf("xfrm: %w", err)
	}
	if sa.Encap != nil && !sa.Dst.Is4() {
		return errors.New("xfrm: ESP-in-UDP is IPv4 only here")
	}
	info, err := d.stateInfo(&sa)
	if err != nil {
		return err
	}
	attrs, err := stateAttrs(&sa)
	if err != nil {
		return err
	}
	key := sa.Key()
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.sas[key]; ok {
		return fmt.Errorf("xfrm: add SA %s: %w", key, ipsec.ErrExists)
	}
	typ := nl.XFRM_MSG_NEWSA
	if d.larval[key] {
		typ = nl.XFRM_MSG_UPDSA
	}
	if sa.Dir == ipsec.DirIn {
		if err := d.watchSPI(key, true); err != nil {
			return err
		}
	}
	req := d.request(typ, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(info)
	for _, a := range attrs {
		req.AddData(a)
	}
	if _, err := req.Execute(unix.NETLINK_XFRM, 0); err != nil {
		if sa.Dir == ipsec.DirIn && !d.larval[key] {
			_ = d.watchSPI(key, false)
		}
		if errors.Is(err, unix.ENOENT) {
			err = fmt.Errorf("%w: the kernel could not set up %s/%s (crypto module or stdrng/drbg missing?)", err, sa.Cipher, sa.Integ)
		}
		return mapErr("add SA "+key.String(), err)
	}
	delete(d.larval, key)
	d.sas[key] = saRecord{dir: sa.Dir, src: sa.Src, reqid: info.Reqid}
	return nil
}

// watchSPI marks an inbound (or larval) SA as known, or forgets it: the
// in-memory set that watched packets are checked against, and the nftables
// set of SPIs (reference-counted per protocol, since two local addresses may
// hold the same SPI). The caller holds d.mu.
func (d *Dataplane) watchSPI(key ipsec.SAKey, known bool) error {
	if d.det == nil {
		return nil
	}
	d.kmu.Lock()
	had := d.known[key]
	if known {
		d.known[key] = true
	} else {
		delete(d.known, key)
	}
	d.kmu.Unlock()
	if had == known || d.nft == nil {
		return nil
	}
	ps := protoSPI{key.Proto, key.SPI}
	var err error
	if known {
		if d.spiRefs[ps]++; d.spiRefs[ps] == 1 {
			err = d.nft.add(key.Proto, key.SPI)
		}
	} else {
		if d.spiRefs[ps]--; d.spiRefs[ps] <= 0 {
			delete(d.spiRefs, ps)
			if err = d.nft.del(key.Proto, key.SPI); errors.Is(err, unix.ENOENT) {
				err = nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("xfrm: known-SPI set: %w", err)
	}
	return nil
}

// AllocSPI implements ipsec.Dataplane with XFRM_MSG_ALLOCSPI: the kernel
// picks an unused SPI in [256, 2^32) and holds it as a larval state (reqid in
// the owned range, so Flush removes leftovers) until AddSA completes it or
// net.core.xfrm_acq_expires passes.
func (d *Dataplane) AllocSPI(ctx context.Context, proto alg.Protocol, src, dst netip.Addr) (uint32, error) {
	if err := ctxErr(ctx); err != nil {
		return 0, err
	}
	if proto != alg.ESP && proto != alg.AH {
		return 0, fmt.Errorf("xfrm: alloc SPI for protocol %d", proto)
	}
	if !dst.IsValid() || (src.IsValid() && src.Is4() != dst.Is4()) {
		return 0, errors.New("xfrm: alloc SPI needs a destination (and a source of the same family)")
	}
	m := &nl.XfrmUserSpiInfo{Min: 0x100, Max: 0xffffffff}
	m.XfrmUsersaInfo.Family = family(dst)
	m.XfrmUsersaInfo.Id.Daddr = xfrmAddr(dst)
	m.XfrmUsersaInfo.Id.Proto = uint8(proto)
	m.XfrmUsersaInfo.Saddr = xfrmAddr(src)
	m.XfrmUsersaInfo.Reqid = d.cfg.reqIDBase
	m.XfrmUsersaInfo.Lft = lifetimeCfg(ipsec.Lifetime{})
	d.mu.Lock()
	defer d.mu.Unlock()
	req := d.request(nl.XFRM_MSG_ALLOCSPI, unix.NLM_F_ACK)
	req.AddData(m)
	msgs, err := req.Execute(unix.NETLINK_XFRM, nl.XFRM_MSG_NEWSA)
	if err != nil {
		return 0, mapErr("alloc SPI", err)
	}
	if len(msgs) == 0 || len(msgs[0]) < sizeofUsersaInfo {
		return 0, errors.New("xfrm: alloc SPI: no state in the kernel's answer")
	}
	spi := binary.BigEndian.Uint32(msgs[0][sizeofSelector+16:])
	key := ipsec.SAKey{Dst: dst, Proto: proto, SPI: spi}
	d.larval[key] = true
	if err := d.watchSPI(key, true); err != nil {
		return 0, err
	}
	return spi, nil
}

// DeleteSA implements ipsec.Dataplane.
func (d *Dataplane) DeleteSA(ctx context.Context, key ipsec.SAKey) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if !key.Dst.IsValid() {
		return fmt.Errorf("xfrm: delete SA %s: %w", key, ipsec.ErrNotFound)
	}
	id := &netlink.XfrmState{Dst: netIP(key.Dst), Proto: netlink.Proto(key.Proto), Spi: int(key.SPI)}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.sas[key]; !ok && !d.larval[key] {
		// Not installed by this process: delete it only if it is ours
		// (left by an earlier run), never another daemon's.
		s, err := d.h.XfrmStateGet(id)
		if err != nil {
			return mapErr("delete SA "+key.String(), err, unix.ESRCH)
		}
		if !d.ownsReqID(uint32(s.Reqid)) {
			return fmt.Errorf("xfrm: delete SA %s: %w (reqid %d is not in this agent's range)", key, ipsec.ErrNotFound, s.Reqid)
		}
	}
	err := d.h.XfrmStateDel(id)
	if err == nil || errors.Is(err, unix.ESRCH) {
		d.forget(key)
	}
	return mapErr("delete SA "+key.String(), err, unix.ESRCH)
}

// forget drops an SA from the maps and, if it was inbound, from the known set.
// The caller holds d.mu.
func (d *Dataplane) forget(key ipsec.SAKey) {
	rec, ok := d.sas[key]
	if (ok && rec.dir == ipsec.DirIn) || d.larval[key] {
		if err := d.watchSPI(key, false); err != nil {
			d.cfg.log.Warn("xfrm: cannot remove SPI from the known set", "spi", fmt.Sprintf("0x%08x", key.SPI), "err", err)
		}
	}
	delete(d.sas, key)
	delete(d.larval, key)
}

// Counters implements ipsec.Dataplane from the kernel's curlft and stats.
// Bytes is what XFRM counts: the packet length it processed (inner packet in
// tunnel mode).
func (d *Dataplane) Counters(ctx context.Context, key ipsec.SAKey) (ipsec.Counters, error) {
	if err := ctxErr(ctx); err != nil {
		return ipsec.Counters{}, err
	}
	d.mu.Lock()
	s, err := d.h.XfrmStateGet(&netlink.XfrmState{Dst: netIP(key.Dst), Proto: netlink.Proto(key.Proto), Spi: int(key.SPI)})
	d.mu.Unlock()
	if err != nil {
		return ipsec.Counters{}, mapErr("read SA "+key.String(), err, unix.ESRCH)
	}
	return countersFrom(s.Statistics), nil
}

// AllCounters implements ipsec.CounterDumper: one dump of the kernel's
// states, the counters of those this dataplane owns (reqid range; larval
// states left out).
func (d *Dataplane) AllCounters(ctx context.Context) (map[ipsec.SAKey]ipsec.Counters, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	d.mu.Lock()
	states, err := d.h.XfrmStateList(netlink.FAMILY_ALL)
	d.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("xfrm: list SAs: %w", err)
	}
	out := make(map[ipsec.SAKey]ipsec.Counters, len(states))
	for i := range states {
		s := &states[i]
		dst, ok := netip.AddrFromSlice(s.Dst)
		if !ok || s.Spi == 0 || !d.ownsReqID(uint32(s.Reqid)) {
			continue
		}
		out[ipsec.SAKey{Dst: dst.Unmap(), Proto: alg.Protocol(s.Proto), SPI: uint32(s.Spi)}] = countersFrom(s.Statistics)
	}
	return out, nil
}

func countersFrom(st netlink.XfrmStateStats) ipsec.Counters {
	c := ipsec.Counters{
		Packets:      st.Packets,
		Bytes:        st.Bytes,
		AuthFailures: uint64(st.Failed),
		ReplayErrors: uint64(st.Replay),
	}
	if st.AddTime != 0 {
		c.AddTime = time.Unix(int64(st.AddTime), 0)
	}
	if st.UseTime != 0 {
		c.LastUse = time.Unix(int64(st.UseTime), 0)
	}
	return c
}

// flushStates deletes every kernel state with a reqid in the owned range.
// The caller holds d.mu.
func (d *Dataplane) flushStates() error {
	states, err := d.h.XfrmStateList(netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("xfrm: list SAs: %w", err)
	}
	var errs []error
	for i := range states {
		s := &states[i]
		if !d.ownsReqID(uint32(s.Reqid)) || s.Spi == 0 {
			continue // not ours, or a larval acquire state (it expires by itself)
		}
		err := d.h.XfrmStateDel(&netlink.XfrmState{Dst: s.Dst, Proto: s.Proto, Spi: s.Spi})
		if err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("xfrm: flush SA 0x%08x: %w", uint32(s.Spi), err))
		}
	}
	for k := range d.sas {
		d.forget(k)
	}
	for k := range d.larval {
		d.forget(k)
	}
	return errors.Join(errs...)
}

package xfrm

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/ipsec"
)

// monitorLoop reads XFRMNLGRP_ACQUIRE and XFRMNLGRP_EXPIRE until Close.
func (d *Dataplane) monitorLoop() {
	defer d.wg.Done()
	for {
		msgs, _, err := d.mon.Receive()
		if err != nil {
			if d.closed.Load() {
				return
			}
			if errors.Is(err, unix.ENOBUFS) {
				d.monOverrun.Add(1)
				continue
			}
			d.cfg.log.Error("xfrm: event socket failed; no more acquire/expire events", "err", err)
			return
		}
		for _, m := range msgs {
			d.handleKernelMsg(m.Header.Type, m.Data)
		}
	}
}

// handleKernelMsg turns one XFRM multicast message into an event, if it
// concerns something this dataplane owns.
func (d *Dataplane) handleKernelMsg(typ uint16, b []byte) {
	now := time.Now()
	switch typ {
	case msgAcquire:
		a, err := decodeAcquire(b)
		if err != nil {
			d.cfg.log.Warn("xfrm: bad acquire", "err", err)
			return
		}
		pk, ok := policyKey(a.policyIndex)
		if !ok {
			return // another IKE daemon's policy
		}
		trig, err := a.trigger.ipsecSelector()
		if err != nil {
			d.cfg.log.Warn("xfrm: bad acquire selector", "err", err)
			return
		}
		d.emit(ipsec.Event{
			Kind: ipsec.EventAcquire, Time: now, Policy: pk, Trigger: trig,
			SA: ipsec.SAKey{Dst: a.peer, Proto: a.proto}, Src: a.local,
		})
	case msgExpire:
		e, err := decodeExpire(b)
		if err != nil {
			d.cfg.log.Warn("xfrm: bad expire", "err", err)
			return
		}
		if !d.ownsReqID(e.reqid) || e.key.SPI == 0 {
			return
		}
		kind := ipsec.EventSoftExpire
		if e.hard {
			kind = ipsec.EventHardExpire
			d.mu.Lock()
			d.forget(e.key)
			d.mu.Unlock()
		}
		d.emit(ipsec.Event{Kind: kind, Time: now, SA: e.key, Src: e.src})
	}
}

// watchLoop reads one watch socket: NFLOG messages or raw ESP/AH packets.
func (d *Dataplane) watchLoop(c *pktConn) {
	defer d.wg.Done()
	handle := d.handleRaw
	if d.nft != nil {
		handle = func(b []byte) { _ = splitNetlink(b, d.handleNFLOG) }
	}
	buf := make([]byte, 1<<16)
	for {
		n, err := c.read(buf)
		if err != nil {
			if d.closed.Load() {
				return
			}
			if errors.Is(err, unix.ENOBUFS) {
				d.watchOverrun.Add(1)
				continue
			}
			d.cfg.log.Error("xfrm: invalid-SPI watch socket failed; no more invalid-SPI events", "err", err)
			return
		}
		handle(buf[:n])
	}
}

// handleNFLOG handles one nfnetlink_log message.
func (d *Dataplane) handleNFLOG(typ uint16, b []byte) {
	if typ != nfnlSubsysULOG<<8|nfulnlMsgPacket {
		return
	}
	d.watchPkts.Add(1)
	payload, ok := nflogPayload(b)
	if !ok {
		d.watchBad.Add(1)
		return
	}
	d.handleSPIPacket(payload)
}

// handleRaw handles one packet from a raw ESP or AH socket.
func (d *Dataplane) handleRaw(b []byte) {
	d.watchPkts.Add(1)
	d.handleSPIPacket(b)
}

func (d *Dataplane) handleSPIPacket(b []byte) {
	p, err := parseSPIPacket(b)
	if err != nil {
		d.watchBad.Add(1)
		return
	}
	d.kmu.RLock()
	known := d.known[ipsec.SAKey{Dst: p.dst, Proto: p.proto, SPI: p.spi}]
	d.kmu.RUnlock()
	if known {
		d.watchKnown.Add(1)
		return
	}
	ev, ok := d.det.Observe(p.src, p.sport, p.dst, p.proto, p.spi)
	if !ok {
		return
	}
	// Debug only: the agent logs the router's %CRYPTO-4-RECVD_PKT_INV_SPI
	// line once it has decided what to do about the event.
	d.cfg.log.Debug("unknown SPI", "src", p.src.String(), "dst", p.dst.String(), "spi", fmt.Sprintf("0x%08x", p.spi), "proto", p.proto.String(), "sport", p.sport)
	d.emit(ev)
}

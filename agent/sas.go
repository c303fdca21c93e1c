package agent

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/spiagent/spiagent/agent/gnmi"
	"github.com/spiagent/spiagent/agent/recovery"
	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike"
	"github.com/spiagent/spiagent/ipsec"
)

// Implementation constants.
const (
	replayWindow     = 128             // packets (RFC 4303 asks for at least 32, 64 recommended)
	opTimeout        = 5 * time.Second // one dataplane operation
	notifyInvalidSPI = 11              // RFC 2408 §3.14.1
)

// handleIKE applies what the IKE engine produced, once its dataplane half
// is done (install.go): forget deleted bundles (removing their SAs),
// register installed ones, and give up on those the dataplane refused.
func (a *Agent) handleIKE(o ike.Output) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for i := range o.Delete {
		a.mu.Lock()
		a.removeChildLocked(ctx, o.Delete[i].ID, o.Delete[i].Reason)
		a.mu.Unlock()
	}
	for i := range o.Install {
		c := &o.Install[i]
		r, ok := a.takeInstalled(c.ID)
		if !ok {
			continue // deleted before we got to it; its SAs went with it
		}
		if r.err != nil {
			a.log.Error("dataplane refused a negotiated SA; deleting the bundle", "peer", c.Remote, "crypto_map", c.Tag, "err", r.err)
			_ = a.ike.DeleteChild(c.ID)
			continue
		}
		a.register(c, r.keys)
	}
	for _, ev := range o.Events {
		a.handleIKEEvent(ev)
	}
	if len(o.Install)+len(o.Delete) > 0 {
		a.publishSAs()
	}
}

// register records a bundle whose SAs (keys) are in the dataplane.
func (a *Agent) register(c *ike.ChildSA, keys []ipsec.SAKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	stripped := *c
	stripped.In = append([]ike.SA(nil), c.In...)
	stripped.Out = append([]ike.SA(nil), c.Out...)
	for i := range stripped.In {
		stripped.In[i].EncKey, stripped.In[i].IntegKey = nil, nil
	}
	for i := range stripped.Out {
		stripped.Out[i].EncKey, stripped.Out[i].IntegKey = nil, nil
	}
	ch := &child{sa: stripped, keys: keys}
	if rs, ok := a.applied.rules[c.Tag]; ok {
		t := rs.tun
		ch.tun = &t
	}
	a.children[c.ID] = ch
	a.log.Info("IPsec SAs installed", "peer", c.Remote, "crypto_map", c.Tag,
		"spi_in", spiList(c.In), "spi_out", spiList(c.Out), "mode", c.Mode, "udp_encap", c.Encap != nil)
}

func spiList(sas []ike.SA) []string {
	out := make([]string, len(sas))
	for i, s := range sas {
		out[i] = s.Proto.String() + ":" + hex32(s.SPI)
	}
	return out
}

func hex32(v uint32) string {
	const digits = "0123456789abcdef"
	b := []byte("0x00000000")
	for i := 9; i >= 2; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b)
}

// removeChild deletes a bundle's SAs from the dataplane and forgets it.
func (a *Agent) removeChild(id uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.removeChildLocked(ctx, id, ike.ReasonLocal)
}

func (a *Agent) removeChildLocked(ctx context.Context, id uint64, why ike.DeleteReason) {
	c, ok := a.children[id]
	if !ok {
		return
	}
	delete(a.children, id)
	for _, k := range c.keys {
		if err := a.dp.DeleteSA(ctx, k); err != nil && !errors.Is(err, ipsec.ErrNotFound) {
			a.log.Warn("dataplane delete SA", "sa", k, "err", err)
		}
	}
	if why == ike.ReasonInvalidSPI {
		a.notifies.sasDeleted += uint64(len(c.sa.Out))
	}
	a.log.Info("IPsec SAs deleted", "peer", c.sa.Remote, "crypto_map", c.sa.Tag, "reason", why.String(),
		"spi_in", spiList(c.sa.In), "spi_out", spiList(c.sa.Out))
}

func (a *Agent) handleIKEEvent(ev ike.Event) {
	switch ev.Kind {
	case ike.EventNotify:
		if ev.NotifyType != notifyInvalidSPI {
			return
		}
		a.mu.Lock()
		a.notifies.received++
		if ev.Authenticated {
			a.notifies.authenticated++
		} else {
			a.notifies.unauthenticated++
		}
		a.mu.Unlock()
		a.log.Info("INVALID-SPI notification received", "peer", ev.Remote, "proto", ev.Proto, "spi", hex32(ev.SPI), "authenticated", ev.Authenticated)
		a.publishInvalidSPI()
	case ike.EventIKEUp, ike.EventIKEDown:
		a.log.Info("IKE SA "+ev.Kind.String(), "peer", ev.Remote, "reason", ev.Reason)
		a.publishSAs()
	case ike.EventExchangeFailed:
		a.log.Warn("IKE exchange failed", "peer", ev.Remote, "reason", ev.Reason)
	case ike.EventDPDDead:
		a.log.Warn("IKE peer dead (DPD)", "peer", ev.Remote)
	}
}

// handleDataplane reacts to a dataplane event.
func (a *Agent) handleDataplane(ev ipsec.Event) {
	switch ev.Kind {
	case ipsec.EventAcquire:
		a.mu.Lock()
		tag, ok := a.applied.owner[ev.Policy]
		a.mu.Unlock()
		if !ok {
			a.log.Warn("acquire for a policy the agent does not know", "policy", ev.Policy)
			return
		}
		a.log.Info("traffic needs an SA; negotiating", "crypto_map", tag, "trigger", ev.Trigger.String())
		if err := a.ike.Initiate(tag, nil); err != nil {
			a.log.Warn("initiate", "crypto_map", tag, "err", err)
		}
	case ipsec.EventSoftExpire:
		if c := a.childBySA(ev.SA); c != nil {
			a.log.Info("IPsec SA reached its soft lifetime; rekeying", "peer", c.sa.Remote, "crypto_map", c.sa.Tag, "sa", ev.SA.String())
			if err := a.ike.RekeyChild(c.sa.ID); err != nil {
				a.log.Warn("rekey", "crypto_map", c.sa.Tag, "err", err)
			}
		}
	case ipsec.EventHardExpire:
		if c := a.childBySA(ev.SA); c != nil {
			a.log.Info("IPsec SA reached its hard lifetime; deleting the bundle", "peer", c.sa.Remote, "crypto_map", c.sa.Tag, "sa", ev.SA.String())
			if err := a.ike.DeleteChild(c.sa.ID); err != nil {
				a.removeChild(c.sa.ID)
			}
		}
	case ipsec.EventInvalidSPI:
		a.invalidSPI(ev)
	}
}

func (a *Agent) childBySA(k ipsec.SAKey) *child {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.children {
		for _, ck := range c.keys {
			if ck == k {
				return c
			}
		}
	}
	return nil
}

// installGrace is how long an invalid SPI waits before recovery acts on it.
// A responder installs its inbound SAs when Quick Mode's third message
// arrives, and the initiator may already be sending on them: an SPI that
// is unknown for a few milliseconds is not a black hole. After the grace,
// an SPI that now has an SA is ignored.
const installGrace = 150 * time.Millisecond

// invalidSPI is Invalid SPI Recovery: count, log, and maybe notify.
func (a *Agent) invalidSPI(ev ipsec.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		select {
		case <-a.done:
			return
		case <-time.After(installGrace):
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if _, err := a.dp.Counters(ctx, ev.SA); err == nil {
			a.log.Debug("SPI became valid during the install grace; not a black hole", "peer", ev.Src, "spi", hex32(ev.SA.SPI))
			return
		}
		a.recover(ev)
	}()
}

func (a *Agent) recover(ev ipsec.Event) {
	re := recovery.Event{Time: ev.Time, Src: ev.Src, Dst: ev.SA.Dst, Proto: uint8(ev.SA.Proto), SPI: ev.SA.SPI}
	out := a.rec.Decide(re)
	if out == recovery.Notify {
		a.log.Info("invalid SPI recovery: notifying the source", "peer", ev.Src, "spi", hex32(ev.SA.SPI), "proto", ev.SA.Proto)
		if err := a.ike.SendInvalidSPI(ev.SA.Dst, ev.Src, alg.Protocol(ev.SA.Proto), ev.SA.SPI); err != nil {
			a.mu.Lock()
			a.notifies.failed++
			a.mu.Unlock()
			a.log.Warn("invalid SPI recovery failed", "peer", ev.Src, "err", err)
		} else {
			a.reestablish(ev.Src)
		}
	}
	a.publishInvalidSPI()
}

// reestablish negotiates fresh SAs for every crypto-map entry towards peer
// that has none, right after a recovery. The peer may not renegotiate by
// itself once it drops its stale SAs (strongSwan's userspace IPsec raises
// no acquire, for one), and with one-way traffic this side would never ask.
func (a *Agent) reestablish(peer netip.Addr) {
	a.mu.Lock()
	have := map[string]bool{}
	for _, c := range a.children {
		have[c.sa.Tag] = true
	}
	var tags []string
	for tag, rs := range a.applied.rules {
		if !have[tag] && len(rs.tun.Peers) > 0 && rs.tun.Peers[0] == peer {
			tags = append(tags, tag)
		}
	}
	a.mu.Unlock()
	for _, tag := range tags {
		if err := a.ike.Initiate(tag, nil); err != nil {
			a.log.Warn("re-establish after recovery", "crypto_map", tag, "err", err)
		}
	}
}

// ClearSA implements clear crypto sa / clear crypto isakmp.
func (a *Agent) ClearSA(ctx context.Context, req gnmi.ClearRequest) (gnmi.ClearResult, error) {
	var peer netip.Addr
	if req.Peer != "" {
		p, err := netip.ParseAddr(req.Peer)
		if err != nil {
			return gnmi.ClearResult{}, err
		}
		peer = p
	}
	a.mu.Lock()
	var ids []uint64
	peers := map[netip.Addr]bool{}
	var res gnmi.ClearResult
	for id, c := range a.children {
		if peer.IsValid() && c.sa.Remote != peer {
			continue
		}
		if req.CryptoMap != "" && (c.tun == nil || c.tun.Map != req.CryptoMap) {
			continue
		}
		ids = append(ids, id)
		peers[c.sa.Remote] = true
		res.IPsecSAsCleared += uint32(len(c.keys))
	}
	a.mu.Unlock()
	if req.ISAKMP || req.NoNotify {
		if snap, err := a.ike.Snapshot(); err == nil {
			for _, s := range snap.IKE {
				r := s.Remote.Addr()
				if (peer.IsValid() && r != peer) || (req.CryptoMap != "" && !peers[r]) {
					continue
				}
				peers[r] = true
				res.IKESAsCleared++
			}
		}
		if !peer.IsValid() && req.CryptoMap == "" {
			return res, a.ike.Clear(netip.Addr{}, !req.NoNotify)
		}
		for p := range peers {
			if err := a.ike.Clear(p, !req.NoNotify); err != nil {
				return res, err
			}
		}
		return res, nil
	}
	for _, id := range ids {
		if err := a.ike.DeleteChild(id); err != nil {
			return res, err
		}
	}
	return res, nil
}

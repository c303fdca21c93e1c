package ike

import (
	"time"

	"github.com/spiagent/spiagent/ike/wire"
)

// ISAKMP SA lifecycle after Main Mode: INITIAL-CONTACT, lifetime and
// rekey, DPD and NAT keepalive timers.

// initialContact deletes every other SA with the peer (RFC 2407 §4.6.3.3).
func (e *Engine) initialContact(now time.Time, sa *ikeSA) {
	p := e.peers[sa.remote.Addr()]
	if p == nil {
		return
	}
	e.event(Event{Kind: EventNotify, Time: now, Local: sa.local.Addr(), Remote: sa.remote.Addr(), NotifyType: wire.NotifyInitialContact, Authenticated: true})
	for _, c := range p.children {
		e.removeChild(c, ReasonInitialContact)
	}
	for o := range p.ikes {
		if o != sa && o.state == stateEstablished {
			e.removeIKE(now, o, "initial-contact")
		}
	}
}

// armIKETimers sets the lifetime, rekey, DPD and keepalive timers.
func (e *Engine) armIKETimers(now time.Time, sa *ikeSA) {
	sa.hard = e.after(now.Add(sa.lifetime), func(now time.Time) {
		e.sendDeleteIKE(now, sa)
		e.removeIKE(now, sa, "expired")
	})
	if sa.initiator {
		sa.soft = e.after(now.Add(e.softLife(sa.lifetime)), func(now time.Time) {
			// Rekey only while child SAs with the peer need it.
			if p := e.peers[sa.remote.Addr()]; p != nil && len(p.children) > 0 && !sa.deleted {
				if _, err := e.startMain(now, sa.local.Addr(), sa.remote.Addr()); err != nil {
					e.cfg.Log.Info("ike: ISAKMP rekey failed", "peer", sa.remote, "err", err)
				}
			}
		})
	}
	if e.cfg.DPDInterval > 0 && sa.dpdPeer {
		e.armDPD(now, sa)
	}
	if sa.natLocal && sa.natt() {
		var ka func(now time.Time)
		ka = func(now time.Time) {
			e.ctr.Keepalives++
			e.send(sa.local, sa.remote, []byte{0xff})
			sa.kaT = e.after(now.Add(e.cfg.NATKeepalive), ka)
		}
		sa.kaT = e.after(now.Add(e.cfg.NATKeepalive), ka)
	}
}

// softLife is 90% of the lifetime minus up to 5% jitter.
func (e *Engine) softLife(l time.Duration) time.Duration {
	j := time.Duration(uint64(e.randU32()) % uint64(l/20+1))
	return l*9/10 - j
}

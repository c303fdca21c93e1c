package agent

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/agent/intent"
	"github.com/spiagent/spiagent/agent/recovery"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ike"
	"github.com/spiagent/spiagent/ipsec"
)

// stateLoop refreshes counters and lifetimes for SAMPLE subscribers.
func (a *Agent) stateLoop() {
	defer a.wg.Done()
	t := time.NewTicker(a.cfg.StateInterval)
	defer t.Stop()
	for {
		select {
		case <-a.done:
			return
		case <-t.C:
			a.publishSAs()
			a.publishInvalidSPI()
		}
	}
}

// publishSAs rewrites the IKE and IPsec SA tables.
func (a *Agent) publishSAs() {
	snap, err := a.ike.Snapshot()
	if err != nil {
		return
	}
	now := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	ikes := make(map[uint32]*gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa)
	a.mu.Lock()
	for _, s := range snap.IKE {
		id := a.connID(s)
		ikes[id] = ikeSAState(id, s)
	}
	ipsecs := map[ipsec.SAKey]*gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa{}
	ctrs := a.allCounters(ctx)
	for _, c := range a.children {
		for _, st := range a.ipsecSAStates(ctx, c, now, ctrs) {
			ipsecs[saKeyOf(st)] = st
		}
	}
	a.mu.Unlock()
	err = a.state.Update(func(tx *telemetry.Tx) error {
		cur := a.state.Snapshot().Root
		for id := range ikeSAsIn(cur) {
			if _, ok := ikes[id]; !ok {
				if err := tx.Delete(telemetry.IKESAPath(id)); err != nil {
					return err
				}
			}
		}
		for k := range ipsecSAsIn(cur) {
			if _, ok := ipsecs[k]; !ok {
				if err := tx.Delete(telemetry.IPsecSAPath(k.Dst.String(), protoKey(k.Proto), k.SPI)); err != nil {
					return err
				}
			}
		}
		for _, s := range ikes {
			if err := tx.PutIKESA(s); err != nil {
				return err
			}
		}
		for _, s := range ipsecs {
			if err := tx.PutIPsecSA(s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		a.log.Warn("publish SA state", "err", err)
	}
}

// connID gives each IKE SA a stable connection ID (its cookies name it).
func (a *Agent) connID(s ike.IKESAInfo) uint32 {
	var k [16]byte
	copy(k[:8], s.ICookie[:])
	copy(k[8:], s.RCookie[:])
	if id, ok := a.connIDs[k]; ok {
		return id
	}
	a.nextConn++
	a.connIDs[k] = a.nextConn
	return a.nextConn
}

func ikeSAsIn(root *gen.Device) map[uint32]bool {
	out := map[uint32]bool{}
	if s := root.GetCrypto().GetIsakmp().GetSas(); s != nil {
		for id := range s.Sa {
			out[id] = true
		}
	}
	return out
}

func ipsecSAsIn(root *gen.Device) map[ipsec.SAKey]bool {
	out := map[ipsec.SAKey]bool{}
	if s := root.GetCrypto().GetIpsec().GetSas(); s != nil {
		for _, sa := range s.Sa {
			out[saKeyOf(sa)] = true
		}
	}
	return out
}

// protoKey is a protocol as the model's list key spells it ("esp").
func protoKey(p alg.Protocol) string {
	e, _ := intent.ProtocolEnum(p)
	n, _ := ygot.EnumName(e)
	return n
}

func saKeyOf(sa *gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa) ipsec.SAKey {
	st := sa.GetState()
	k := ipsec.SAKey{SPI: st.GetSpi()}
	k.Proto, _ = intent.ProtocolOf(st.GetProtocol())
	k.Dst, _ = netip.ParseAddr(st.GetDestinationAddress())
	return k
}

var iosStatus = map[string]gen.E_SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State_Status{
	"MM_NO_STATE": gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State_Status_MM_NO_STATE,
	"MM_SA_SETUP": gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State_Status_MM_SA_SETUP,
	"MM_KEY_EXCH": gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State_Status_MM_KEY_EXCH,
	"QM_IDLE":     gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State_Status_QM_IDLE,
	"MM_DELETED":  gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State_Status_MM_DELETED,
}

func ikeSAState(id uint32, s ike.IKESAInfo) *gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa {
	st := &gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State{
		ConnId:            ygot.Uint32(id),
		LocalAddress:      ygot.String(s.Local.Addr().String()),
		RemoteAddress:     ygot.String(s.Remote.Addr().String()),
		LocalPort:         ygot.Uint16(s.Local.Port()),
		RemotePort:        ygot.Uint16(s.Remote.Port()),
		InitiatorCookie:   ygot.String(hex.EncodeToString(s.ICookie[:])),
		ResponderCookie:   ygot.String(hex.EncodeToString(s.RCookie[:])),
		Role:              gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State_Role_responder,
		Status:            iosStatus[s.State],
		NatTraversal:      ygot.Bool(s.NATT),
		LifetimeRemaining: ygot.Uint32(uint32(max(s.LifetimeLeft, 0) / time.Second)),
	}
	if s.Initiator {
		st.Role = gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State_Role_initiator
	}
	// The engine negotiates nothing the model cannot name; a value without
	// a name stays unset rather than be guessed.
	st.Encryption, _ = intent.EncryptionEnum(s.Policy.Cipher)
	st.Hash, _ = intent.HashEnum(s.Policy.Hash)
	st.Group, _ = intent.GroupEnum(s.Policy.Group)
	return &gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa{ConnId: ygot.Uint32(id), State: st}
}

// allCounters reads every SA's counters in one go where the dataplane can
// (ipsec.CounterDumper); nil means ask per SA.
func (a *Agent) allCounters(ctx context.Context) map[ipsec.SAKey]ipsec.Counters {
	d, ok := a.dp.(ipsec.CounterDumper)
	if !ok {
		return nil
	}
	all, err := d.AllCounters(ctx)
	if err != nil {
		a.log.Warn("read SA counters", "err", err)
		return nil
	}
	return all
}

// counters reads one SA's counters: from all when given, else from the
// dataplane.
func (a *Agent) counters(ctx context.Context, key ipsec.SAKey, all map[ipsec.SAKey]ipsec.Counters) (ipsec.Counters, bool) {
	if all != nil {
		c, ok := all[key]
		return c, ok
	}
	c, err := a.dp.Counters(ctx, key)
	return c, err == nil
}

// ipsecSAStates describes a bundle's SAs, with counters from the dataplane
// (ctrs, when the dataplane reads them all at once).
func (a *Agent) ipsecSAStates(ctx context.Context, c *child, now time.Time, ctrs map[ipsec.SAKey]ipsec.Counters) []*gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa {
	var out []*gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa
	left := c.sa.Lifetime - now.Sub(c.sa.Established)
	mode, _ := intent.ModeEnum(c.sa.Mode)
	add := func(s ike.SA, in bool) {
		src, dst, dir := c.sa.Local, c.sa.Remote, gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State_Direction_outbound
		if in {
			src, dst, dir = c.sa.Remote, c.sa.Local, gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State_Direction_inbound
		}
		proto, ok := intent.ProtocolEnum(s.Proto)
		if !ok {
			return
		}
		st := &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State{
			DestinationAddress:       ygot.String(dst.String()),
			SourceAddress:            ygot.String(src.String()),
			Protocol:                 proto,
			Spi:                      ygot.Uint32(s.SPI),
			Direction:                dir,
			Peer:                     ygot.String(c.sa.Remote.String()),
			Mode:                     mode,
			UdpEncapsulated:          ygot.Bool(c.sa.Encap != nil && s.Proto == alg.ESP),
			LocalSelector:            ygot.String(c.sa.LocalTS.String()),
			RemoteSelector:           ygot.String(c.sa.RemoteTS.String()),
			LifetimeRemainingSeconds: ygot.Uint32(uint32(max(left, 0) / time.Second)),
		}
		if tr, err := intent.SATransform(s.Proto, s.Cipher, s.Integ); err == nil {
			st.Transform = ygot.String(tr)
		} else {
			a.log.Warn("publish SA state", "spi", fmt.Sprintf("0x%08x", s.SPI), "err", err)
		}
		if c.tun != nil {
			st.CryptoMap, st.CryptoMapSequence = ygot.String(c.tun.Map), ygot.Uint32(c.tun.Seq)
		}
		key := ipsec.SAKey{Dst: dst, Proto: s.Proto, SPI: s.SPI}
		if ctr, ok := a.counters(ctx, key, ctrs); ok {
			st.Packets, st.Bytes = ygot.Uint64(ctr.Packets), ygot.Uint64(ctr.Bytes)
			st.AuthFailures, st.ReplayErrors = ygot.Uint64(ctr.AuthFailures), ygot.Uint64(ctr.ReplayErrors)
			if c.sa.LifetimeKB > 0 {
				used := ctr.Bytes / 1024
				st.LifetimeRemainingKilobytes = ygot.Uint64(c.sa.LifetimeKB - min(used, c.sa.LifetimeKB))
			}
		}
		out = append(out, &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa{
			DestinationAddress: st.DestinationAddress, Protocol: proto, Spi: st.Spi, State: st,
		})
	}
	for _, s := range c.sa.In {
		add(s, true)
	}
	for _, s := range c.sa.Out {
		add(s, false)
	}
	return out
}

// invalidSPISeen is how many packets with an unknown SPI the dataplane saw:
// it deduplicates and rate-limits them before the agent gets events, so the
// agent's own count is lower under load.
func invalidSPISeen(dp ipsec.Dataplane) uint64 {
	if c, ok := dp.(ipsec.InvalidSPICounter); ok {
		return c.InvalidSPISeen()
	}
	return 0
}

var outcomeEnum = map[recovery.Outcome]gen.E_SpiagentCrypto_Crypto_InvalidSpi_LastEvent_State_Outcome{
	recovery.Notify:           gen.SpiagentCrypto_Crypto_InvalidSpi_LastEvent_State_Outcome_notified,
	recovery.RateLimited:      gen.SpiagentCrypto_Crypto_InvalidSpi_LastEvent_State_Outcome_rate_limited,
	recovery.Deduplicated:     gen.SpiagentCrypto_Crypto_InvalidSpi_LastEvent_State_Outcome_deduplicated,
	recovery.NoKey:            gen.SpiagentCrypto_Crypto_InvalidSpi_LastEvent_State_Outcome_no_key,
	recovery.RecoveryDisabled: gen.SpiagentCrypto_Crypto_InvalidSpi_LastEvent_State_Outcome_recovery_disabled,
}

// publishInvalidSPI writes the invalid-SPI counters and the last event.
func (a *Agent) publishInvalidSPI() {
	st := a.rec.Stats()
	a.mu.Lock()
	n := a.notifies
	a.mu.Unlock()
	received := max(st.Received, invalidSPISeen(a.dp))
	counters := &gen.SpiagentCrypto_Crypto_InvalidSpi_State{
		Received:                ygot.Uint64(received),
		Notified:                ygot.Uint64(st.Notified),
		RateLimited:             ygot.Uint64(st.RateLimited),
		Deduplicated:            ygot.Uint64(st.Deduplicated),
		NoKey:                   ygot.Uint64(st.NoKey),
		RecoveryDisabled:        ygot.Uint64(st.RecoveryDisabled),
		Failed:                  ygot.Uint64(n.failed),
		NotifiesReceived:        ygot.Uint64(n.received),
		NotifiesAuthenticated:   ygot.Uint64(n.authenticated),
		NotifiesUnauthenticated: ygot.Uint64(n.unauthenticated),
		SasDeleted:              ygot.Uint64(n.sasDeleted),
	}
	ev, out := a.rec.Last()
	err := a.state.Update(func(tx *telemetry.Tx) error {
		if err := tx.Replace(telemetry.InvalidSPIStatePath(), counters); err != nil {
			return err
		}
		if out == 0 {
			return nil
		}
		proto, _ := intent.ProtocolEnum(alg.Protocol(ev.Proto))
		return tx.Replace(telemetry.LastInvalidSPIPath(), &gen.SpiagentCrypto_Crypto_InvalidSpi_LastEvent_State{
			Time:               ygot.Uint64(uint64(ev.Time.UnixNano())),
			SourceAddress:      ygot.String(ev.Src.String()),
			DestinationAddress: ygot.String(ev.Dst.String()),
			Protocol:           proto,
			Spi:                ygot.Uint32(ev.SPI),
			Outcome:            outcomeEnum[out],
		})
	})
	if err != nil {
		a.log.Warn("publish invalid-SPI state", "err", err)
	}
}

package ike

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike/suite"
	"github.com/spiagent/spiagent/ike/wire"
)

type saState uint8

const (
	stateMM1Sent saState = iota // I: waiting for MM2
	stateMM3Sent                // I: waiting for MM4
	stateMM5Sent                // I: waiting for MM6
	stateMM2Sent                // R: waiting for MM3
	stateMM4Sent                // R: waiting for MM5
	stateEstablished
)

func (s saState) String() string {
	return [...]string{"MM_SA_SETUP", "MM_KEY_EXCH", "MM_KEY_AUTH", "MM_SA_SETUP", "MM_KEY_EXCH", "QM_IDLE"}[s%6]
}

// retx is an outstanding request that is retransmitted until answered.
type retx struct {
	local, remote netip.AddrPort
	data          []byte
	tries         int
	t             *timer
}

// ikeSA is one ISAKMP SA and its Main Mode state.
type ikeSA struct {
	id            uint64
	ck            cookies
	initiator     bool
	state         saState
	deleted       bool
	local, remote netip.AddrPort
	remote0       netip.AddrPort // the address MM1 came from (responder cache key)
	psk           alg.Key
	pol           Policy

	saiB     []byte // SA payload body of MM1 (for HASH_I/HASH_R)
	offered  []Policy
	dh       *suite.DHKey
	gxi, gxr []byte
	ni, nr   []byte
	keys     suite.Keys
	iv       []byte // phase 1 running IV; after MM6 the last phase 1 block

	nattVID   wire.NATTVariant // best NAT-T dialect the peer announced
	natLocal  bool             // we are behind a NAT (or force)
	natRemote bool             // the peer is behind a NAT
	dpdPeer   bool

	created, established time.Time
	lifetime             time.Duration
	lastHeard            time.Time
	dpdSeq               uint32
	dpdOutstanding       int

	// Retransmission of our last request (initiator) and the responder's
	// cache: the last request received and what we answered.
	rt      *retx
	lastIn  []byte
	lastOut []byte
	// lastResp is the last response the initiator accepted, to recognise
	// its duplicates.
	lastResp []byte

	timeout, soft, hard, dpdT, kaT *timer

	trace     func(bool, []byte)
	exchanges map[uint32]*exchange // Quick Mode by message ID
	onUp      []func(time.Time, *ikeSA)
	sentIC    bool
}

func (sa *ikeSA) rcookieZero() bool { return sa.ck.r == [8]byte{} }

func (sa *ikeSA) natt() bool { return sa.nattVID != wire.NATTNone && (sa.natLocal || sa.natRemote) }

func (sa *ikeSA) info(now time.Time) IKESAInfo {
	i := IKESAInfo{ICookie: sa.ck.i, RCookie: sa.ck.r, Local: sa.local, Remote: sa.remote,
		Initiator: sa.initiator, State: sa.state.String(), Policy: sa.pol, NATT: sa.natt(), DPD: sa.dpdPeer,
		Established: sa.established}
	if sa.state == stateEstablished {
		i.LifetimeLeft = sa.lifetime - now.Sub(sa.established)
	}
	return i
}

func (sa *ikeSA) header(x wire.ExchangeType, msgID uint32) wire.Header {
	return wire.Header{ICookie: sa.ck.i, RCookie: sa.ck.r, Exchange: x, MessageID: msgID, Version: wire.Version}
}

// seal encrypts the chain in b under iv and returns the message and the next IV.
func (sa *ikeSA) seal(h wire.Header, b *wire.Builder, iv []byte) ([]byte, []byte) {
	h.Next, h.Version = b.First, wire.Version
	traceMsg(sa.trace, true, h, b.Buf)
	h.Flags |= wire.FlagEncryption
	ct, next, err := suite.Encrypt(sa.pol.Cipher, sa.keys.EncKey, iv, b.Buf)
	if err != nil {
		panic("ike: encrypt with validated cipher failed: " + err.Error())
	}
	h.Length = uint32(wire.HeaderLen + len(ct))
	return append(h.AppendTo(make([]byte, 0, int(h.Length))), ct...), next
}

// open decrypts data (a whole message) under iv and parses its payloads.
func (sa *ikeSA) open(h wire.Header, data, iv []byte) (chain []byte, ps []wire.RawPayload, end int, next []byte, err error) {
	if h.Flags&wire.FlagEncryption == 0 {
		return nil, nil, 0, nil, errNotEncrypted
	}
	chain, next, err = suite.Decrypt(sa.pol.Cipher, sa.keys.EncKey, iv, data[wire.HeaderLen:])
	if err != nil {
		return nil, nil, 0, nil, err
	}
	ps, end, err = wire.ParsePayloads(h.Next, chain)
	if err == nil {
		traceMsg(sa.trace, false, h, chain[:end])
	}
	return chain, ps, end, next, err
}

func traceMsg(f func(bool, []byte), sent bool, h wire.Header, chain []byte) {
	if f == nil {
		return
	}
	h.Flags &^= wire.FlagEncryption
	h.Length = uint32(wire.HeaderLen + len(chain))
	f(sent, append(h.AppendTo(nil), chain...))
}

type ikeError string

func (e ikeError) Error() string { return string(e) }

const (
	errNotEncrypted = ikeError("ike: message not encrypted")
	errBadHash      = ikeError("ike: hash mismatch")
)

// hashed builds a chain that starts with a HASH payload computed as
// prf(SKEYID_a, pre... | payloads after HASH), as HASH(1) and HASH(2) of
// RFC 2409 §5.5 and §5.7 are.
func (sa *ikeSA) hashed(pre [][]byte, add func(b *wire.Builder)) *wire.Builder {
	var b wire.Builder
	hs := sa.pol.Hash.Size()
	off := b.Add(wire.PayloadHash, make([]byte, hs))
	add(&b)
	mac := suite.PRF(sa.pol.Hash, sa.keys.A, append(pre, b.Buf[off+4+hs:])...)
	copy(b.Buf[off+4:], mac)
	return &b
}

// checkHash verifies that the chain starts with a HASH payload equal to
// prf(SKEYID_a, pre... | payloads after it up to end).
func (sa *ikeSA) checkHash(chain []byte, ps []wire.RawPayload, end int, pre ...[]byte) bool {
	if len(ps) == 0 || ps[0].Type != wire.PayloadHash {
		return false
	}
	want := suite.PRF(sa.pol.Hash, sa.keys.A, append(pre, chain[ps[0].End:end])...)
	return hmacEqual(ps[0].Body, want)
}

func hmacEqual(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := range a {
		v |= a[i] ^ b[i]
	}
	return v == 0
}

func msgIDBytes(m uint32) []byte { return []byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)} }

// request sends data and retransmits it with exponential backoff until
// stop is called, then calls fail.
func (e *Engine) request(now time.Time, r *retx, fail func(time.Time)) {
	e.send(r.local, r.remote, r.data)
	var arm func(now time.Time)
	arm = func(now time.Time) {
		r.t = e.after(now.Add(e.cfg.RetransmitBase<<r.tries), func(now time.Time) {
			if r.tries >= e.cfg.RetransmitTries {
				fail(now)
				return
			}
			r.tries++
			e.ctr.Retransmits++
			e.send(r.local, r.remote, r.data)
			arm(now)
		})
	}
	arm(now)
}

func (r *retx) stop() {
	if r != nil {
		r.t.stop()
	}
}

// duplicate answers a retransmitted request from the responder cache.
func (e *Engine) duplicate(sa *ikeSA, p Packet, data []byte) bool {
	if sa.lastIn != nil && bytes.Equal(sa.lastIn, data) {
		e.ctr.Duplicates++
		if sa.lastOut != nil {
			e.send(sa.local, sa.remote, sa.lastOut)
		}
		return true
	}
	return false
}

// removeIKE forgets an ISAKMP SA (its children stay: in IKEv1 they live on
// their own lifetimes).
func (e *Engine) removeIKE(now time.Time, sa *ikeSA, why string) {
	if sa.deleted {
		return
	}
	sa.deleted = true
	sa.rt.stop()
	for _, t := range []*timer{sa.timeout, sa.soft, sa.hard, sa.dpdT, sa.kaT} {
		t.stop()
	}
	for _, x := range sa.exchanges {
		e.endExchange(now, x, "ISAKMP SA gone")
	}
	if sa.state != stateEstablished {
		e.halfOpen--
		e.countExchange(sa.initiator, -1)
		if len(sa.onUp) > 0 || sa.initiator {
			e.ctr.IKEFailed++
			e.event(Event{Kind: EventExchangeFailed, Time: now, Local: sa.local.Addr(), Remote: sa.remote.Addr(), IKE: sa.info(now), Reason: "main mode: " + why})
		}
	} else {
		e.event(Event{Kind: EventIKEDown, Time: now, Local: sa.local.Addr(), Remote: sa.remote.Addr(), IKE: sa.info(now), Reason: why})
	}
	delete(e.sas, sa.ck)
	if sa.initiator && e.initByI[sa.ck.i] == sa {
		delete(e.initByI, sa.ck.i)
	}
	if rk := (respKey{sa.ck.i, sa.firstRemote()}); e.respHalf[rk] == sa {
		delete(e.respHalf, rk)
	}
	if p := e.peers[sa.remote.Addr()]; p != nil {
		if _, ok := p.ikes[sa]; ok && sa.state == stateEstablished {
			p.nEst--
		}
		if p.newest == sa {
			p.newest = nil
		}
		delete(p.ikes, sa)
		e.gcPeer(sa.remote.Addr())
	}
	e.cfg.Log.Info("ike: ISAKMP SA removed", "peer", sa.remote, "reason", why)
	if sa.initiator && sa.state != stateEstablished {
		e.mainGone(now, sa.remote.Addr(), why)
	}
}

func (sa *ikeSA) firstRemote() netip.AddrPort { return sa.remote0 }

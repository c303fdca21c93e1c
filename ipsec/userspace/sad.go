package userspace

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
	"github.com/spiagent/spiagent/ipsec/userspace/ah"
	"github.com/spiagent/spiagent/ipsec/userspace/esp"
	"github.com/spiagent/spiagent/ipsec/userspace/replay"
)

// saState is one installed SA with its prepared transform and counters.
type saState struct {
	sa  ipsec.SA
	esp *esp.SA
	ah  *ah.SA

	seq atomic.Uint64 // outbound: last sequence number used

	replayMu sync.Mutex
	replay   *replay.Window // inbound, nil when ReplayWindow is 0

	packets, bytes, authFail, replayErr, otherErr atomic.Uint64
	addTime                                       time.Time
	lastUse                                       atomic.Int64
	softDone, dead                                atomic.Bool
}

// inKey finds an inbound SA from a packet: SPIs are unique per protocol
// among this host's inbound SAs (AllocSPI sees to it).
type inKey struct {
	spi   uint32
	proto alg.Protocol
}

// outKey finds the outbound SA a policy template needs.
type outKey struct {
	reqID uint32
	proto alg.Protocol
	dst   netip.Addr
}

// sadTable is the SAD. The packet path reads in and out without locks;
// changes (under the dataplane's mutex) copy one shard, so adding or
// removing an SA costs the same with 10 SAs as with 20,000.
type sadTable struct {
	all cowMap[ipsec.SAKey, *saState]
	in  cowMap[inKey, *saState]
	out cowMap[outKey, *saState]
	// outAll holds every outbound SA of a template, oldest first: when the
	// one in use goes, the newest left takes over. Under the mutex.
	outAll map[outKey][]*saState
}

func newSADTable() *sadTable {
	t := &sadTable{outAll: map[outKey][]*saState{}}
	t.all.hash = func(k ipsec.SAKey) uint32 { return k.SPI ^ uint32(k.Proto)<<24 ^ addrHash(k.Dst) }
	t.in.hash = func(k inKey) uint32 { return k.spi ^ uint32(k.proto)<<24 }
	t.out.hash = func(k outKey) uint32 { return k.reqID ^ uint32(k.proto)<<24 ^ addrHash(k.dst) }
	return t
}

// reset empties the SAD (Flush).
func (t *sadTable) reset() {
	t.all.reset()
	t.in.reset()
	t.out.reset()
	clear(t.outAll)
}

func addrHash(a netip.Addr) uint32 {
	if a.Is4() {
		b := a.As4()
		return binary.BigEndian.Uint32(b[:])
	}
	b := a.As16()
	return binary.BigEndian.Uint32(b[12:]) ^ binary.BigEndian.Uint32(b[8:])
}

func newSAState(sa ipsec.SA, now time.Time) (*saState, error) {
	if err := sa.Validate(); err != nil {
		return nil, err
	}
	if !sa.Src.Is4() || !sa.Dst.Is4() {
		return nil, fmt.Errorf("userspace: SA %s: IPv4 only", sa.Key())
	}
	if sa.Dir != ipsec.DirIn && sa.Dir != ipsec.DirOut {
		return nil, fmt.Errorf("userspace: SA %s: direction must be in or out", sa.Key())
	}
	sa.CipherKey = append(alg.Key(nil), sa.CipherKey...)
	sa.IntegKey = append(alg.Key(nil), sa.IntegKey...)
	if sa.Encap != nil {
		e := *sa.Encap
		sa.Encap = &e
	}
	s := &saState{sa: sa, addTime: now}
	var err error
	if sa.Proto == alg.ESP {
		s.esp, err = esp.New(sa.SPI, sa.Cipher, sa.CipherKey, sa.Integ, sa.IntegKey)
	} else {
		s.ah, err = ah.New(sa.SPI, sa.Integ, sa.IntegKey)
	}
	if err != nil {
		return nil, fmt.Errorf("userspace: SA %s: %w", sa.Key(), err)
	}
	if sa.Dir == ipsec.DirIn && sa.ReplayWindow > 0 {
		s.replay = replay.New(sa.ReplayWindow)
	}
	return s, nil
}

// AddSA installs an SA. Outbound SAs are found by (ReqID, protocol,
// destination) from policy templates; inbound ones by (SPI, protocol).
// Packets waiting for an acquire that this SA completes are sent.
func (d *Dataplane) AddSA(ctx context.Context, sa ipsec.SA) error {
	s, err := newSAState(sa, d.cfg.Now())
	if err != nil {
		return err
	}
	d.mu.Lock()
	t := d.sad
	k := s.sa.Key()
	if _, ok := t.all.get(k); ok {
		d.mu.Unlock()
		return fmt.Errorf("userspace: SA %s: %w", k, ipsec.ErrExists)
	}
	ik := inKey{spi: sa.SPI, proto: sa.Proto}
	ok := outKey{reqID: sa.ReqID, proto: sa.Proto, dst: sa.Dst}
	if _, dup := t.in.get(ik); sa.Dir == ipsec.DirIn && dup {
		d.mu.Unlock()
		return fmt.Errorf("userspace: inbound %s SPI 0x%08x: %w", sa.Proto, sa.SPI, ipsec.ErrExists)
	}
	t.all.set(k, s)
	if sa.Dir == ipsec.DirIn {
		t.in.set(ik, s)
		delete(d.reserved, sa.SPI)
	} else {
		// A rekeyed outbound SA replaces the older one for new packets; the
		// old one stays in the SAD until deleted.
		t.out.set(ok, s)
		t.outAll[ok] = append(t.outAll[ok], s)
	}
	d.mu.Unlock()
	if sa.Dir == ipsec.DirOut {
		d.flushAcquires(ok)
	}
	return nil
}

// DeleteSA removes an SA.
func (d *Dataplane) DeleteSA(ctx context.Context, key ipsec.SAKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.removeLocked(key) {
		return fmt.Errorf("userspace: SA %s: %w", key, ipsec.ErrNotFound)
	}
	return nil
}

func (d *Dataplane) removeLocked(key ipsec.SAKey) bool {
	t := d.sad
	s, _ := t.all.get(key)
	if s == nil {
		return false
	}
	s.dead.Store(true)
	t.all.del(key)
	ik := inKey{spi: s.sa.SPI, proto: s.sa.Proto}
	if cur, _ := t.in.get(ik); cur == s {
		t.in.del(ik)
		d.invalid.Forget(s.sa.Src, uint8(s.sa.Proto), s.sa.SPI)
	}
	ok := outKey{reqID: s.sa.ReqID, proto: s.sa.Proto, dst: s.sa.Dst}
	if s.sa.Dir != ipsec.DirOut {
		return true
	}
	rest := slices.DeleteFunc(t.outAll[ok], func(o *saState) bool { return o == s })
	if len(rest) == 0 {
		delete(t.outAll, ok)
	} else {
		t.outAll[ok] = rest
	}
	if cur, _ := t.out.get(ok); cur == s {
		// Fall back to another outbound SA for the same template, if any.
		if len(rest) > 0 {
			t.out.set(ok, rest[len(rest)-1])
		} else {
			t.out.del(ok)
		}
	}
	return true
}

// Counters reads an SA's statistics.
func (d *Dataplane) Counters(ctx context.Context, key ipsec.SAKey) (ipsec.Counters, error) {
	s, _ := d.sad.all.get(key)
	if s == nil {
		return ipsec.Counters{}, fmt.Errorf("userspace: SA %s: %w", key, ipsec.ErrNotFound)
	}
	c := ipsec.Counters{
		Packets: s.packets.Load(), Bytes: s.bytes.Load(),
		AuthFailures: s.authFail.Load(), ReplayErrors: s.replayErr.Load(), OtherErrors: s.otherErr.Load(),
		AddTime: s.addTime,
	}
	if lu := s.lastUse.Load(); lu != 0 {
		c.LastUse = time.Unix(0, lu)
	}
	return c, nil
}

// ErrNoSPI is returned when AllocSPI finds no free SPI.
var ErrNoSPI = errors.New("userspace: no free SPI")

// AllocSPI reserves a random inbound SPI (>= 256) that no inbound SA and
// no other reservation uses, for SPIReserve or until an SA takes it.
func (d *Dataplane) AllocSPI(ctx context.Context, proto alg.Protocol, src, dst netip.Addr) (uint32, error) {
	if proto != alg.ESP && proto != alg.AH {
		return 0, fmt.Errorf("userspace: AllocSPI: unsupported protocol %s", proto)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.sad
	var b [4]byte
	for range 64 {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("userspace: AllocSPI: %w", err)
		}
		spi := binary.BigEndian.Uint32(b[:])
		if spi < 256 {
			continue
		}
		if _, ok := d.reserved[spi]; ok {
			continue
		}
		if _, used := t.in.get(inKey{spi, alg.ESP}); used {
			continue
		}
		if _, used := t.in.get(inKey{spi, alg.AH}); used {
			continue
		}
		d.reserved[spi] = d.cfg.Now().Add(d.cfg.SPIReserve)
		return spi, nil
	}
	return 0, ErrNoSPI
}

// account counts a packet of n payload bytes on s and enforces the byte
// lifetimes. It reports false when s is (now) hard-expired.
func (d *Dataplane) account(s *saState, n int) bool {
	if s.dead.Load() {
		return false
	}
	s.packets.Add(1)
	total := s.bytes.Add(uint64(n))
	s.lastUse.Store(d.cfg.Now().UnixNano())
	lt := &s.sa.Lifetime
	if lt.HardBytes > 0 && total >= lt.HardBytes {
		d.hardExpire(s)
		return total-uint64(n) < lt.HardBytes // the packet that reached the limit still goes
	}
	if lt.SoftBytes > 0 && total >= lt.SoftBytes && s.softDone.CompareAndSwap(false, true) {
		d.emit(ipsec.Event{Kind: ipsec.EventSoftExpire, Time: d.cfg.Now(), SA: s.sa.Key()})
	}
	return true
}

func (d *Dataplane) checkTime(s *saState, now time.Time) {
	lt := &s.sa.Lifetime
	age := now.Sub(s.addTime)
	if lt.HardTime > 0 && age >= lt.HardTime {
		d.hardExpire(s)
		return
	}
	if lt.SoftTime > 0 && age >= lt.SoftTime && s.softDone.CompareAndSwap(false, true) {
		d.emit(ipsec.Event{Kind: ipsec.EventSoftExpire, Time: now, SA: s.sa.Key()})
	}
}

// hardExpire deletes s once and raises EventHardExpire.
func (d *Dataplane) hardExpire(s *saState) {
	d.mu.Lock()
	cur, _ := d.sad.all.get(s.sa.Key())
	removed := cur == s && d.removeLocked(s.sa.Key())
	d.mu.Unlock()
	if removed {
		d.log.Info("SA hard-expired", "spi", fmt.Sprintf("0x%08x", s.sa.SPI), "proto", s.sa.Proto.String(), "peer", s.sa.Dst.String())
		d.emit(ipsec.Event{Kind: ipsec.EventHardExpire, Time: d.cfg.Now(), SA: s.sa.Key()})
	}
}

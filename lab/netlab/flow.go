package netlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Flow is a one-way UDP test flow from a host in one namespace to a host in
// another: a sequence number and a send timestamp in every datagram, a fixed
// rate, and a bounded duration. It measures what the seed's scenario is
// about: which packets were lost and for how long traffic was black-holed.
type Flow struct {
	// Payload is the datagram size in bytes (64; at least 8), set before Run.
	Payload  int
	mu       sync.Mutex
	sentAt   []time.Time // by sequence number
	recvAt   []time.Time // zero when not received
	received int
	tx, rx   *net.UDPConn
}

// flowPort is the UDP port the receiver listens on.
const flowPort = 5001

// StartFlow opens the receiver in dstNS on dstAddr and the sender in srcNS.
// Call Run to send.
func StartFlow(srcNS, srcAddr, dstNS, dstAddr string) (*Flow, error) {
	rx, err := ListenUDP(dstNS, fmt.Sprintf("%s:%d", dstAddr, flowPort))
	if err != nil {
		return nil, fmt.Errorf("flow receiver: %w", err)
	}
	tx, err := ListenUDP(srcNS, srcAddr+":0")
	if err != nil {
		rx.Close()
		return nil, fmt.Errorf("flow sender: %w", err)
	}
	f := &Flow{tx: tx, rx: rx}
	go f.receive()
	return f, nil
}

func (f *Flow) receive() {
	buf := make([]byte, 65536)
	for {
		n, _, err := f.rx.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n < 8 {
			continue
		}
		seq := int(binary.BigEndian.Uint64(buf[:8]))
		now := time.Now()
		f.mu.Lock()
		if seq < len(f.recvAt) && f.recvAt[seq].IsZero() {
			f.recvAt[seq] = now
			f.received++
		}
		f.mu.Unlock()
	}
}

// Run sends count datagrams at rate per second to dstAddr, or until ctx ends.
func (f *Flow) Run(ctx context.Context, dstAddr string, rate, count int) error {
	dst := &net.UDPAddr{IP: net.ParseIP(dstAddr), Port: flowPort}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	size := f.Payload
	if size == 0 {
		size = 64
	}
	payload := make([]byte, max(size, 8))
	for i := 0; i < count; i++ {
		f.mu.Lock()
		seq := len(f.sentAt)
		f.sentAt = append(f.sentAt, time.Now())
		f.recvAt = append(f.recvAt, time.Time{})
		f.mu.Unlock()
		binary.BigEndian.PutUint64(payload[:8], uint64(seq))
		// A send error (no route yet, for example) is a lost packet, as
		// on a router; it is not a test failure.
		_, _ = f.tx.WriteToUDP(payload, dst)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Close stops the flow.
func (f *Flow) Close() error {
	return errors.Join(f.tx.Close(), f.rx.Close())
}

// Stats summarise a flow.
type Stats struct {
	Sent, Received int
	// Lost counts packets never received.
	Lost int
	// Outage is the longest gap: from the first packet of the longest run
	// of lost packets being sent to the next received packet being sent.
	Outage time.Duration
	// OutageStart is the send time of the first lost packet of that run.
	OutageStart time.Time
	// LastLost is the sequence number of the last lost packet, or -1.
	LastLost int
}

// Stats computes the flow's statistics so far, treating packets sent within
// grace of now as still in flight.
func (f *Flow) Stats(grace time.Duration) Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := Stats{Received: f.received, LastLost: -1}
	cut := time.Now().Add(-grace)
	runStart := -1
	for i, sent := range f.sentAt {
		if sent.After(cut) {
			break
		}
		st.Sent++
		if f.recvAt[i].IsZero() {
			st.Lost++
			st.LastLost = i
			if runStart < 0 {
				runStart = i
			}
			continue
		}
		if runStart >= 0 {
			if d := sent.Sub(f.sentAt[runStart]); d > st.Outage {
				st.Outage, st.OutageStart = d, f.sentAt[runStart]
			}
			runStart = -1
		}
	}
	if runStart >= 0 {
		// Still black-holed at the end.
		if d := cut.Sub(f.sentAt[runStart]); d > st.Outage {
			st.Outage, st.OutageStart = d, f.sentAt[runStart]
		}
	}
	return st
}

// ReceivedSince reports how many packets sent after t have arrived.
func (f *Flow) ReceivedSince(t time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for i, sent := range f.sentAt {
		if sent.After(t) && !f.recvAt[i].IsZero() {
			n++
		}
	}
	return n
}

// LostBetween counts packets sent in [from, to) that never arrived.
func (f *Flow) LostBetween(from, to time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for i, sent := range f.sentAt {
		if sent.Before(from) {
			continue
		}
		if !sent.Before(to) {
			break
		}
		if f.recvAt[i].IsZero() {
			n++
		}
	}
	return n
}

// FirstReceivedAfter is the arrival time of the first packet sent after t
// that arrived (zero if none).
func (f *Flow) FirstReceivedAfter(t time.Time) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, sent := range f.sentAt {
		if sent.After(t) && !f.recvAt[i].IsZero() {
			return f.recvAt[i]
		}
	}
	return time.Time{}
}

// FirstLostAfter is the send time of the first packet sent after t that
// never arrived, leaving out packets sent within grace of now (still in
// flight); ok is false when there is none.
func (f *Flow) FirstLostAfter(t time.Time, grace time.Duration) (sent time.Time, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cut := time.Now().Add(-grace)
	for i, s := range f.sentAt {
		if s.After(cut) {
			break
		}
		if s.After(t) && f.recvAt[i].IsZero() {
			return s, true
		}
	}
	return time.Time{}, false
}

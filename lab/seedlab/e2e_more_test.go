package seedlab

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiagent/spiagent/lab/netlab"
)

// TestRecoveryAfterSIGKILL: routerB's agent is killed with SIGKILL and
// restarted from its data dir; recovery brings traffic back the same way.
func TestRecoveryAfterSIGKILL(t *testing.T) {
	l := newLab(t, "e2k")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	res, err := l.Run(ctx, Scenario{Recovery: true, Watch: 15 * time.Second, Say: Narrator{W: testWriter{t}},
		BreakSay: "routerB's agent is killed with SIGKILL and restarted from its data dir.",
		Break: func(ctx context.Context) error {
			l.B.Kill()
			return l.B.Start(ctx)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Recovered {
		t.Fatalf("no recovery after routerB's restart: %+v", res)
	}
	// The restart itself (process start, config load, gNMI up) is part of
	// the outage here; the recovery after it must be quick.
	if res.CountersB["notified"] == 0 {
		t.Errorf("routerB counters %v: want a notification after the restart", res.CountersB)
	}
}

// rawUDPCounter counts IKE datagrams (UDP 500/4500) from src seen in a
// namespace, through a raw UDP socket (which gets a copy of every UDP
// packet the namespace receives).
func rawUDPCounter(t *testing.T, ns string, src net.IP) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	var conn net.PacketConn
	err := netlab.InNS(ns, func() error {
		var err error
		conn, err = net.ListenPacket("ip4:udp", "0.0.0.0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			m, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if m < 8 || !from.(*net.IPAddr).IP.Equal(src) {
				continue
			}
			if p := binary.BigEndian.Uint16(buf[2:4]); p == 500 || p == 4500 {
				n.Add(1)
			}
		}
	}()
	return &n
}

// TestFloodWithoutKey: ESP with random SPIs from an address that has no
// pre-shared key never causes IKE traffic, is counted, and does not
// disturb the tunnel's traffic.
func TestFloodWithoutKey(t *testing.T) {
	l := newLab(t, "e2f")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const stranger = "192.0.2.66"
	if _, err := netlab.Exec(ctx, l.Topo.RouterA, "ip", "addr", "add", stranger+"/32", "dev", "wan0"); err != nil {
		t.Fatal(err)
	}
	ikeFromB := rawUDPCounter(t, l.Topo.RouterA, net.ParseIP("192.0.2.2"))
	var sent int
	flood := func(ctx context.Context) error {
		// The flood is the "break" here: it must not break anything.
		var c net.PacketConn
		if err := netlab.InNS(l.Topo.RouterA, func() error {
			var err error
			c, err = net.ListenPacket("ip4:50", stranger)
			return err
		}); err != nil {
			return err
		}
		defer c.Close()
		dst := &net.IPAddr{IP: net.ParseIP("192.0.2.2")}
		before := ikeFromB.Load()
		pkt := make([]byte, 64)
		deadline := time.Now().Add(2 * time.Second)
		for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
			binary.BigEndian.PutUint32(pkt[0:4], rand.Uint32()|0x100)
			binary.BigEndian.PutUint32(pkt[4:8], 1)
			if _, err := c.WriteTo(pkt, dst); err == nil {
				sent++
			}
		}
		time.Sleep(time.Second)
		if got := ikeFromB.Load() - before; got != 0 {
			t.Errorf("routerB sent %d IKE packets during a flood from an address without a key", got)
		}
		return nil
	}
	res, err := l.Run(ctx, Scenario{Recovery: true, Watch: 3 * time.Second, Break: flood, BreakSay: "ESP with random SPIs floods routerB from 192.0.2.66, an address without a key.", Say: Narrator{W: testWriter{t}}})
	if err != nil {
		t.Fatal(err)
	}
	if sent < 1000 {
		t.Fatalf("flood sent only %d packets", sent)
	}
	// A couple of packets may be late on a machine saturated by the flood
	// itself; a disturbed tunnel would lose far more (20/s for 3 s).
	if !res.Recovered || res.Lost > 3 {
		t.Errorf("tunnel disturbed by the flood: recovered=%v lost=%d", res.Recovered, res.Lost)
	}
	c := res.CountersB
	if c["received"] < uint64(sent)/2 || c["notified"] != 0 || c["no-key"] == 0 {
		t.Errorf("routerB counters %v after %d flood packets: want most received, none notified, some no-key", c, sent)
	}
}

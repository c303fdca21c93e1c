package userspace

import (
	"context"
	"testing"
)

// BenchmarkAcquireBurst: the first packet of each of 10,000 new flows, each
// its own host-pair policy without SAs (the scale lab's burst): what the
// TUN reader spends per packet to raise an acquire and keep the packet.
func BenchmarkAcquireBurst(b *testing.B) {
	const n = 10_000
	d, err := New(Config{SweepInterval: -1, Logger: quietLogger(), AcquireBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	go func() {
		for range d.Events() {
		}
	}()
	pkts := make([][]byte, n)
	for i := range n {
		p := hostPairPolicy(i)
		if err := d.AddPolicy(context.Background(), p); err != nil {
			b.Fatal(err)
		}
		pkts[i] = udpPacket(p.Selector.Src.Addr(), p.Selector.Dst.Addr(), 1000, 5002, []byte("burst"))
	}
	buf := make([]byte, bufSize)
	i := 0
	for b.Loop() {
		if i == n {
			b.StopTimer()
			d.Flush(context.Background())
			for j := range n {
				d.AddPolicy(context.Background(), hostPairPolicy(j))
			}
			i = 0
			b.StartTimer()
		}
		m := copy(buf[headroom:], pkts[i])
		d.outbound(buf, headroom, headroom+m, nil)
		i++
	}
	if st := d.Stats(); st.AcquireQueued == 0 {
		b.Fatalf("stats %+v", st)
	}
}

package batch

import (
	"bytes"
	"fmt"
	"net"
	"testing"
)

// TestLoopback sends datagrams with Writer and reads them with Reader over
// two UDP sockets on 127.0.0.1.
func TestLoopback(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Skip("no loopback UDP:", err)
	}
	defer rx.Close()
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	trc, _ := tx.SyscallConn()
	rrc, _ := rx.SyscallConn()
	w := NewWriter(trc, 4)
	dst := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	var want [][]byte
	for i := range 10 {
		p := []byte(fmt.Sprintf("datagram %d", i))
		want = append(want, p)
		if !w.Add(p, dst) {
			if n, err := w.Flush(); err != nil || n != 4 {
				t.Fatalf("Flush: %d, %v", n, err)
			}
			w.Add(p, dst)
		}
	}
	if n, err := w.Flush(); err != nil || n != 2 {
		t.Fatalf("last Flush: %d, %v", n, err)
	}
	r := New(rrc, 8, 2048, 20)
	var got [][]byte
	for len(got) < 10 {
		n, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if r.Src(i) != tx.LocalAddr().(*net.UDPAddr).AddrPort() {
				t.Fatalf("Src %s", r.Src(i))
			}
			if len(r.Bufs[i]) < r.Headroom()+r.Size(i) || !bytes.Equal(r.Packet(i), r.Bufs[i][20:20+r.Size(i)]) {
				t.Fatal("Packet and Bufs disagree")
			}
			got = append(got, bytes.Clone(r.Packet(i)))
		}
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("datagram %d: %q, want %q", i, got[i], want[i])
		}
	}
	if w.Len() != 0 || w.Cap() != 4 {
		t.Fatal("writer not emptied")
	}
}

// Package tuntest is an in-memory TUN device for tests, like wireguard-go's
// tun/tuntest: what a test puts on Inbound the dataplane reads as if the
// kernel had routed it into the TUN, and what the dataplane writes to the
// TUN comes out on Outbound. No root, no file descriptors.
package tuntest

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
)

// Device is a fake TUN. It implements userspace.Device.
type Device struct {
	name string
	// Inbound carries packets "from the kernel" for the dataplane to read.
	Inbound chan []byte
	// Outbound carries the packets the dataplane wrote (decapsulated
	// traffic), copied. When it is full, writes are dropped and counted.
	Outbound chan []byte

	Dropped atomic.Uint64

	once   sync.Once
	closed chan struct{}
}

// New returns a device with queues of n packets.
func New(name string, n int) *Device {
	return &Device{name: name, Inbound: make(chan []byte, n), Outbound: make(chan []byte, n), closed: make(chan struct{})}
}

// Name is the device name.
func (d *Device) Name() string { return d.name }

// Read blocks for the next Inbound packet and copies it into b.
func (d *Device) Read(b []byte) (int, error) {
	select {
	case p := <-d.Inbound:
		return copy(b, p), nil
	case <-d.closed:
		return 0, os.ErrClosed
	}
}

// Write copies b onto Outbound, or drops it when Outbound is full.
func (d *Device) Write(b []byte) (int, error) {
	select {
	case <-d.closed:
		return 0, os.ErrClosed
	default:
	}
	select {
	case d.Outbound <- append([]byte(nil), b...):
	default:
		d.Dropped.Add(1)
	}
	return len(b), nil
}

// Close makes Read and Write fail.
func (d *Device) Close() error {
	err := errors.New("tuntest: already closed")
	d.once.Do(func() { close(d.closed); err = nil })
	return err
}

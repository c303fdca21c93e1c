// Package tun opens a Linux TUN device (IFF_TUN|IFF_NO_PI: each read or
// write is one bare IP packet) for the userspace dataplane, brings it up
// with an MTU, and routes prefixes into it. It implements the dataplane's
// Device and Router. The device lives in the network namespace of the
// thread that calls Open, and disappears (with its routes) on Close.
package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TxQueueLen is the device's queue (the kernel's default for a TUN is 500
// packets). It is where cleartext waits for the dataplane, and on a hub
// where thousands of flows start at once it holds their first packets
// while the dataplane raises their acquires: a flow that sent one packet
// and lost it in a full queue would never raise one. 16384 packets hold the
// first packets of 10,000 new flows (issue 11's goal) with room for the
// established ones; they drain at the dataplane's rate, and are at most
// about 25 MB at the default MTU.
const TxQueueLen = 16384

// Device is an open TUN device.
type Device struct {
	f     *os.File
	name  string
	index int
	nl    *netlink.Handle
	off   *offload // TSO state; nil without offload
}

// Open creates (or attaches to) the TUN device name ("" lets the kernel
// pick tunN), sets its MTU and brings it up.
func Open(name string, mtu int) (*Device, error) { return open(name, mtu, false) }

func open(name string, mtu int, tso bool) (*Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tun: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if tso {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: TUNSETIFF %q: %w", name, err)
	}
	if tso {
		if err := enableOffload(fd); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: nonblock: %w", err)
	}
	d := &Device{f: os.NewFile(uintptr(fd), "/dev/net/tun"), name: ifr.Name()}
	if tso {
		d.off = newOffload()
	}
	if err := d.setup(mtu); err != nil {
		d.f.Close()
		return nil, err
	}
	return d, nil
}

func (d *Device) setup(mtu int) error {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("tun: netlink: %w", err)
	}
	d.nl = nl
	link, err := nl.LinkByName(d.name)
	if err != nil {
		return fmt.Errorf("tun: %s: %w", d.name, err)
	}
	d.index = link.Attrs().Index
	if mtu > 0 {
		if err := nl.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("tun: %s: MTU %d: %w", d.name, mtu, err)
		}
	}
	if err := nl.LinkSetTxQLen(link, TxQueueLen); err != nil {
		return fmt.Errorf("tun: %s: txqueuelen %d: %w", d.name, TxQueueLen, err)
	}
	if err := nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("tun: %s: up: %w", d.name, err)
	}
	return nil
}

// Name is the interface name.
func (d *Device) Name() string { return d.name }

// Index is the interface index.
func (d *Device) Index() int { return d.index }

// Read reads one IP packet. With offload, call it from one goroutine only.
func (d *Device) Read(b []byte) (int, error) {
	if d.off != nil {
		return d.readOffload(b)
	}
	return d.f.Read(b)
}

// Write writes one IP packet; the kernel routes or delivers it.
func (d *Device) Write(b []byte) (int, error) {
	if d.off != nil {
		return d.writeOffload(b)
	}
	return d.f.Write(b)
}

// Close removes the device (and its routes).
func (d *Device) Close() error {
	if d.nl != nil {
		d.nl.Close()
	}
	return d.f.Close()
}

func (d *Device) route(p netip.Prefix) *netlink.Route {
	return &netlink.Route{
		LinkIndex: d.index,
		Dst:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Scope:     netlink.SCOPE_LINK,
	}
}

// AddRoute routes p into the device (replacing an existing route to p).
func (d *Device) AddRoute(p netip.Prefix) error {
	if err := d.nl.RouteReplace(d.route(p.Masked())); err != nil {
		return fmt.Errorf("tun: route %s dev %s: %w", p, d.name, err)
	}
	return nil
}

// DelRoute removes the route to p through the device; a route already
// gone is not an error.
func (d *Device) DelRoute(p netip.Prefix) error {
	err := d.nl.RouteDel(d.route(p.Masked()))
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("tun: delete route %s dev %s: %w", p, d.name, err)
	}
	return nil
}

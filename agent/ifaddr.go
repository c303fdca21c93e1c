package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/spiagent/spiagent/agent/intent"
)

// applyAddresses puts each configured interface address on the Linux
// interface of that name, and removes an address the agent put there before
// and the configuration no longer has. An interface that does not exist is
// not an error (it is reported in state as not present): a router accepts
// configuration for a line card that is not in yet.
func (a *Agent) applyAddresses(in *intent.Intent) error {
	want := map[string]netip.Prefix{}
	for _, ifc := range in.Interfaces {
		if ifc.Prefix.IsValid() {
			want[ifc.Name] = ifc.Prefix
		}
	}
	for name, old := range a.applied.addrs {
		if nw, ok := want[name]; ok && nw == old {
			continue
		}
		if err := delAddr(name, old); err != nil {
			return fmt.Errorf("agent: interface %s: remove %s: %w", name, old, err)
		}
		delete(a.applied.addrs, name)
	}
	for name, p := range want {
		if _, ok := a.applied.addrs[name]; ok {
			continue
		}
		link, err := netlink.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				a.log.Warn("interface not present; its address will not be applied", "interface", name)
				continue
			}
			return fmt.Errorf("agent: interface %s: %w", name, err)
		}
		if err := netlink.AddrReplace(link, nlAddr(p)); err != nil {
			return fmt.Errorf("agent: interface %s: add %s: %w", name, p, err)
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("agent: interface %s: set up: %w", name, err)
		}
		a.applied.addrs[name] = p
	}
	return nil
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
}

func delAddr(name string, p netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	if err := netlink.AddrDel(link, nlAddr(p)); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return err
	}
	return nil
}

// interfaceState reports whether an interface exists and carries p.
func interfaceState(name string, p netip.Prefix) (present, applied bool) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return false, false
	}
	if !p.IsValid() {
		return true, false
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return true, false
	}
	for _, ad := range addrs {
		if ones, _ := ad.Mask.Size(); ones == p.Bits() && ad.IP.Equal(p.Addr().AsSlice()) {
			return true, true
		}
	}
	return true, false
}

package agent

import (
	"errors"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/agent/intent"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// publishConfigState mirrors the applied configuration into the model's
// state containers by one schema walk (ytree.Mirrors): every config
// container is mirrored into its sibling state container, which shows the
// value in force of every leaf, YANG defaults included (OpenConfig's
// convention: /crypto/isakmp/invalid-spi-recovery-limits/state shows the
// limits in force even when nothing was set). Only nodes whose config
// container changed since the last publication are written: the store
// shares unchanged subtrees between commits, so an unchanged entry keeps
// its pointer and is skipped, and a one-leaf commit stays cheap. Keys show
// key-configured instead of the key; interfaces are always refreshed (their
// present and address-applied leaves come from the kernel).
func (a *Agent) publishConfigState(in *intent.Intent, root *gen.Device) {
	last := a.mirrored
	err := a.state.Update(func(tx *telemetry.Tx) error {
		var errs []error
		ytree.Mirrors(last, root, func(m ytree.Mirror) {
			if m.Gone {
				errs = append(errs, tx.Delete(&gpb.Path{Elem: m.Path}))
				return
			}
			st := ytree.MirrorState(m.State, m.Config).Interface().(ygot.GoStruct)
			switch s := st.(type) {
			case *gen.InterfaceState:
				return // below
			case *gen.IsakmpKeyState:
				var cfg *gen.IsakmpKeyConfig
				if m.Config.IsValid() {
					cfg = m.Config.Interface().(*gen.IsakmpKeyConfig)
				}
				s.KeyConfigured = ygot.Bool(cfg.GetKey() != "")
			}
			errs = append(errs, tx.Replace(&gpb.Path{Elem: m.StatePath()}, st))
		})
		for name, ifc := range intent.InterfacesOf(root.GetCrypto()) {
			errs = append(errs, tx.Replace(interfaceStatePath(name), a.interfaceState(in, name, ifc)))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		a.log.Warn("publish applied-config state", "err", err)
		a.mirrored = nil // publish everything next time
		return
	}
	a.mirrored = root
}

// interfaceState is an interface's config in force and whether the kernel
// has it and its address.
func (a *Agent) interfaceState(in *intent.Intent, name string, ifc *gen.Interface) *gen.InterfaceState {
	st := &gen.InterfaceState{}
	ytree.MirrorInto(st, ifc.GetConfig())
	var prefix intent.Interface
	for _, x := range in.Interfaces {
		if x.Name == name {
			prefix = x
		}
	}
	present, applied := interfaceState(name, prefix.Prefix)
	st.Present, st.AddressApplied = ygot.Bool(present), ygot.Bool(applied)
	return st
}

func interfaceStatePath(name string) *gpb.Path {
	return &gpb.Path{Elem: []*gpb.PathElem{{Name: "crypto"}, {Name: "interfaces"},
		{Name: "interface", Key: map[string]string{"name": name}}, {Name: "state"}}}
}

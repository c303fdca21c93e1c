package agent

import (
	"errors"
	"fmt"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/agent/intent"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/gen"
)

// statePub is one state container to publish: where, what, and the config
// container it mirrors (its identity tells whether it changed: the store
// shares unchanged subtrees between commits, so an unchanged entry keeps
// its pointer).
type statePub struct {
	path *gpb.Path
	from any
	make func() ygot.GoStruct
}

// publishConfigState mirrors the applied configuration into the model's
// state containers (in OpenConfig, state is the applied config), keys left
// out. Only entries whose config changed since the last publication are
// written, so a one-leaf commit on a large config stays cheap. Interfaces
// are always refreshed: their present/address-applied leaves come from the
// kernel.
func (a *Agent) publishConfigState(in *intent.Intent, root *gen.Device) {
	pubs := configStates(in, root.GetCrypto())
	err := a.state.Update(func(tx *telemetry.Tx) error {
		var errs []error
		seen := make(map[string]bool, len(pubs))
		for _, p := range pubs {
			k := pathKey(p.path)
			seen[k] = true
			if prev, ok := a.published[k]; ok && prev == p.from && p.from != nil {
				continue
			}
			errs = append(errs, tx.Replace(p.path, p.make()))
			a.published[k] = p.from
		}
		for k, gone := range a.publishedPaths {
			if !seen[k] {
				errs = append(errs, tx.Delete(gone))
				delete(a.published, k)
				delete(a.publishedPaths, k)
			}
		}
		for _, p := range pubs {
			a.publishedPaths[pathKey(p.path)] = p.path
		}
		return errors.Join(errs...)
	})
	if err != nil {
		a.log.Warn("publish applied-config state", "err", err)
	}
}

func pathKey(p *gpb.Path) string {
	b := make([]byte, 0, 64)
	for _, e := range p.GetElem() {
		b = append(b, '/')
		b = append(b, e.GetName()...)
		for k, v := range e.GetKey() {
			b = fmt.Appendf(b, "[%s=%s]", k, v)
		}
	}
	return string(b)
}

// mirrored builds a statePub that copies cfg's leaves into a new state struct.
func mirrored[T any, PT interface {
	*T
	ygot.GoStruct
}](path *gpb.Path, cfg any) statePub {
	return statePub{path: path, from: cfg, make: func() ygot.GoStruct {
		var st PT = new(T)
		mirror(st, cfg)
		return st
	}}
}

func configStates(in *intent.Intent, c *gen.SpiagentCrypto_Crypto) []statePub {
	var out []statePub
	if g := c.GetIsakmp().GetConfig(); g != nil {
		out = append(out, mirrored[gen.SpiagentCrypto_Crypto_Isakmp_State](statePath("crypto", "isakmp", "state"), g))
	}
	if l := c.GetIsakmp().GetInvalidSpiRecoveryLimits().GetConfig(); l != nil {
		out = append(out, mirrored[gen.SpiagentCrypto_Crypto_Isakmp_InvalidSpiRecoveryLimits_State](
			statePath("crypto", "isakmp", "invalid-spi-recovery-limits", "state"), l))
	}
	for prio, p := range intent.PoliciesOf(c) {
		out = append(out, mirrored[gen.SpiagentCrypto_Crypto_Isakmp_Policies_Policy_State](
			keyed(statePath("crypto", "isakmp", "policies", "policy", "state"), 3, "priority", fmt.Sprint(prio)), p.GetConfig()))
	}
	for addr, k := range intent.KeysOf(c) {
		addr, cfg := addr, k.GetConfig()
		out = append(out, statePub{path: keyed(statePath("crypto", "isakmp", "keys", "key", "state"), 3, "address", addr), from: cfg,
			make: func() ygot.GoStruct {
				return &gen.SpiagentCrypto_Crypto_Isakmp_Keys_Key_State{Address: ygot.String(addr), KeyConfigured: ygot.Bool(cfg.GetKey() != "")}
			}})
	}
	if ts := c.GetTransformSets(); ts != nil {
		for name, t := range ts.TransformSet {
			out = append(out, mirrored[gen.SpiagentCrypto_Crypto_TransformSets_TransformSet_State](
				keyed(statePath("crypto", "transform-sets", "transform-set", "state"), 2, "name", name), t.GetConfig()))
		}
	}
	if acls := c.GetAccessLists(); acls != nil {
		for name, acl := range acls.AccessList {
			out = append(out, mirrored[gen.SpiagentCrypto_Crypto_AccessLists_AccessList_State](
				keyed(statePath("crypto", "access-lists", "access-list", "state"), 2, "name", name), acl.GetConfig()))
			if es := acl.GetEntries(); es != nil {
				for seq, e := range es.Entry {
					p := keyed(statePath("crypto", "access-lists", "access-list", "entries", "entry", "state"), 2, "name", name)
					p.Elem[4].Key = map[string]string{"sequence": fmt.Sprint(seq)}
					out = append(out, mirrored[gen.SpiagentCrypto_Crypto_AccessLists_AccessList_Entries_Entry_State](p, e.GetConfig()))
				}
			}
		}
	}
	if cms := c.GetCryptoMaps(); cms != nil {
		for name, cm := range cms.CryptoMap {
			out = append(out, mirrored[gen.SpiagentCrypto_Crypto_CryptoMaps_CryptoMap_State](
				keyed(statePath("crypto", "crypto-maps", "crypto-map", "state"), 2, "name", name), cm.GetConfig()))
			if es := cm.GetEntries(); es != nil {
				for seq, e := range es.Entry {
					p := keyed(statePath("crypto", "crypto-maps", "crypto-map", "entries", "entry", "state"), 2, "name", name)
					p.Elem[4].Key = map[string]string{"sequence": fmt.Sprint(seq)}
					out = append(out, mirrored[gen.SpiagentCrypto_Crypto_CryptoMaps_CryptoMap_Entries_Entry_State](p, e.GetConfig()))
				}
			}
		}
	}
	for name, ifc := range intent.InterfacesOf(c) {
		name, cfg := name, ifc.GetConfig()
		var prefix intent.Interface
		for _, x := range in.Interfaces {
			if x.Name == name {
				prefix = x
			}
		}
		out = append(out, statePub{path: keyed(statePath("crypto", "interfaces", "interface", "state"), 2, "name", name), from: nil,
			make: func() ygot.GoStruct {
				s := &gen.SpiagentCrypto_Crypto_Interfaces_Interface_State{}
				mirror(s, cfg)
				present, applied := interfaceState(name, prefix.Prefix)
				s.Present, s.AddressApplied = ygot.Bool(present), ygot.Bool(applied)
				return s
			}})
	}
	return out
}

func statePath(names ...string) *gpb.Path {
	p := &gpb.Path{}
	for _, n := range names {
		p.Elem = append(p.Elem, &gpb.PathElem{Name: n})
	}
	return p
}

func keyed(p *gpb.Path, i int, k, v string) *gpb.Path {
	p.Elem[i].Key = map[string]string{k: v}
	return p
}

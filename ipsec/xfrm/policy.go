package xfrm

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// policyInfo translates a policy into xfrm_userpolicy_info and its templates.
func (d *Dataplane) policyInfo(p *ipsec.Policy) (*nl.XfrmUserpolicyInfo, []byte, error) {
	dir, err := xfrmDir(p.Dir)
	if err != nil {
		return nil, nil, err
	}
	index, err := policyIndex(p.Key())
	if err != nil {
		return nil, nil, err
	}
	sel, err := xfrmSelector(p.Selector)
	if err != nil {
		return nil, nil, fmt.Errorf("xfrm: policy %d/%s: %w", p.ID, p.Dir, err)
	}
	m := &nl.XfrmUserpolicyInfo{Sel: sel, Priority: p.Priority, Index: index, Dir: dir}
	m.Lft = lifetimeCfg(ipsec.Lifetime{})
	switch p.Action {
	case ipsec.ActionProtect:
		if len(p.Templates) == 0 {
			return nil, nil, fmt.Errorf("xfrm: policy %d/%s: protect needs at least one template", p.ID, p.Dir)
		}
	case ipsec.ActionBypass, ipsec.ActionDiscard:
		if len(p.Templates) != 0 {
			return nil, nil, fmt.Errorf("xfrm: policy %d/%s: %s takes no templates", p.ID, p.Dir, p.Action)
		}
		if p.Action == ipsec.ActionDiscard {
			m.Action = 1 // XFRM_POLICY_BLOCK
		}
	default:
		return nil, nil, fmt.Errorf("xfrm: policy %d/%s: unknown action %d", p.ID, p.Dir, p.Action)
	}
	tmpls, err := d.templates(p.Templates, sel.Family)
	if err != nil {
		return nil, nil, fmt.Errorf("xfrm: policy %d/%s: %w", p.ID, p.Dir, err)
	}
	return m, tmpls, nil
}

// templates serialises xfrm_user_tmpl entries, innermost first (XFRM's order
// and ipsec.Template's: ESP then AH for an AH+ESP bundle).
func (d *Dataplane) templates(ts []ipsec.Template, selFamily uint16) ([]byte, error) {
	out := make([]byte, 0, len(ts)*nl.SizeofXfrmUserTmpl)
	for i, t := range ts {
		if t.Proto != alg.ESP && t.Proto != alg.AH {
			return nil, fmt.Errorf("template %d: protocol %d", i, t.Proto)
		}
		if !t.Mode.Valid() {
			return nil, fmt.Errorf("template %d: %s", i, t.Mode)
		}
		if t.Mode == alg.Tunnel && (!t.Src.IsValid() || !t.Dst.IsValid()) {
			return nil, fmt.Errorf("template %d: tunnel mode needs both endpoints", i)
		}
		if t.Src.IsValid() && t.Dst.IsValid() && t.Src.Is4() != t.Dst.Is4() {
			return nil, fmt.Errorf("template %d: endpoints mix IPv4 and IPv6", i)
		}
		reqid, err := d.kernelReqID(t.ReqID)
		if err != nil {
			return nil, fmt.Errorf("template %d: %w", i, err)
		}
		var u nl.XfrmUserTmpl
		u.Family = selFamily
		if t.Dst.IsValid() {
			u.Family = family(t.Dst)
		}
		u.XfrmId.Daddr = xfrmAddr(t.Dst)
		u.XfrmId.Proto = uint8(t.Proto)
		u.Saddr = xfrmAddr(t.Src)
		u.Reqid = reqid
		u.Mode = xfrmMode(t.Mode)
		u.Aalgos, u.Ealgos, u.Calgos = ^uint32(0), ^uint32(0), ^uint32(0)
		out = append(out, u.Serialize()...)
	}
	return out, nil
}

// AddPolicy implements ipsec.Dataplane (XFRM_MSG_NEWPOLICY with the owned
// index; a policy with the same selector and direction is ErrExists).
func (d *Dataplane) AddPolicy(ctx context.Context, p ipsec.Policy) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	m, tmpls, err := d.policyInfo(&p)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.policies[p.Key()] {
		return fmt.Errorf("xfrm: add policy %d/%s: %w", p.ID, p.Dir, ipsec.ErrExists)
	}
	// Another policy (not ours, or left by an earlier run) may hold the index;
	// the kernel would then silently pick a new one, so refuse instead.
	if err := d.delPolicy(m.Dir, m.Index, true); err == nil {
		return fmt.Errorf("xfrm: add policy %d/%s: index 0x%x in use: %w (Flush first)", p.ID, p.Dir, m.Index, ipsec.ErrExists)
	}
	req := d.request(nl.XFRM_MSG_NEWPOLICY, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(m)
	if len(tmpls) > 0 {
		req.AddData(nl.NewRtAttr(nl.XFRMA_TMPL, tmpls))
	}
	if _, err := req.Execute(unix.NETLINK_XFRM, 0); err != nil {
		return mapErr(fmt.Sprintf("add policy %d/%s", p.ID, p.Dir), err)
	}
	d.policies[p.Key()] = true
	return nil
}

// delPolicy deletes (or, with getOnly, looks up) a policy by index.
func (d *Dataplane) delPolicy(dir uint8, index uint32, getOnly bool) error {
	typ := nl.XFRM_MSG_DELPOLICY
	if getOnly {
		typ = nl.XFRM_MSG_GETPOLICY
	}
	req := d.request(typ, unix.NLM_F_ACK)
	req.AddData(&nl.XfrmUserpolicyId{Index: index, Dir: dir})
	_, err := req.Execute(unix.NETLINK_XFRM, 0)
	return err
}

// DeletePolicy implements ipsec.Dataplane.
func (d *Dataplane) DeletePolicy(ctx context.Context, key ipsec.PolicyKey) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	index, err := policyIndex(key)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	err = d.delPolicy(uint8(index&7), index, false)
	if err == nil || errors.Is(err, unix.ENOENT) {
		delete(d.policies, key)
	}
	return mapErr(fmt.Sprintf("delete policy %d/%s", key.ID, key.Dir), err, unix.ENOENT)
}

// flushPolicies deletes every policy whose index carries the owned bit.
// The caller holds d.mu.
func (d *Dataplane) flushPolicies() error {
	pols, err := d.h.XfrmPolicyList(netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("xfrm: list policies: %w", err)
	}
	var errs []error
	for _, p := range pols {
		idx := uint32(p.Index)
		if _, ok := policyKey(idx); !ok || p.Dir > netlink.XFRM_DIR_FWD {
			continue
		}
		if err := d.delPolicy(uint8(p.Dir), idx, false); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("xfrm: flush policy 0x%x: %w", idx, err))
		}
	}
	clear(d.policies)
	return errors.Join(errs...)
}

// Flush implements ipsec.Dataplane: it removes every policy and SA this
// package owns in the netns (by index bit and reqid range), including those
// left by an earlier process, and nothing else.
func (d *Dataplane) Flush(ctx context.Context) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return errors.Join(d.flushPolicies(), d.flushStates())
}

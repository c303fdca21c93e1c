package netconf

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/confirm"
	"github.com/spiagent/spiagent/agent/gnmi"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// unsupportedOps are NETCONF operations this server knows of but does not
// implement.
var unsupportedOps = map[string]bool{
	"get-schema":   true,
	"partial-lock": true, "partial-unlock": true,
}

// writeOps need the read-write role.
var writeOps = map[string]bool{
	"edit-config": true, "copy-config": true, "delete-config": true, "commit": true,
	"discard-changes": true, "cancel-commit": true, "lock": true, "unlock": true, "kill-session": true, "clear-crypto-sa": true,
}

// dispatch runs one operation; a nil body with no errors means <ok/>.
func (ss *session) dispatch(op *elem) ([]byte, rpcErrors) {
	name := op.Name.Local
	ns := op.Name.Space
	if ns == moduleNamespaces[cryptoModule] && name == "clear-crypto-sa" {
		if ss.role != auth.RoleReadWrite {
			return nil, ss.denied(name)
		}
		return ss.clearSA(op)
	}
	if ns == notifNS && name == "create-subscription" {
		return nil, ss.createSubscription(op)
	}
	if ns != baseNS {
		return nil, rpcErrors{newErr("rpc", "unknown-element", "unknown operation <%s> in namespace %q", ytree.Clip(name), ytree.Clip(ns)).info("bad-element", name)}
	}
	if writeOps[name] && ss.role != auth.RoleReadWrite {
		return nil, ss.denied(name)
	}
	switch name {
	case "get":
		return ss.get(op)
	case "get-config":
		return ss.getConfig(op)
	case "edit-config":
		return nil, ss.editConfig(op)
	case "copy-config":
		return nil, ss.copyConfig(op)
	case "delete-config":
		return nil, ss.deleteConfig(op)
	case "validate":
		return nil, ss.validate(op)
	case "commit":
		return nil, ss.commit(op)
	case "discard-changes":
		return nil, ss.discard(op)
	case "cancel-commit":
		return nil, ss.cancelCommit(op)
	case "lock":
		return nil, ss.lock(op, true)
	case "unlock":
		return nil, ss.lock(op, false)
	case "close-session":
		ss.closing = true
		return nil, nil
	case "kill-session":
		return nil, ss.kill(op)
	}
	if unsupportedOps[name] {
		return nil, rpcErrors{newErr("protocol", "operation-not-supported", "%s is not supported by this server", name)}
	}
	return nil, rpcErrors{newErr("rpc", "unknown-element", "unknown operation <%s>", ytree.Clip(name)).info("bad-element", name)}
}

func (ss *session) denied(op string) rpcErrors {
	ss.log.Warn("NETCONF access denied", "op", op, "role", ss.role)
	return rpcErrors{newErr("protocol", "access-denied", "user %q has role %s: %s needs read-write", ytree.Clip(ss.user), ss.role, op)}
}

// params checks that op's children are among allowed and returns them by
// name.
func params(op *elem, allowed ...string) (map[string]*elem, *rpcError) {
	out := map[string]*elem{}
	for _, k := range op.Kids {
		ok := false
		for _, a := range allowed {
			if k.Name.Local == a {
				ok = true
			}
		}
		if !ok || k.Name.Space != baseNS {
			return nil, newErr("protocol", "unknown-element", "unexpected element <%s> in <%s>", ytree.Clip(k.Name.Local), op.Name.Local).info("bad-element", k.Name.Local)
		}
		out[k.Name.Local] = k
	}
	return out, nil
}

// datastoreName reads <running/> or <candidate/> from a source or target.
func datastoreName(p *elem, op string, allowed ...string) (string, *rpcError) {
	if p == nil {
		return "", newErr("protocol", "missing-element", "%s without its datastore", op).info("bad-element", op)
	}
	if len(p.Kids) != 1 {
		return "", newErr("protocol", "missing-element", "<%s> must name one datastore", p.Name.Local).info("bad-element", p.Name.Local)
	}
	k := p.Kids[0]
	for _, a := range allowed {
		if k.Name.Local == a && k.Name.Space == baseNS {
			return a, nil
		}
	}
	return "", newErr("protocol", "invalid-value", "datastore <%s> is not supported here (want one of %v)", ytree.Clip(k.Name.Local), allowed).info("bad-element", k.Name.Local)
}

// readFilter returns the subtree filter of a get or get-config (nil: none);
// an xpath filter is turned into the equivalent subtree filter.
func readFilter(f *elem) (*elem, *rpcError) {
	if f == nil {
		return nil, nil
	}
	t, ok := f.attr(baseNS, "type")
	if !ok {
		t, ok = f.attr("", "type")
	}
	if !ok || t == "subtree" {
		return f, nil
	}
	if t != "xpath" {
		return nil, newErr("protocol", "bad-attribute", "filter type %q is not supported (subtree or xpath)", ytree.Clip(t)).info("bad-attribute", "type").info("bad-element", "filter")
	}
	sel, ok := f.attr(baseNS, "select")
	if !ok {
		sel, ok = f.attr("", "select")
	}
	if !ok {
		return nil, newErr("protocol", "missing-attribute", "xpath filter without select").info("bad-attribute", "select").info("bad-element", "filter")
	}
	xf, err := xpathFilter(sel)
	if err != nil {
		return nil, newErr("protocol", "invalid-value", "xpath filter: %s", clipMsg(err.Error())).info("bad-attribute", "select").info("bad-element", "filter")
	}
	return xf, nil
}

// dataReply renders tree (filtered) as <data>, secrets redacted; a
// datastore's tree (not built for this reply) keeps its lists' order for
// the next. A filter that would select by a secret is refused before the
// data is looked at.
func dataReply(tree *gen.Device, datastore bool, f *elem) ([]byte, rpcErrors) {
	b := append(replyBuffer(), "<data>"...)
	switch {
	case f != nil:
		if e := checkFilter(f); e != nil {
			return nil, rpcErrors{e}
		}
		b = renderData(b, reflect.ValueOf(filterTree(tree, f)), baseNS, true)
	case datastore:
		b = renderDatastore(b, tree, baseNS)
	default:
		b = renderData(b, reflect.ValueOf(tree), baseNS, true)
	}
	b = append(b, "</data>"...)
	replyHint.Store(int64(len(b)))
	return b, nil
}

func (ss *session) get(op *elem) ([]byte, rpcErrors) {
	p, perr := params(op, "filter")
	if perr != nil {
		return nil, rpcErrors{perr}
	}
	f, perr := readFilter(p["filter"])
	if perr != nil {
		return nil, rpcErrors{perr}
	}
	// Config and state in one tree: where both have a leaf (a list key),
	// the config's wins.
	all := ytree.Overlay(ss.srv.runningTree(), ss.srv.stateTree()).(*gen.Device)
	return dataReply(all, false, f)
}

func (ss *session) getConfig(op *elem) ([]byte, rpcErrors) {
	p, perr := params(op, "source", "filter")
	if perr != nil {
		return nil, rpcErrors{perr}
	}
	ds, perr := datastoreName(p["source"], "get-config", dsRunning, dsCandidate)
	if perr != nil {
		return nil, rpcErrors{perr}
	}
	f, perr := readFilter(p["filter"])
	if perr != nil {
		return nil, rpcErrors{perr}
	}
	ss.srv.mu.Lock()
	tree := ss.srv.sourceLocked(ds)
	ss.srv.mu.Unlock()
	return dataReply(tree, true, f)
}

func internalErr(err error) rpcErrors {
	return rpcErrors{newErr("application", "operation-failed", "%v", err)}
}

func (ss *session) editConfig(op *elem) rpcErrors {
	p, perr := params(op, "target", "default-operation", "test-option", "error-option", "config")
	if perr != nil {
		return rpcErrors{perr}
	}
	ds, perr := datastoreName(p["target"], "edit-config", dsRunning, dsCandidate)
	if perr != nil {
		return rpcErrors{perr}
	}
	defOp, testOpt, errOpt := opMerge, "test-then-set", stopOnError
	if e := p["default-operation"]; e != nil {
		defOp = e.text()
		if defOp != opMerge && defOp != opReplace && defOp != opNone {
			return rpcErrors{newErr("protocol", "invalid-value", "default-operation %q: want merge, replace or none", ytree.Clip(defOp)).info("bad-element", "default-operation")}
		}
	}
	if e := p["test-option"]; e != nil {
		testOpt = e.text()
		if testOpt != "test-then-set" && testOpt != "set" && testOpt != "test-only" {
			return rpcErrors{newErr("protocol", "invalid-value", "test-option %q: want test-then-set, set or test-only", ytree.Clip(testOpt)).info("bad-element", "test-option")}
		}
	}
	if e := p["error-option"]; e != nil {
		errOpt = e.text()
		if errOpt != stopOnError && errOpt != continueOnError && errOpt != rollbackOnError {
			return rpcErrors{newErr("protocol", "invalid-value", "error-option %q: want stop-on-error, continue-on-error or rollback-on-error", ytree.Clip(errOpt)).info("bad-element", "error-option")}
		}
	}
	cfg := p["config"]
	if cfg == nil {
		return rpcErrors{newErr("protocol", "missing-element", "edit-config without <config>").info("bad-element", "config")}
	}
	if cfg.cfgErr != nil {
		return rpcErrors{cfg.cfgErr}
	}
	srv := ss.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if e := srv.lockedByOther(ds, ss.id); e != nil {
		return rpcErrors{e}
	}
	base := srv.sourceLocked(ds)
	work, errs := applyEdit(base, cfg.cfg, defOp, errOpt)
	if len(errs) > 0 {
		// rollback-on-error, an edit of running (committed at once, so all
		// or nothing), test-only and default-operation replace apply
		// nothing; stop-on-error and continue-on-error keep what was
		// applied to the candidate.
		if ds == dsCandidate && errOpt != rollbackOnError && testOpt != "test-only" && defOp != opReplace {
			srv.setCandidateLocked(work, base)
		}
		return errs
	}
	if testOpt == "test-only" {
		return srv.validateTree(work)
	}
	if ds == dsRunning {
		return srv.commitTree(ss.ctx, base, work, ss.user, fmt.Sprintf("netconf edit-config running (session %d)", ss.id), ss.token(), nil)
	}
	srv.setCandidateLocked(work, base)
	return nil
}

// configSourceLocked reads a source that may be a datastore or inline
// <config> (decoded when the message was parsed); s.mu is held.
func (ss *session) configSourceLocked(src *elem, op string) (*gen.Device, rpcErrors) {
	if src != nil && len(src.Kids) == 1 && src.Kids[0].Name.Local == "config" && src.Kids[0].Name.Space == baseNS {
		c := src.Kids[0]
		if c.cfgErr != nil {
			return nil, rpcErrors{c.cfgErr}
		}
		if c.cfg == nil {
			return nil, rpcErrors{newErr("protocol", "operation-failed", "<config> in an unexpected place")}
		}
		return c.cfg.root, nil
	}
	ds, perr := datastoreName(src, op, dsRunning, dsCandidate)
	if perr != nil {
		return nil, rpcErrors{perr}
	}
	return ss.srv.sourceLocked(ds), nil
}

func (ss *session) copyConfig(op *elem) rpcErrors {
	p, perr := params(op, "target", "source")
	if perr != nil {
		return rpcErrors{perr}
	}
	ds, perr := datastoreName(p["target"], "copy-config", dsRunning, dsCandidate)
	if perr != nil {
		return rpcErrors{perr}
	}
	srv := ss.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	tree, errs := ss.configSourceLocked(p["source"], "copy-config")
	if errs != nil {
		return errs
	}
	if e := srv.lockedByOther(ds, ss.id); e != nil {
		return rpcErrors{e}
	}
	cur := srv.runningTree()
	if ds == dsRunning {
		return srv.commitTree(ss.ctx, cur, tree, ss.user, fmt.Sprintf("netconf copy-config (session %d)", ss.id), ss.token(), nil)
	}
	srv.setCandidateLocked(nil, nil)
	srv.setCandidateLocked(tree, cur)
	return nil
}

func (ss *session) deleteConfig(op *elem) rpcErrors {
	p, perr := params(op, "target")
	if perr != nil {
		return rpcErrors{perr}
	}
	ds, perr := datastoreName(p["target"], "delete-config", dsRunning, dsCandidate)
	if perr != nil {
		return rpcErrors{perr}
	}
	if ds == dsRunning {
		return rpcErrors{newErr("protocol", "operation-not-supported", "the running datastore cannot be deleted")}
	}
	srv := ss.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if e := srv.lockedByOther(ds, ss.id); e != nil {
		return rpcErrors{e}
	}
	srv.setCandidateLocked(nil, nil)
	srv.setCandidateLocked(&gen.Device{}, srv.runningTree())
	return nil
}

func (ss *session) validate(op *elem) rpcErrors {
	p, perr := params(op, "source")
	if perr != nil {
		return rpcErrors{perr}
	}
	ss.srv.mu.Lock()
	tree, errs := ss.configSourceLocked(p["source"], "validate")
	ss.srv.mu.Unlock()
	if errs != nil {
		return errs
	}
	return ss.srv.validateTree(tree)
}

func (ss *session) commit(op *elem) rpcErrors {
	cp, perr := parseCommit(op)
	if perr != nil {
		return rpcErrors{perr}
	}
	srv := ss.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, ds := range []string{dsRunning, dsCandidate} {
		if e := srv.lockedByOther(ds, ss.id); e != nil {
			return rpcErrors{e}
		}
	}
	m := srv.cfg.Confirm
	_, pending := m.Current()
	if !pending && cp.persistID != nil {
		return rpcErrors{newErr("protocol", "invalid-value", "no confirmed commit is pending for persist-id %q", ytree.Clip(*cp.persistID)).info("bad-element", "persist-id")}
	}
	by := ss.actingToken(cp.persistID)
	comment := fmt.Sprintf("netconf commit (session %d)", ss.id)
	if cp.confirmed {
		owner := ss.token()
		if cp.persist != "" {
			owner = confirm.Token{Proto: confirm.NETCONF, ID: cp.persist, Persist: true}
		}
		from, to := srv.candBase, srv.candidate
		if to == nil {
			from, to = srv.runningTree(), srv.runningTree()
		}
		if errs := srv.commitTree(ss.ctx, from, to, ss.user, comment, by, &confirmedCommit{owner: owner, timeout: cp.timeout}); errs != nil {
			return errs
		}
		srv.setCandidateLocked(nil, nil)
		ss.log.Info("NETCONF confirmed commit", "commit", srv.cfg.Store.Running().ID, "timeout", cp.timeout, "persist", cp.persist != "")
		return nil
	}
	if srv.candidate != nil {
		if errs := srv.commitTree(ss.ctx, srv.candBase, srv.candidate, ss.user, comment, by, nil); errs != nil {
			return errs
		}
		srv.setCandidateLocked(nil, nil)
		ss.log.Info("NETCONF commit", "commit", srv.cfg.Store.Running().ID)
	}
	if pending {
		if _, err := m.Confirm(by); err != nil {
			if errs, ok := confirmErrors(err); ok {
				return errs
			}
			return internalErr(err)
		}
		ss.log.Info("NETCONF confirmed commit confirmed")
	}
	return nil
}

func (ss *session) discard(op *elem) rpcErrors {
	if _, perr := params(op); perr != nil {
		return rpcErrors{perr}
	}
	srv := ss.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if e := srv.lockedByOther(dsCandidate, ss.id); e != nil {
		return rpcErrors{e}
	}
	srv.setCandidateLocked(nil, nil)
	return nil
}

func (ss *session) lock(op *elem, lock bool) rpcErrors {
	p, perr := params(op, "target")
	if perr != nil {
		return rpcErrors{perr}
	}
	ds, perr := datastoreName(p["target"], op.Name.Local, dsRunning, dsCandidate)
	if perr != nil {
		return rpcErrors{perr}
	}
	srv := ss.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	holder, held := srv.locks[ds]
	if lock {
		if held {
			return rpcErrors{newErr("protocol", "lock-denied", "the %s datastore is already locked by session %d", ds, holder).info("session-id", strconv.FormatUint(uint64(holder), 10))}
		}
		if ds == dsCandidate && srv.candidate != nil {
			return rpcErrors{newErr("protocol", "lock-denied", "the candidate has uncommitted changes: commit or discard them first").info("session-id", "0")}
		}
		if ds == dsRunning {
			if ok, cur := srv.cfg.RunningLock.TryLock(ss.lockName()); !ok {
				return rpcErrors{newErr("protocol", "lock-denied", "the running datastore is locked by %s", cur).info("session-id", "0")}
			}
		}
		srv.locks[ds] = ss.id
		ss.log.Info("NETCONF lock", "datastore", ds)
		return nil
	}
	if !held || holder != ss.id {
		return rpcErrors{newErr("protocol", "operation-failed", "the %s datastore is not locked by this session", ds)}
	}
	delete(srv.locks, ds)
	if ds == dsRunning {
		srv.cfg.RunningLock.Unlock(ss.lockName())
	}
	ss.log.Info("NETCONF unlock", "datastore", ds)
	return nil
}

// lockName names this session as a holder of the shared running lock.
func (ss *session) lockName() string { return fmt.Sprintf("NETCONF session %d", ss.id) }

func (ss *session) kill(op *elem) rpcErrors {
	p, perr := params(op, "session-id")
	if perr != nil {
		return rpcErrors{perr}
	}
	e := p["session-id"]
	if e == nil {
		return rpcErrors{newErr("protocol", "missing-element", "kill-session without session-id").info("bad-element", "session-id")}
	}
	id, err := strconv.ParseUint(e.text(), 10, 32)
	if err != nil || id == 0 {
		return rpcErrors{newErr("protocol", "invalid-value", "session-id %q is not a session number", ytree.Clip(e.text())).info("bad-element", "session-id")}
	}
	if uint32(id) == ss.id {
		return rpcErrors{newErr("protocol", "invalid-value", "a session cannot kill itself: use close-session").info("bad-element", "session-id")}
	}
	ss.srv.mu.Lock()
	victim := ss.srv.sessions[uint32(id)]
	ss.srv.mu.Unlock()
	if victim == nil {
		return rpcErrors{newErr("protocol", "invalid-value", "no session %d", id).info("bad-element", "session-id")}
	}
	ss.log.Info("NETCONF kill-session", "victim", id)
	victim.close()
	ss.srv.endSession(victim)
	return nil
}

// clearSA runs the model's clear-crypto-sa RPC.
func (ss *session) clearSA(op *elem) ([]byte, rpcErrors) {
	var req gnmi.ClearRequest
	ns := moduleNamespaces[cryptoModule]
	for _, k := range op.Kids {
		if k.Name.Space != ns {
			return nil, rpcErrors{newErr("protocol", "unknown-element", "unexpected element <%s> in clear-crypto-sa", ytree.Clip(k.Name.Local)).info("bad-element", k.Name.Local)}
		}
		v := k.text()
		var err error
		switch k.Name.Local {
		case "peer":
			if a, perr := netip.ParseAddr(v); perr != nil || !a.Is4() {
				err = fmt.Errorf("not an IPv4 address")
			}
			req.Peer = v
		case "crypto-map":
			req.CryptoMap = v
		case "isakmp":
			req.ISAKMP, err = strconv.ParseBool(v)
		case "no-notify":
			req.NoNotify, err = strconv.ParseBool(v)
		default:
			return nil, rpcErrors{newErr("protocol", "unknown-element", "unexpected element <%s> in clear-crypto-sa", ytree.Clip(k.Name.Local)).info("bad-element", k.Name.Local)}
		}
		if err != nil {
			return nil, rpcErrors{newErr("protocol", "invalid-value", "clear-crypto-sa %s %q: %v", k.Name.Local, ytree.Clip(v), err).info("bad-element", k.Name.Local)}
		}
	}
	if ss.srv.cfg.Ops == nil {
		return nil, rpcErrors{newErr("application", "operation-failed", "clear-crypto-sa: no IPsec engine is attached to this agent")}
	}
	res, err := ss.srv.cfg.Ops.ClearSA(ss.ctx, req)
	if err != nil {
		return nil, rpcErrors{newErr("application", "operation-failed", "clear-crypto-sa: %v", err)}
	}
	ss.log.Info("clear crypto sa", "peer", req.Peer, "crypto_map", req.CryptoMap, "isakmp", req.ISAKMP, "no_notify", req.NoNotify,
		"ipsec_sas", res.IPsecSAsCleared, "ike_sas", res.IKESAsCleared)
	var b bytes.Buffer
	fmt.Fprintf(&b, `<ipsec-sas-cleared xmlns="%s">%d</ipsec-sas-cleared><ike-sas-cleared xmlns="%s">%d</ike-sas-cleared>`, ns, res.IPsecSAsCleared, ns, res.IKESAsCleared)
	return b.Bytes(), nil
}

package netconf

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Confirmed commit (RFC 6241 §8.4, :confirmed-commit:1.1): a commit with
// <confirmed/> is undone (a store rollback to the commit before it) unless a
// confirming commit arrives within the timeout, from the same session or,
// with <persist>, from any session that gives the persist-id.

const (
	capConfirmed10 = "urn:ietf:params:netconf:capability:confirmed-commit:1.0"
	capConfirmed11 = "urn:ietf:params:netconf:capability:confirmed-commit:1.1"

	defaultConfirmTimeout = 600 * time.Second
)

// pendingCommit is a confirmed commit waiting for its confirmation.
type pendingCommit struct {
	rollbackID uint64 // running before the confirmed commit
	session    uint32 // the session that made it
	persist    string // persist token ("" = bound to the session)
	timer      *time.Timer
}

// commitParams are the parameters of <commit>.
type commitParams struct {
	confirmed bool
	timeout   time.Duration
	persist   string
	persistID *string
}

func parseCommit(op *elem) (commitParams, *rpcError) {
	p, perr := params(op, "confirmed", "confirm-timeout", "persist", "persist-id")
	if perr != nil {
		return commitParams{}, perr
	}
	cp := commitParams{confirmed: p["confirmed"] != nil, timeout: defaultConfirmTimeout}
	if e := p["confirm-timeout"]; e != nil {
		n, err := strconv.ParseUint(e.text(), 10, 32)
		if err != nil || n == 0 {
			return cp, newErr("protocol", "invalid-value", "confirm-timeout %q: want seconds, 1 to 4294967295", e.text()).info("bad-element", "confirm-timeout")
		}
		cp.timeout = time.Duration(n) * time.Second
	}
	if e := p["persist"]; e != nil {
		cp.persist = e.text()
	}
	if e := p["persist-id"]; e != nil {
		id := e.text()
		cp.persistID = &id
	}
	if !cp.confirmed && (p["confirm-timeout"] != nil || p["persist"] != nil) {
		return cp, newErr("protocol", "missing-element", "confirm-timeout and persist need <confirmed/>").info("bad-element", "confirmed")
	}
	return cp, nil
}

// mayConfirmLocked checks that this session (or persist-id) may confirm,
// extend or cancel the pending commit; s.mu is held.
func (s *Server) mayConfirmLocked(ss *session, persistID *string) *rpcError {
	pc := s.pending
	if pc.persist != "" {
		if persistID == nil || *persistID != pc.persist {
			return newErr("protocol", "invalid-value", "a persistent confirmed commit is pending: give its persist-id").info("bad-element", "persist-id")
		}
		return nil
	}
	if pc.session != ss.id {
		return newErr("protocol", "in-use", "a confirmed commit of session %d is pending: only that session may confirm or cancel it", pc.session).info("session-id", strconv.FormatUint(uint64(pc.session), 10))
	}
	return nil
}

// startPendingLocked arms (or re-arms) the confirm timer; s.mu is held.
func (s *Server) startPendingLocked(ss *session, rollbackID uint64, cp commitParams) {
	if s.pending != nil {
		s.pending.timer.Stop()
		rollbackID = s.pending.rollbackID
	}
	pc := &pendingCommit{rollbackID: rollbackID, session: ss.id, persist: cp.persist}
	pc.timer = time.AfterFunc(cp.timeout, func() { s.revert(pc, "confirm timeout") })
	s.pending = pc
	ss.log.Info("NETCONF confirmed commit pending", "rollback_to", rollbackID, "timeout", cp.timeout, "persist", cp.persist != "")
}

// revert undoes pending commit pc if it is still the pending one.
func (s *Server) revert(pc *pendingCommit, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != pc {
		return
	}
	s.revertLocked(reason)
}

// revertLocked rolls running back to before the pending commit; s.mu is
// held.
func (s *Server) revertLocked(reason string) *rpcError {
	pc := s.pending
	s.pending = nil
	pc.timer.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := s.cfg.Store.Rollback(ctx, pc.rollbackID, "netconf")
	if err != nil {
		s.log.Error("NETCONF confirmed commit: rollback failed", "reason", reason, "rollback_to", pc.rollbackID, "err", err)
		return newErr("application", "operation-failed", "rollback to commit %d failed: %v", pc.rollbackID, err)
	}
	s.setCandidateLocked(nil, nil)
	s.log.Info("NETCONF confirmed commit reverted", "reason", reason, "rollback_to", pc.rollbackID, "commit", info.ID)
	return nil
}

func (ss *session) cancelCommit(op *elem) rpcErrors {
	p, perr := params(op, "persist-id")
	if perr != nil {
		return rpcErrors{perr}
	}
	var pid *string
	if e := p["persist-id"]; e != nil {
		id := e.text()
		pid = &id
	}
	srv := ss.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.pending == nil {
		return rpcErrors{newErr("protocol", "operation-failed", "no confirmed commit is pending")}
	}
	if e := srv.mayConfirmLocked(ss, pid); e != nil {
		return rpcErrors{e}
	}
	if e := srv.revertLocked(fmt.Sprintf("cancel-commit by session %d", ss.id)); e != nil {
		return rpcErrors{e}
	}
	return nil
}

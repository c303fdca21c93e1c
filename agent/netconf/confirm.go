package netconf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spiagent/spiagent/agent/confirm"
	"github.com/spiagent/spiagent/ytree"
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
			return cp, newErr("protocol", "invalid-value", "confirm-timeout %q: want seconds, 1 to 4294967295", ytree.Clip(e.text())).info("bad-element", "confirm-timeout")
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

// token is the session's own confirm token.
func (ss *session) token() confirm.Token {
	return confirm.Token{Proto: confirm.NETCONF, ID: fmt.Sprintf("session %d", ss.id)}
}

// actingToken is who acts on a pending commit: the session, or whoever
// presents a persist-id.
func (ss *session) actingToken(persistID *string) confirm.Token {
	if persistID != nil {
		return confirm.Token{Proto: confirm.NETCONF, ID: *persistID, Persist: true}
	}
	return ss.token()
}

// confirmErrors maps the confirm manager's refusals to rpc-errors.
func confirmErrors(err error) (rpcErrors, bool) {
	var pe *confirm.PendingError
	switch {
	case errors.Is(err, confirm.ErrNoPending):
		return rpcErrors{newErr("protocol", "operation-failed", "no confirmed commit is pending")}, true
	case !errors.As(err, &pe):
		return nil, false
	}
	p := pe.Pending
	switch {
	case p.Owner.Persist:
		return rpcErrors{newErr("protocol", "invalid-value", "a persistent confirmed commit is pending: give its persist-id").info("bad-element", "persist-id")}, true
	case p.Owner.Proto == confirm.NETCONF:
		id := strings.TrimPrefix(p.Owner.ID, "session ")
		return rpcErrors{newErr("protocol", "in-use", "a confirmed commit of session %s is pending: only that session may confirm or cancel it", id).info("session-id", id)}, true
	}
	return rpcErrors{newErr("protocol", "in-use", "%v", pe)}, true
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
	if _, err := srv.cfg.Confirm.Cancel(ss.ctx, ss.actingToken(pid), fmt.Sprintf("cancel-commit by session %d", ss.id)); err != nil {
		if errs, ok := confirmErrors(err); ok {
			return errs
		}
		return rpcErrors{newErr("application", "operation-failed", "%v", err)}
	}
	return nil
}

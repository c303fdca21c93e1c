package netconf

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spiagent/spiagent/agent/confirm"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/store"
)

// Datastore names.
const (
	dsRunning   = "running"
	dsCandidate = "candidate"
)

// runningTree is the running config: the store's snapshot, shared with
// every reader; never modify it (edits go through a ytree.Writer).
func (s *Server) runningTree() *gen.Device { return s.cfg.Store.Running().Root }

// stateTree is the operational state (the telemetry tree's snapshot).
func (s *Server) stateTree() *gen.Device { return s.cfg.State.Snapshot().Root }

// candidateLocked is the candidate tree (shared; never modify it); s.mu is
// held.
func (s *Server) candidateLocked() *gen.Device {
	if s.candidate != nil {
		return s.candidate
	}
	return s.runningTree()
}

// sourceLocked returns the tree of a datastore; s.mu is held.
func (s *Server) sourceLocked(ds string) *gen.Device {
	if ds == dsCandidate {
		return s.candidateLocked()
	}
	return s.runningTree()
}

// lockedByOther returns an in-use error if another session holds ds; s.mu
// is held.
func (s *Server) lockedByOther(ds string, id uint32) *rpcError {
	if holder, ok := s.locks[ds]; ok && holder != id {
		return newErr("protocol", "in-use", "the %s datastore is locked by session %d", ds, holder).info("session-id", strconv.FormatUint(uint64(holder), 10))
	}
	return nil
}

// setCandidateLocked makes tree the candidate. When the candidate was
// following running, tree was derived (by a ytree.Writer) from running tree
// base, which becomes the candidate's base: commit applies the candidate's
// changes from its base to running, so commits made meanwhile by others
// (gNMI, other NETCONF edits of running) are kept. A nil tree resets the
// candidate to follow running. s.mu is held.
func (s *Server) setCandidateLocked(tree, base *gen.Device) {
	if tree == nil {
		s.candidate, s.candBase = nil, nil
		return
	}
	if s.candidate == nil {
		s.candBase = base
	}
	s.candidate = tree
}

// confirmedCommit asks commitTree for a confirmed commit.
type confirmedCommit struct {
	owner   confirm.Token
	timeout time.Duration
}

// commitTree applies the changes from tree from to tree to (the ops
// store.OpsBetween finds: shared subtrees are skipped at once, so a
// one-leaf edit of a 10k config is a one-op transaction) to running in one
// store transaction, through the datastore's confirmed-commit owner: as a
// plain commit on behalf of by, or, with cc, as (part of) a confirmed
// commit, which it starts even without changes.
func (s *Server) commitTree(ctx context.Context, from, to *gen.Device, user, comment string, by confirm.Token, cc *confirmedCommit) rpcErrors {
	ops := store.OpsBetween(from, to)
	if len(ops) == 0 && cc == nil {
		return nil
	}
	tx := store.Tx{Ops: ops, User: user, Comment: comment, IgnoreMissing: true}
	var err error
	if cc != nil {
		_, err = s.cfg.Confirm.CommitConfirmed(ctx, tx, by, cc.owner, cc.timeout)
	} else {
		_, err = s.cfg.Confirm.Commit(ctx, tx, by)
	}
	if err != nil {
		if errs, ok := confirmErrors(err); ok {
			return errs
		}
		return storeErrors(err)
	}
	return nil
}

// storeErrors maps a store commit error to rpc-errors.
func storeErrors(err error) rpcErrors {
	var verr *store.ValidationError
	var oerr *store.OpError
	var rerr *store.RefusedError
	switch {
	case errors.As(err, &verr):
		return problemErrors(verr.Problems)
	case errors.As(err, &oerr):
		return rpcErrors{newErr("application", "invalid-value", "%v", oerr.Err).at(xpathOf(oerr.Path))}
	case errors.As(err, &rerr):
		return rpcErrors{newErr("application", "operation-failed", "the agent refused the configuration: %v", rerr.Err)}
	}
	return rpcErrors{newErr("application", "operation-failed", "%v", err)}
}

// validateTree runs the store's full validation (YANG and the validators
// registered with the store) on tree.
func (s *Server) validateTree(tree *gen.Device) rpcErrors {
	if ps := s.cfg.Store.Validate(tree); len(ps) > 0 {
		return problemErrors(ps)
	}
	return nil
}

// endSession releases what the session held: its locks (and, with the
// candidate lock, the candidate's uncommitted changes; RFC 6241 §8.3.5.2).
func (s *Server) endSession(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[ss.id]; !ok {
		return
	}
	delete(s.sessions, ss.id)
	// A confirmed commit bound to this session (not a persistent one) is
	// rolled back now (RFC 6241 §8.4.1).
	if _, err := s.cfg.Confirm.Cancel(context.WithoutCancel(ss.ctx), ss.token(), fmt.Sprintf("session %d ended before confirming", ss.id)); err != nil && !isConfirmRefusal(err) {
		s.log.Error("NETCONF session end: rollback of its confirmed commit failed", "session", ss.id, "err", err)
	}
	for ds, holder := range s.locks {
		if holder != ss.id {
			continue
		}
		delete(s.locks, ds)
		if ds == dsRunning {
			s.cfg.RunningLock.Unlock(ss.lockName())
		}
		if ds == dsCandidate && s.candidate != nil {
			s.setCandidateLocked(nil, nil)
			ss.log.Info("NETCONF candidate changes discarded: the session holding the lock ended")
		}
	}
}

// isConfirmRefusal: nothing pending, or pending for someone else.
func isConfirmRefusal(err error) bool {
	var pe *confirm.PendingError
	return errors.Is(err, confirm.ErrNoPending) || errors.As(err, &pe)
}

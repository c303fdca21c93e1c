package gnmi

import (
	"context"
	"fmt"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"google.golang.org/grpc/codes"
)

// MaxRollbackDuration bounds a confirmed commit's rollback timer.
const MaxRollbackDuration = 24 * time.Hour

// pendingCommit is a confirmed commit waiting for its confirmation.
type pendingCommit struct {
	id     string // the client's commit id
	before uint64 // store commit to roll back to
	after  uint64 // store commit the Set made
	user   string
	timer  *time.Timer
	gen    int // distinguishes timers of successive pending commits
}

// commitExtension returns the request's Commit extension, if any.
func commitExtension(exts []*gnmi_ext.Extension) (*gnmi_ext.Commit, error) {
	var c *gnmi_ext.Commit
	for _, e := range exts {
		switch x := e.GetExt().(type) {
		case *gnmi_ext.Extension_Commit:
			if c != nil {
				return nil, fmt.Errorf("more than one commit extension")
			}
			c = x.Commit
		case *gnmi_ext.Extension_MasterArbitration, *gnmi_ext.Extension_History:
			return nil, fmt.Errorf("extension %T is not supported on Set", x)
		}
	}
	if c == nil {
		return nil, nil
	}
	if c.GetId() == "" {
		return nil, fmt.Errorf("commit extension: an id is required")
	}
	if c.GetAction() == nil {
		return nil, fmt.Errorf("commit extension %q: no action (commit, confirm, cancel or set_rollback_duration)", c.GetId())
	}
	return c, nil
}

func rollbackDuration(d interface{ AsDuration() time.Duration }, present bool) (time.Duration, error) {
	if !present {
		return 0, fmt.Errorf("commit extension: rollback_duration is required")
	}
	v := d.AsDuration()
	if v <= 0 || v > MaxRollbackDuration {
		return 0, fmt.Errorf("commit extension: rollback_duration %v out of range (0, %v]", v, MaxRollbackDuration)
	}
	return v, nil
}

// checkNoPendingCommit refuses config changes while a confirmed commit
// waits: rolling it back must not undo someone else's change. setMu is held.
func (s *Server) checkNoPendingCommit(c *gnmi_ext.Commit) error {
	if s.confirm == nil {
		return nil
	}
	if c != nil {
		return errStatus(codes.FailedPrecondition, "commit %q is pending confirmation: confirm or cancel it before starting %q", s.confirm.id, c.GetId())
	}
	return errStatus(codes.FailedPrecondition, "commit %q is pending confirmation: confirm or cancel it first", s.confirm.id)
}

// startConfirmTimer arms the rollback of a confirmed commit. setMu is held.
func (s *Server) startConfirmTimer(c *gnmi_ext.Commit, d time.Duration, before, after uint64) {
	gen := 1
	if s.confirm != nil {
		gen = s.confirm.gen + 1
	}
	p := &pendingCommit{id: c.GetId(), before: before, after: after, gen: gen}
	p.timer = time.AfterFunc(d, func() { s.expire(p.id, gen) })
	s.confirm = p
	s.log.Info("confirmed commit pending", "id", p.id, "commit", after, "rollback_to", before, "rollback_in", d)
}

// commitRequestDuration validates a commit action's rollback duration.
func commitRequestDuration(c *gnmi_ext.Commit) (time.Duration, error) {
	req := c.GetCommit()
	return rollbackDuration(req.GetRollbackDuration(), req.GetRollbackDuration() != nil)
}

// expire rolls a pending commit back when its timer fires.
func (s *Server) expire(id string, gen int) {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	p := s.confirm
	if p == nil || p.id != id || p.gen != gen {
		return
	}
	s.confirm = nil
	s.rollback(p, "not confirmed in time")
}

func (s *Server) rollback(p *pendingCommit, why string) error {
	if p.before == p.after {
		s.log.Info("confirmed commit ended; it changed nothing", "id", p.id, "why", why)
		return nil
	}
	info, err := s.cfg.Store.Rollback(context.Background(), p.before, "commit-confirmed "+p.id)
	if err != nil {
		s.log.Error("rollback of confirmed commit failed", "id", p.id, "to", p.before, "err", err)
		return err
	}
	s.log.Warn("confirmed commit rolled back", "id", p.id, "why", why, "to", p.before, "commit", info.ID)
	return nil
}

// confirmAction handles confirm, cancel and set_rollback_duration. setMu is
// held.
func (s *Server) confirmAction(ctx context.Context, c *gnmi_ext.Commit) (*gpb.SetResponse, error) {
	p := s.confirm
	if p == nil || p.id != c.GetId() {
		return nil, errStatus(codes.FailedPrecondition, "no pending commit with id %q", c.GetId())
	}
	switch a := c.GetAction().(type) {
	case *gnmi_ext.Commit_Confirm:
		p.timer.Stop()
		s.confirm = nil
		s.log.Info("confirmed commit confirmed", "id", p.id, "commit", p.after, "user", principalFrom(ctx).user)
	case *gnmi_ext.Commit_Cancel:
		p.timer.Stop()
		s.confirm = nil
		if err := s.rollback(p, "cancelled"); err != nil {
			return nil, errStatus(codes.Internal, "rollback of commit %q failed: %v", p.id, err)
		}
	case *gnmi_ext.Commit_SetRollbackDuration:
		d, err := rollbackDuration(a.SetRollbackDuration.GetRollbackDuration(), a.SetRollbackDuration.GetRollbackDuration() != nil)
		if err != nil {
			return nil, errStatus(codes.InvalidArgument, "%v", err)
		}
		p.timer.Reset(d)
	}
	return &gpb.SetResponse{Timestamp: s.now()}, nil
}

// stopConfirmTimer handles a pending confirmed commit at shutdown: an
// unconfirmed commit must not outlive the server that would have rolled it
// back, so it is rolled back now.
func (s *Server) stopConfirmTimer() {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	if s.confirm != nil {
		s.confirm.timer.Stop()
		s.log.Warn("shutting down with a confirmed commit pending: rolling it back", "id", s.confirm.id)
		s.rollback(s.confirm, "server shutdown")
		s.confirm = nil
	}
}

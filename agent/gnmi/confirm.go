package gnmi

import (
	"context"
	"errors"
	"fmt"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"google.golang.org/grpc/codes"

	"github.com/spiagent/spiagent/agent/confirm"
)

// MaxRollbackDuration bounds a confirmed commit's rollback timer.
const MaxRollbackDuration = 24 * time.Hour

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

// commitRequestDuration validates a commit action's rollback duration.
func commitRequestDuration(c *gnmi_ext.Commit) (time.Duration, error) {
	req := c.GetCommit()
	return rollbackDuration(req.GetRollbackDuration(), req.GetRollbackDuration() != nil)
}

// token is the confirm token of a gNMI commit id.
func token(c *gnmi_ext.Commit) confirm.Token {
	return confirm.Token{Proto: confirm.GNMI, ID: c.GetId()}
}

// confirmAction handles confirm, cancel and set_rollback_duration on the
// datastore's pending confirmed commit (whoever made it, only its gNMI
// commit id acts on it).
func (s *Server) confirmAction(ctx context.Context, c *gnmi_ext.Commit) (*gpb.SetResponse, error) {
	m := s.cfg.Confirm
	var err error
	switch a := c.GetAction().(type) {
	case *gnmi_ext.Commit_Confirm:
		if _, err = m.Confirm(token(c)); err == nil {
			s.log.Info("confirmed commit confirmed", "id", c.GetId(), "user", principalFrom(ctx).user)
		}
	case *gnmi_ext.Commit_Cancel:
		if _, err = m.Cancel(ctx, token(c), "cancelled by "+principalFrom(ctx).user); err != nil && !isOwnerErr(err) {
			return nil, errStatus(codes.Internal, "rollback of commit %q failed: %v", c.GetId(), err)
		}
	case *gnmi_ext.Commit_SetRollbackDuration:
		d, derr := rollbackDuration(a.SetRollbackDuration.GetRollbackDuration(), a.SetRollbackDuration.GetRollbackDuration() != nil)
		if derr != nil {
			return nil, errStatus(codes.InvalidArgument, "%v", derr)
		}
		err = m.Extend(token(c), d)
	}
	if err != nil {
		return nil, errStatus(codes.FailedPrecondition, "no pending commit with id %q", c.GetId())
	}
	return &gpb.SetResponse{Timestamp: s.now()}, nil
}

// isOwnerErr reports the errors that mean "not yours to act on".
func isOwnerErr(err error) bool {
	var pe *confirm.PendingError
	return errors.Is(err, confirm.ErrNoPending) || errors.As(err, &pe)
}

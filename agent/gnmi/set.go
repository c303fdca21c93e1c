package gnmi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"google.golang.org/grpc/codes"

	"github.com/spiagent/spiagent/agent/confirm"
	"github.com/spiagent/spiagent/store"
	"github.com/spiagent/spiagent/ytree"
)

// setOp is one operation of a SetRequest, in the order the spec applies
// them: deletes, replaces, updates, then union_replaces.
type setOp struct {
	op    gpb.UpdateResult_Operation
	path  *gpb.Path // as sent, for the UpdateResult
	elems []*gpb.PathElem
	val   *gpb.TypedValue
	shown string
}

func opName(o gpb.UpdateResult_Operation) string {
	return strings.ToLower(o.String())
}

// Set applies a SetRequest as one store transaction, or runs the
// clear-crypto-sa RPC, or acts on a confirmed commit (gNMI Commit extension).
func (s *Server) Set(ctx context.Context, req *gpb.SetRequest) (*gpb.SetResponse, error) {
	if err := requireWrite(ctx); err != nil {
		return nil, err
	}
	commitExt, err := commitExtension(req.GetExtension())
	if err != nil {
		return nil, errStatus(codes.InvalidArgument, "%v", err)
	}
	if isRPC(req) {
		if commitExt != nil {
			return nil, errStatus(codes.InvalidArgument, "clear-crypto-sa is not a config change: it takes no commit extension")
		}
		return s.runClearRPC(ctx, req)
	}
	ops, err := parseSetOps(req)
	if err != nil {
		return nil, err
	}
	if h := s.cfg.RunningLock.Holder(); h != "" {
		return nil, errStatus(codes.FailedPrecondition, "the running datastore is locked by %s", h)
	}
	var confirmIn time.Duration
	if commitExt != nil {
		if act := commitExt.GetAction(); act != nil {
			if _, isCommit := act.(*gnmi_ext.Commit_Commit); !isCommit {
				if len(ops) > 0 {
					return nil, errStatus(codes.InvalidArgument, "commit extension: confirm, cancel and set-rollback-duration take no operations")
				}
				return s.confirmAction(ctx, commitExt)
			}
		}
		if confirmIn, err = commitRequestDuration(commitExt); err != nil {
			return nil, errStatus(codes.InvalidArgument, "%v", err)
		}
	}
	if _, err := s.commit(ctx, ops, commitExt, confirmIn); err != nil {
		return nil, err
	}
	resp := &gpb.SetResponse{Prefix: req.GetPrefix(), Timestamp: s.now()}
	for _, o := range ops {
		resp.Response = append(resp.Response, &gpb.UpdateResult{Path: o.path, Op: o.op})
	}
	return resp, nil
}

// parseSetOps checks every operation's path and value and orders them.
func parseSetOps(req *gpb.SetRequest) ([]setOp, error) {
	var ops []setOp
	add := func(o gpb.UpdateResult_Operation, p *gpb.Path, val *gpb.TypedValue) error {
		shown := showPath(req.GetPrefix(), p)
		elems, err := fullPath(req.GetPrefix(), p)
		if err != nil {
			return errStatus(codes.InvalidArgument, "%s: %v", opName(o), err)
		}
		if hasWildcard(elems) {
			return errStatus(codes.InvalidArgument, "%s %s: wildcards are not allowed in Set", opName(o), shown)
		}
		r, err := ytree.Resolve(elems)
		if err != nil {
			return errStatus(codes.InvalidArgument, "%s %s: %v", opName(o), shown, err)
		}
		if r.State {
			return errStatus(codes.InvalidArgument, "%s %s: state (config false) data is read-only", opName(o), shown)
		}
		if o != gpb.UpdateResult_DELETE {
			if err := checkSetVal(val); err != nil {
				return errStatus(codes.InvalidArgument, "%s %s: %v", opName(o), shown, err)
			}
		}
		ops = append(ops, setOp{op: o, path: p, elems: elems, val: val, shown: shown})
		return nil
	}
	for _, p := range req.GetDelete() {
		if err := add(gpb.UpdateResult_DELETE, p, nil); err != nil {
			return nil, err
		}
	}
	for _, u := range req.GetReplace() {
		if err := add(gpb.UpdateResult_REPLACE, u.GetPath(), u.GetVal()); err != nil {
			return nil, err
		}
	}
	for _, u := range req.GetUpdate() {
		if err := add(gpb.UpdateResult_UPDATE, u.GetPath(), u.GetVal()); err != nil {
			return nil, err
		}
	}
	for _, u := range req.GetUnionReplace() {
		if err := add(gpb.UpdateResult_UNION_REPLACE, u.GetPath(), u.GetVal()); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

// checkSetVal accepts the value encodings the store can apply.
func checkSetVal(v *gpb.TypedValue) error {
	switch v.GetValue().(type) {
	case nil:
		return errors.New("no value")
	case *gpb.TypedValue_AnyVal, *gpb.TypedValue_ProtoBytes, *gpb.TypedValue_AsciiVal:
		return fmt.Errorf("value encoding %T is not supported: use json_val, json_ietf_val or a scalar", v.GetValue())
	}
	return nil
}

// storeOps turns the request's operations into store ops. The
// union_replaces at one path together replace it: the first becomes a
// replace and the rest updates on top of it.
func storeOps(ops []setOp) ([]store.Op, []int) {
	var out []store.Op
	var owner []int // store op index -> request op index
	replaced := map[string]bool{}
	for i, o := range ops {
		var kind store.OpKind
		switch o.op {
		case gpb.UpdateResult_DELETE:
			kind = store.OpDelete
		case gpb.UpdateResult_REPLACE:
			kind = store.OpReplace
		case gpb.UpdateResult_UPDATE:
			kind = store.OpUpdate
		case gpb.UpdateResult_UNION_REPLACE:
			k := ytree.PathString(o.elems)
			kind = store.OpReplace
			if replaced[k] {
				kind = store.OpUpdate
			}
			replaced[k] = true
		}
		out = append(out, store.Op{Kind: kind, Path: &gpb.Path{Elem: o.elems}, Val: o.val})
		owner = append(owner, i)
	}
	return out, owner
}

// commit runs the operations as one store transaction, through the
// datastore's confirmed-commit owner: a Set holds no confirm token, so it is
// refused while someone's confirmed commit is pending; with a Commit
// extension it starts one of its own.
func (s *Server) commit(ctx context.Context, ops []setOp, ext *gnmi_ext.Commit, confirmIn time.Duration) (store.CommitInfo, error) {
	sops, owner := storeOps(ops)
	p := principalFrom(ctx)
	tx := store.Tx{Ops: sops, User: p.user, Comment: "gNMI Set", IgnoreMissing: true}
	var info store.CommitInfo
	var err error
	if ext != nil {
		info, err = s.cfg.Confirm.CommitConfirmed(ctx, tx, confirm.Token{}, token(ext), confirmIn)
	} else {
		info, err = s.cfg.Confirm.Commit(ctx, tx, confirm.Token{})
	}
	if err != nil {
		return info, s.commitStatus(err, ops, owner)
	}
	s.log.Info("gNMI Set committed", "user", p.user, "commit", info.ID, "ops", len(ops), "summary", info.Summary)
	return info, nil
}

// commitStatus maps a store error to a status naming the failing operation.
func (s *Server) commitStatus(err error, ops []setOp, owner []int) error {
	var opErr *store.OpError
	var valErr *store.ValidationError
	var refused *store.RefusedError
	var pending *confirm.PendingError
	switch {
	case errors.As(err, &pending):
		return errStatus(codes.FailedPrecondition, "%v", pending)
	case errors.As(err, &opErr):
		o := ops[owner[opErr.Index]]
		code := codes.InvalidArgument
		if errors.Is(opErr.Err, store.ErrNotFound) {
			code = codes.NotFound
		}
		return errStatus(code, "%s %s: %v", opName(o.op), o.shown, opErr.Err)
	case errors.As(err, &valErr):
		parts := make([]string, 0, len(valErr.Problems))
		for _, p := range valErr.Problems {
			parts = append(parts, p.String())
		}
		return errStatus(codes.InvalidArgument, "invalid config: %s", strings.Join(parts, "; "))
	case errors.As(err, &refused):
		return errStatus(codes.Aborted, "the agent refused the change: %v", refused.Err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errStatus(codes.Canceled, "%v", err)
	}
	s.log.Error("gNMI Set failed", "err", err)
	return errStatus(codes.Internal, "commit failed: %v", err)
}

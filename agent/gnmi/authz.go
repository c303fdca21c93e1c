package gnmi

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/connlimit"
)

// Authentication happens in the transport's tap (grpc.InTapHandle), when a
// stream's headers arrive and before any of its messages is read: a client
// without good credentials, or a read-only user calling Set, is refused
// without the server reading (or buffering) a byte of its request. The tap
// runs on the connection's reader goroutine, so a bcrypt verification (the
// first RPC of a user, or a wrong password) holds up that connection only;
// verified passwords are cached (auth.Users). The principal rides in the
// stream's context to the interceptors, which do not check again.
//
// The tap's context has what the interceptors' had: grpc-go (v1.85,
// server.go serveStreams) puts the peer (addresses, TLS state) in the
// connection's context before it reads any stream, and the transport adds
// the request metadata before calling the tap (http2_server.go
// operateHeaders).

// principal is an authenticated client.
type principal struct {
	user    string
	role    auth.Role
	remote  string
	tracked bool // a user of the users file (not lab mode): ended if removed
}

type principalKey struct{}

// cancelKey holds the context.CancelCauseFunc of the stream's context,
// which ends the RPC if its user is removed.
type cancelKey struct{}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// tap authenticates a new stream from its headers; it returns the stream's
// context carrying the principal, or a status that refuses the stream.
func (s *Server) tap(lis *connlimit.Listener) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		p, err := s.authenticate(ctx)
		if err != nil {
			return nil, err
		}
		if info.FullMethodName == gpb.GNMI_Set_FullMethodName && p.role < auth.RoleReadWrite {
			s.rl.Warn("gNMI permission denied", "user", p.user, "remote", p.remote, "rpc", "Set", "role", p.role)
			return nil, errStatus(codes.PermissionDenied, "user %q has role %s: Set needs read-write", p.user, p.role)
		}
		if pr, ok := peer.FromContext(ctx); ok && lis != nil {
			lis.Authenticated(pr.LocalAddr, pr.Addr)
		}
		ctx, cancel := context.WithCancelCause(ctx)
		ctx = context.WithValue(ctx, cancelKey{}, cancel)
		return context.WithValue(ctx, principalKey{}, p), nil
	}
}

// principalOf returns the principal the tap found, or authenticates (a
// server without the tap, as in a test calling the handlers directly).
func (s *Server) principalOf(ctx context.Context) (principal, error) {
	if p, ok := ctx.Value(principalKey{}).(principal); ok {
		return p, nil
	}
	return s.authenticate(ctx)
}

// revokedError is the status of an RPC ended because its user was removed
// from the users file or lost the role it needs.
type revokedError struct{ st *status.Status }

func (e *revokedError) Error() string              { return e.st.Err().Error() }
func (e *revokedError) GRPCStatus() *status.Status { return e.st }

// revokeGrace is how long an RPC whose user was revoked has to end by
// itself (with the revocation's status) before its stream is torn down.
const revokeGrace = 5 * time.Second

// track registers an RPC of p that needs role need with the users file, so
// that it is ended if p is removed or demoted: the handler's context is
// cancelled with the revocation status (a subscription ends with it, and
// a Recv returns it); a handler that does not end within revokeGrace has
// its stream torn down. It returns the handler's context and a function
// that ends the tracking and gives the RPC's status.
func (s *Server) track(ctx context.Context, p principal, need auth.Role) (context.Context, func(error) error) {
	streamCancel, _ := ctx.Value(cancelKey{}).(context.CancelCauseFunc)
	if !p.tracked || streamCancel == nil || s.cfg.Users == nil {
		return ctx, func(err error) error { return err }
	}
	ctx, cancel := context.WithCancelCause(ctx)
	var backstop atomic.Pointer[time.Timer]
	untrack := s.cfg.Users.Track(p.user, need, func(e *auth.RevokedError) {
		code := codes.PermissionDenied
		if e.Removed {
			code = codes.Unauthenticated
		}
		s.log.Warn("gNMI RPC ended: user revoked", "user", p.user, "remote", p.remote, "reason", e.Error())
		r := &revokedError{st: status.New(code, e.Error())}
		cancel(r)
		backstop.Store(time.AfterFunc(revokeGrace, func() { streamCancel(r) }))
	})
	return ctx, func(err error) error {
		untrack()
		if t := backstop.Load(); t != nil {
			t.Stop()
		}
		defer cancel(nil)
		if r := revokedCause(ctx); r != nil {
			return r
		}
		return err
	}
}

// revokedCause is the revocation that cancelled ctx, or nil.
func revokedCause(ctx context.Context) *revokedError {
	var r *revokedError
	if errors.As(context.Cause(ctx), &r) {
		return r
	}
	return nil
}

// needs is the role an RPC needs.
func needs(fullMethod string) auth.Role {
	if fullMethod == gpb.GNMI_Set_FullMethodName {
		return auth.RoleReadWrite
	}
	return auth.RoleReadOnly
}

func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	p, err := s.principalOf(ctx)
	if err != nil {
		return nil, err
	}
	ctx, done := s.track(context.WithValue(ctx, principalKey{}, p), p, needs(info.FullMethod))
	resp, err := h(ctx, req)
	if err = done(err); err != nil {
		return nil, err
	}
	return resp, nil
}

type authedStream struct {
	grpc.ServerStream
	ctx       context.Context
	revocable bool
	// waitsInRecv: the handler blocks in RecvMsg between requests (a POLL
	// subscription), so a revocation must interrupt it. STREAM and ONCE
	// handlers wait on their context instead.
	waitsInRecv bool
	first       bool // the first request was received
}

func (a *authedStream) Context() context.Context { return a.ctx }

// RecvMsg returns the revocation's status if the user is revoked while a
// POLL subscription waits for the client's next poll.
func (a *authedStream) RecvMsg(m any) error {
	if !a.revocable || !a.waitsInRecv {
		err := a.ServerStream.RecvMsg(m)
		if a.revocable && !a.first && err == nil {
			a.first = true
			r, ok := m.(*gpb.SubscribeRequest)
			a.waitsInRecv = ok && r.GetSubscribe().GetMode() == gpb.SubscriptionList_POLL
		}
		return err
	}
	done := make(chan error, 1)
	go func() { done <- a.ServerStream.RecvMsg(m) }()
	select {
	case err := <-done:
		return err
	case <-a.ctx.Done():
		if r := revokedCause(a.ctx); r != nil {
			// The pending RecvMsg ends when the handler has returned and
			// the stream is finished.
			return r
		}
		return <-done
	}
}

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	p, err := s.principalOf(ss.Context())
	if err != nil {
		return err
	}
	base := context.WithValue(ss.Context(), principalKey{}, p)
	ctx, done := s.track(base, p, needs(info.FullMethod))
	return done(h(srv, &authedStream{ServerStream: ss, ctx: ctx, revocable: ctx != base}))
}

// first returns the first value of a metadata key (clients may repeat it).
func first(md metadata.MD, key string) (string, bool) {
	v := md.Get(key)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// credentialsFrom reads username/password metadata (gnmic, gnmi_cli), or an
// `authorization: Basic` header, which is accepted over TLS only.
func credentialsFrom(ctx context.Context, overTLS bool) (user, pass string, ok bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	user, hasUser := first(md, "username")
	pass, hasPass := first(md, "password")
	if hasUser || hasPass {
		return user, pass, true
	}
	h, found := first(md, "authorization")
	if !found || !overTLS {
		return "", "", false
	}
	scheme, b64, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(raw), ":")
	return user, pass, ok
}

// authenticate checks the caller's credentials against the users file,
// through the login backoff shared with NETCONF.
func (s *Server) authenticate(ctx context.Context) (principal, error) {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return principal{}, errStatus(codes.Unauthenticated, "unknown peer")
	}
	_, overTLS := pr.AuthInfo.(credentials.TLSInfo)
	addr := ""
	if pr.Addr != nil {
		addr = pr.Addr.String()
	}
	user, pass, hasCreds := credentialsFrom(ctx, overTLS)
	if s.cfg.Users == nil || s.cfg.Users.Empty() {
		if s.cfg.Lab && !overTLS && pr.Addr != nil && isLoopbackAddr(pr.Addr) {
			// Whatever name the client claims, nobody was authenticated.
			return principal{user: "lab", role: auth.RoleReadWrite, remote: addr}, nil
		}
		s.rl.Warn("gNMI access refused: no users configured", "user", user, "remote", addr)
		return principal{}, errStatus(codes.Unauthenticated, "no users are configured on this agent: add one with `spiagent user add NAME --role read-only|read-write`")
	}
	if !hasCreds || user == "" {
		s.rl.Warn("gNMI access refused: no credentials", "remote", addr)
		return principal{}, errStatus(codes.Unauthenticated, "missing credentials: send username and password metadata")
	}
	role, err := s.cfg.Users.Login(pr.Addr, user, pass)
	var be *auth.BackoffError
	switch {
	case errors.As(err, &be):
		s.rl.Warn("gNMI login refused: too many failures", "user", user, "remote", addr, "retry_in", be.Retry.Round(time.Second), "busy", be.Busy)
		return principal{}, errStatus(codes.Unauthenticated, "%s", strings.TrimPrefix(be.Error(), "auth: "))
	case errors.Is(err, auth.ErrBadCredentials), errors.Is(err, auth.ErrNoUsers):
		s.rl.Warn("gNMI authentication failed", "user", user, "remote", addr)
		return principal{}, errStatus(codes.Unauthenticated, "bad username or password")
	case err != nil:
		s.log.Error("gNMI authentication error", "user", user, "err", err)
		return principal{}, errStatus(codes.Internal, "authentication unavailable")
	}
	return principal{user: user, role: role, remote: addr, tracked: true}, nil
}

// requireWrite refuses callers without the read-write role.
func requireWrite(ctx context.Context) error {
	p := principalFrom(ctx)
	if p.role != auth.RoleReadWrite {
		return errStatus(codes.PermissionDenied, "user %q has role %s: Set needs read-write", p.user, p.role)
	}
	return nil
}

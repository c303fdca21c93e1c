package gnmi

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/spiagent/spiagent/agent/auth"
)

// principal is an authenticated client.
type principal struct {
	user string
	role auth.Role
}

type principalKey struct{}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	p, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return h(context.WithValue(ctx, principalKey{}, p), req)
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a authedStream) Context() context.Context { return a.ctx }

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	p, err := s.authenticate(ss.Context())
	if err != nil {
		return err
	}
	return h(srv, authedStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), principalKey{}, p)})
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

// authenticate checks the caller's credentials against the users file.
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
			if user == "" {
				user = "lab"
			}
			return principal{user: user, role: auth.RoleReadWrite}, nil
		}
		s.log.Warn("gNMI access refused: no users configured", "user", user, "remote", addr)
		return principal{}, errStatus(codes.Unauthenticated, "no users are configured on this agent: add one with `spiagent user add NAME --role read-only|read-write`")
	}
	if !hasCreds || user == "" {
		return principal{}, errStatus(codes.Unauthenticated, "missing credentials: send username and password metadata")
	}
	role, err := s.cfg.Users.Authenticate(user, pass)
	switch {
	case errors.Is(err, auth.ErrBadCredentials), errors.Is(err, auth.ErrNoUsers):
		s.log.Warn("gNMI authentication failed", "user", user, "remote", addr)
		return principal{}, errStatus(codes.Unauthenticated, "bad username or password")
	case err != nil:
		s.log.Error("gNMI authentication error", "user", user, "err", err)
		return principal{}, errStatus(codes.Internal, "authentication unavailable")
	}
	return principal{user: user, role: role}, nil
}

// requireWrite refuses callers without the read-write role.
func requireWrite(ctx context.Context) error {
	p := principalFrom(ctx)
	if p.role != auth.RoleReadWrite {
		return errStatus(codes.PermissionDenied, "user %q has role %s: Set needs read-write", p.user, p.role)
	}
	return nil
}

// Package netconf is the agent's NETCONF server (RFC 6241) over SSH
// (RFC 6242): base:1.0 and base:1.1 framing, the running and candidate
// datastores over the config store, state from the telemetry tree, subtree
// filtering, and the model's clear-crypto-sa RPC. XML is encoded and decoded
// by walking the generated schema (gen.SchemaTree), never by hand per node.
//
// It must not know about the engines (ike, ipsec): it sees the config store,
// the state tree and the gnmi.Operations interface only. Commits are whole
// store transactions: the candidate replaces the running config at once.
package netconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/confirm"
	"github.com/spiagent/spiagent/agent/dslock"
	"github.com/spiagent/spiagent/agent/gnmi"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/store"
)

// Defaults of Config's limits.
const (
	DefaultMaxSessions    = 16
	DefaultMaxMessage     = 64 << 20
	DefaultIdleTimeout    = 30 * time.Minute
	defaultHandshakeLimit = 30 * time.Second
)

// Config configures a Server.
type Config struct {
	Store   *store.Store    // the running config (required)
	State   *telemetry.Tree // operational state (required)
	Users   *auth.Users     // password check and roles (required)
	HostKey ssh.Signer      // SSH host key (required)
	Ops     gnmi.Operations // clear-crypto-sa; nil: the RPC fails
	// RunningLock, shared with the gNMI server, makes a <lock> on running
	// hold off gNMI Set too (RFC 6241 §7.5). Nil: NETCONF locks only.
	RunningLock *dslock.Lock
	// Confirm is the datastore's one confirmed commit, shared with the gNMI
	// server. Nil: the server makes its own over Store and rolls a pending
	// commit back when Serve returns.
	Confirm *confirm.Manager
	Log     *slog.Logger

	MaxSessions int           // concurrent NETCONF sessions
	MaxMessage  int           // bytes of one received message
	IdleTimeout time.Duration // a session receiving nothing this long is closed
}

// Server serves NETCONF over SSH.
type Server struct {
	cfg    Config
	log    *slog.Logger
	ssh    *ssh.ServerConfig
	nextID atomic.Uint32
	active atomic.Int32 // NETCONF sessions
	conns  atomic.Int32 // SSH connections, authenticated or not

	mu        sync.Mutex // the datastores: candidate, locks, sessions
	candidate *node      // nil: the candidate equals running
	candBase  *node      // the running tree the candidate was derived from
	locks     map[string]uint32
	sessions  map[uint32]*session
	// ownConfirm: Confirm was made here, so Serve shuts it down.
	ownConfirm bool

	runMu    sync.Mutex
	runCache *cachedTree
}

type cachedTree struct {
	id   uint64
	tree *node
}

// New checks cfg and returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.State == nil || cfg.Users == nil || cfg.HostKey == nil {
		return nil, errors.New("netconf: Store, State, Users and HostKey are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	s := &Server{cfg: cfg, log: cfg.Log.With("server", "netconf"), locks: map[string]uint32{}, sessions: map[uint32]*session{}}
	if s.cfg.Confirm == nil {
		s.cfg.Confirm = confirm.New(cfg.Store, confirm.Options{Log: cfg.Log})
		s.ownConfirm = true
	}
	s.ssh = &ssh.ServerConfig{
		PasswordCallback: s.password,
		ServerVersion:    "SSH-2.0-spiagent",
	}
	s.ssh.AddHostKey(cfg.HostKey)
	return s, nil
}

// password checks a login against the users file; the role rides in the
// connection's permissions.
func (s *Server) password(c ssh.ConnMetadata, pass []byte) (*ssh.Permissions, error) {
	role, err := s.cfg.Users.Authenticate(c.User(), string(pass))
	if err != nil {
		s.log.Warn("NETCONF authentication failed", "user", c.User(), "remote", c.RemoteAddr().String())
		return nil, fmt.Errorf("netconf: bad username or password")
	}
	return &ssh.Permissions{Extensions: map[string]string{"role": role.String()}}, nil
}

// Serve accepts connections on lis until ctx is done; then it closes lis and
// every session.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.log.Info("NETCONF listening", "addr", lis.Addr().String())
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() {
		lis.Close()
		s.mu.Lock()
		for _, ss := range s.sessions {
			ss.close()
		}
		s.mu.Unlock()
	})
	defer stop()
	for {
		nc, err := lis.Accept()
		if err != nil {
			wg.Wait()
			if s.ownConfirm {
				sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				s.cfg.Confirm.Shutdown(sctx)
				cancel()
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("netconf: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, nc)
		}()
	}
}

func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	// Connections that have not (yet) got a session are bounded too.
	if n := s.conns.Add(1); int(n) > 2*s.cfg.MaxSessions+8 {
		s.conns.Add(-1)
		s.log.Warn("NETCONF connection refused: too many connections", "remote", nc.RemoteAddr().String())
		return
	}
	defer s.conns.Add(-1)
	// Shutting down ends connections without a session too.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	_ = nc.SetDeadline(time.Now().Add(defaultHandshakeLimit))
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.ssh)
	if err != nil {
		s.log.Debug("NETCONF SSH handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		return
	}
	defer conn.Close()
	_ = nc.SetDeadline(time.Time{})
	go ssh.DiscardRequests(reqs)
	role, _ := auth.ParseRole(conn.Permissions.Extensions["role"])
	var wg sync.WaitGroup
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveChannel(ctx, conn, ch, creqs, conn.User(), role)
		}()
	}
	wg.Wait()
}

// serveChannel waits for the "netconf" subsystem request and runs a
// session on the channel.
func (s *Server) serveChannel(ctx context.Context, conn *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request, user string, role auth.Role) {
	defer ch.Close()
	started := false
	for req := range reqs {
		if req.Type != "subsystem" || started {
			_ = req.Reply(false, nil)
			continue
		}
		var sub struct{ Name string }
		if err := ssh.Unmarshal(req.Payload, &sub); err != nil || sub.Name != "netconf" {
			_ = req.Reply(false, nil)
			continue
		}
		if n := s.active.Add(1); int(n) > s.cfg.MaxSessions {
			s.active.Add(-1)
			s.log.Warn("NETCONF session refused: too many sessions", "user", user, "max", s.cfg.MaxSessions)
			_ = req.Reply(false, nil)
			continue
		}
		_ = req.Reply(true, nil)
		started = true
		go ssh.DiscardRequests(reqs)
		ss := s.newSession(ctx, ch, user, role)
		ss.run()
		s.active.Add(-1)
		// One NETCONF session per SSH connection: ending it ends the transport.
		conn.Close()
		return
	}
}

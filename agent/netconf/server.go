// Package netconf is the agent's NETCONF server (RFC 6241) over SSH
// (RFC 6242): base:1.0 and base:1.1 framing, the running and candidate
// datastores over the config store, state from the telemetry tree, subtree
// filtering, and the model's clear-crypto-sa RPC. The datastores are trees of
// the generated structs (package gen): running is the store's snapshot, the
// candidate a copy-on-write version of it (ytree.Writer). XML is encoded and
// decoded straight between those trees and the wire, by walking ytree's
// schema tables, never by hand per node and never through JSON.
//
// It must not know about the engines (ike, ipsec): it sees the config store,
// the state tree and the gnmi.Operations interface only. Commits are whole
// store transactions: the candidate's changes reach running all at once.
package netconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/confirm"
	"github.com/spiagent/spiagent/agent/connlimit"
	"github.com/spiagent/spiagent/agent/dslock"
	"github.com/spiagent/spiagent/agent/gnmi"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/internal/ratelog"
	"github.com/spiagent/spiagent/store"
)

// Defaults of Config's limits.
const (
	DefaultMaxSessions = 16
	// DefaultMaxMessage is 48 MiB, three times the largest config the
	// benchmarks use as XML (testconfig.BigJSON(50000): 14.8 MB).
	DefaultMaxMessage = 48 << 20
	// DefaultMaxBuffered bounds the incoming messages of all sessions
	// together: four messages of the largest size.
	DefaultMaxBuffered    = 4 * DefaultMaxMessage
	DefaultIdleTimeout    = 30 * time.Minute
	DefaultMaxConns       = 64
	DefaultMaxPerSource   = 8
	DefaultAuthTimeout    = 10 * time.Second // TCP accept to SSH login
	DefaultChannelTimeout = 10 * time.Second // SSH login to the netconf subsystem
	// overLimitLinger is how long a session ended for a too large message
	// keeps its connection for the client to read why.
	overLimitLinger = 2 * time.Second
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
	MaxBuffered int64         // bytes the received messages of all sessions may hold together
	IdleTimeout time.Duration // a session receiving nothing this long is closed
	// Conns bounds the SSH connections in total and per source, and closes
	// those that have not logged in within its AuthTimeout (see package
	// connlimit); ChannelTimeout closes a logged-in connection that has not
	// started the netconf subsystem in that time.
	Conns          connlimit.Limits
	ChannelTimeout time.Duration
}

// Server serves NETCONF over SSH.
type Server struct {
	cfg    Config
	log    *slog.Logger
	ssh    *ssh.ServerConfig
	nextID atomic.Uint32
	active atomic.Int32 // NETCONF sessions
	budget *budget      // memory of the messages being received
	rl     *ratelog.Limiter
	edge   atomic.Pointer[connlimit.Listener]

	mu        sync.Mutex  // the datastores: candidate, locks, sessions
	candidate *gen.Device // nil: the candidate equals running
	candBase  *gen.Device // the running tree the candidate was derived from
	locks     map[string]uint32
	sessions  map[uint32]*session
	// ownConfirm: Confirm was made here, so Serve shuts it down.
	ownConfirm bool
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
	if cfg.MaxBuffered <= 0 {
		cfg.MaxBuffered = max(DefaultMaxBuffered, int64(cfg.MaxMessage+len(endOfMessage)))
	}
	if cfg.MaxBuffered < int64(cfg.MaxMessage+len(endOfMessage)) {
		return nil, fmt.Errorf("netconf: the memory for all sessions' messages (%d bytes) is below one message (%d bytes)", cfg.MaxBuffered, cfg.MaxMessage)
	}
	if cfg.Conns.MaxConns <= 0 {
		cfg.Conns.MaxConns = DefaultMaxConns
	}
	if cfg.Conns.MaxPerSource <= 0 {
		cfg.Conns.MaxPerSource = DefaultMaxPerSource
	}
	if cfg.Conns.AuthTimeout <= 0 {
		cfg.Conns.AuthTimeout = DefaultAuthTimeout
	}
	if cfg.ChannelTimeout <= 0 {
		cfg.ChannelTimeout = DefaultChannelTimeout
	}
	s := &Server{cfg: cfg, log: cfg.Log.With("server", "netconf"), locks: map[string]uint32{}, sessions: map[uint32]*session{}}
	s.budget = newBudget(cfg.MaxBuffered)
	s.rl = ratelog.New(s.log, 0, 0)
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

// password checks a login against the users file, through the login
// backoff shared with gNMI; the role rides in the connection's permissions.
func (s *Server) password(c ssh.ConnMetadata, pass []byte) (*ssh.Permissions, error) {
	role, err := s.cfg.Users.Login(c.RemoteAddr(), c.User(), string(pass))
	var be *auth.BackoffError
	switch {
	case errors.As(err, &be):
		s.rl.Warn("NETCONF login refused: too many failures", "user", c.User(), "remote", c.RemoteAddr().String(), "retry_in", be.Retry.Round(time.Second), "busy", be.Busy)
		return nil, fmt.Errorf("netconf: %s", strings.TrimPrefix(be.Error(), "auth: "))
	case err != nil:
		s.rl.Warn("NETCONF authentication failed", "user", c.User(), "remote", c.RemoteAddr().String())
		return nil, fmt.Errorf("netconf: bad username or password")
	}
	return &ssh.Permissions{Extensions: map[string]string{"role": role.String()}}, nil
}

// Serve accepts connections on lis until ctx is done; then it closes lis and
// every session. Accept errors (such as running out of file descriptors)
// are retried, never fatal.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.log.Info("NETCONF listening", "addr", lis.Addr().String(), "max_sessions", s.cfg.MaxSessions,
		"max_conns", s.cfg.Conns.MaxConns, "max_conns_per_source", s.cfg.Conns.MaxPerSource, "auth_timeout", s.cfg.Conns.AuthTimeout,
		"channel_timeout", s.cfg.ChannelTimeout, "max_message", s.cfg.MaxMessage, "max_buffered", s.cfg.MaxBuffered)
	lis = s.wrap(lis)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	// Removing a user (or its role) ends its sessions.
	go s.cfg.Users.Watch(watchCtx, 0)
	defer s.rl.Flush()
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

// wrap puts the connection limits around lis (once).
func (s *Server) wrap(lis net.Listener) net.Listener {
	cl, ok := lis.(*connlimit.Listener)
	if !ok {
		cl = connlimit.Wrap(lis, s.cfg.Conns, "NETCONF", s.log)
	}
	s.edge.Store(cl)
	return cl
}

func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	// Shutting down ends connections without a session too.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	// The SSH handshake and login; connlimit closes the connection at the
	// same deadline.
	_ = nc.SetDeadline(time.Now().Add(s.cfg.Conns.AuthTimeout))
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.ssh)
	if err != nil {
		s.log.Debug("NETCONF SSH handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		return
	}
	defer conn.Close()
	_ = nc.SetDeadline(time.Time{})
	if lc, ok := nc.(*connlimit.Conn); ok {
		lc.Authenticated()
	}
	// A logged-in connection must start its session soon: it holds a
	// place that the limits count.
	var started atomic.Bool
	noChannel := time.AfterFunc(s.cfg.ChannelTimeout, func() {
		if !started.Load() {
			s.rl.Info("NETCONF connection closed: no netconf session started in time", "user", conn.User(), "remote", nc.RemoteAddr().String(), "channel_timeout", s.cfg.ChannelTimeout)
			conn.Close()
		}
	})
	defer noChannel.Stop()
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
			s.serveChannel(ctx, conn, ch, creqs, conn.User(), role, &started)
		}()
	}
	wg.Wait()
}

// serveChannel waits for the "netconf" subsystem request and runs a
// session on the channel.
func (s *Server) serveChannel(ctx context.Context, conn *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request, user string, role auth.Role, started *atomic.Bool) {
	defer ch.Close()
	running := false
	for req := range reqs {
		if req.Type != "subsystem" || running {
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
			s.rl.Warn("NETCONF session refused: too many sessions", "user", user, "max", s.cfg.MaxSessions)
			_ = req.Reply(false, nil)
			continue
		}
		_ = req.Reply(true, nil)
		started.Store(true)
		running = true
		go ssh.DiscardRequests(reqs)
		ss := s.newSession(ctx, ch, user, role)
		ss.run()
		s.active.Add(-1)
		if ss.overLimit {
			// The client may still be sending the message that went over:
			// closing now would reset the connection and lose the
			// rpc-error that says why. Give it a moment to read and leave.
			t := time.AfterFunc(overLimitLinger, func() { conn.Close() })
			_ = conn.Wait()
			t.Stop()
		}
		// One NETCONF session per SSH connection: ending it ends the transport.
		conn.Close()
		return
	}
}

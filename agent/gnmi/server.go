// Package gnmi is spiagent's gNMI server (gNMI specification 0.10.0):
// Capabilities, Get, transactional Set and Subscribe over TLS with
// username/password authentication. It is a thin edge: configuration comes
// from and goes to the store (one Set is one store transaction), operational
// state comes from the telemetry tree, and the model's clear-crypto-sa RPC
// is dispatched to an Operations implementation. gRPC status codes are made
// here and nowhere else.
//
// It must not know about the engines (ike, ipsec): it sees the config
// store, the state tree and the Operations interface only.
package gnmi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/confirm"
	"github.com/spiagent/spiagent/agent/connlimit"
	"github.com/spiagent/spiagent/agent/dslock"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/internal/ratelog"
	"github.com/spiagent/spiagent/store"
)

// Version is the gNMI specification version the server implements.
const Version = "0.10.0"

// Defaults of Config fields left zero.
const (
	DefaultSubscriberQueue   = 1024
	DefaultMinSampleInterval = 100 * time.Millisecond
	DefaultTargetSample      = 10 * time.Second
	// DefaultMaxMsgSize bounds the messages the server sends (a Get of a
	// large config with its state).
	DefaultMaxMsgSize = 256 << 20
	// DefaultMaxRecvMsgSize bounds a received message: 32 MiB, three times
	// the largest config the benchmarks push (testconfig.BigJSON(50000),
	// 50,000 crypto-map entries and keys: 9.9 MB of JSON_IETF).
	DefaultMaxRecvMsgSize = 32 << 20
	DefaultMaxStreams     = 32 // concurrent RPCs per connection
	DefaultMaxConns       = 256
	DefaultMaxPerSource   = 32
	DefaultAuthTimeout    = 10 * time.Second
	DefaultHandshake      = 5 * time.Second
	DefaultIdleTimeout    = 5 * time.Minute
	// maxHeaderList bounds the request headers read before authentication
	// (grpc-go's default is 16 MiB).
	maxHeaderList = 64 << 10
)

// ClearRequest is the input of the model's clear-crypto-sa RPC.
type ClearRequest struct {
	Peer      string // only SAs with this peer ("" = any)
	CryptoMap string // only SAs of this crypto map ("" = any)
	ISAKMP    bool   // also delete IKE SAs (clear crypto isakmp)
	NoNotify  bool   // delete without DELETE notifications
}

// ClearResult is the output of clear-crypto-sa.
type ClearResult struct {
	IPsecSAsCleared uint32
	IKESAsCleared   uint32
}

// Operations runs the model's RPCs; the agent implements it over its engines.
type Operations interface {
	ClearSA(ctx context.Context, req ClearRequest) (ClearResult, error)
}

// Config configures a Server.
type Config struct {
	Store *store.Store    // the running config (required)
	State *telemetry.Tree // operational state (required)
	// Users authenticates clients. Nil or empty means nobody gets in, except
	// in Lab mode.
	Users *auth.Users
	// Lab lets unauthenticated clients in with read-write access when no
	// users are configured, but only over plaintext from a loopback address.
	Lab bool
	// TLS is the server's TLS configuration; nil serves plaintext, which
	// Serve accepts on a loopback address only unless InsecureForce is set.
	TLS           *tls.Config
	InsecureForce bool
	Ops           Operations // clear-crypto-sa; nil: the RPC is Unavailable
	// RunningLock, shared with the NETCONF server: while a NETCONF session
	// holds a lock on running, Set is refused (FailedPrecondition).
	RunningLock *dslock.Lock
	// Confirm is the datastore's one confirmed commit, shared with the
	// NETCONF server. Nil: the server makes its own over Store and rolls a
	// pending commit back when Serve returns.
	Confirm *confirm.Manager
	Log     *slog.Logger

	SubscriberQueue   int           // per-subscriber queue of change batches
	MinSampleInterval time.Duration // floor of SAMPLE intervals
	TargetSample      time.Duration // SAMPLE interval of counters in TARGET_DEFINED
	Now               func() time.Time

	// The connection edge (zero fields: the defaults above). Conns bounds
	// connections in total and per source and closes those that have not
	// authenticated (sent an RPC with good credentials) within its
	// AuthTimeout; see package connlimit.
	Conns            connlimit.Limits
	MaxRecvMsgSize   int           // bytes of one received message
	MaxStreams       uint32        // concurrent RPCs per connection
	HandshakeTimeout time.Duration // the TLS handshake
	IdleTimeout      time.Duration // a connection with no RPC this long is closed
}

// Server is a gNMI server. Create it with New and run it with Serve.
type Server struct {
	gpb.UnimplementedGNMIServer

	cfg Config
	log *slog.Logger

	redacted atomic.Pointer[redactedConfig]
	hub      *hub
	rl       *ratelog.Limiter // log lines outsiders can trigger
	edge     atomic.Pointer[connlimit.Listener]
	// ownConfirm: Confirm was made here, so Serve shuts it down.
	ownConfirm bool
}

// redactedConfig caches the redacted copy of one store snapshot.
type redactedConfig struct {
	id   uint64
	root *gen.Device
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.State == nil {
		return nil, errors.New("gnmi: Config.Store and Config.State are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.SubscriberQueue <= 0 {
		cfg.SubscriberQueue = DefaultSubscriberQueue
	}
	if cfg.MinSampleInterval <= 0 {
		cfg.MinSampleInterval = DefaultMinSampleInterval
	}
	if cfg.TargetSample <= 0 {
		cfg.TargetSample = DefaultTargetSample
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.setEdgeDefaults()
	s := &Server{cfg: cfg, log: cfg.Log.With("component", "gnmi")}
	s.rl = ratelog.New(s.log, 0, 0)
	if s.cfg.Confirm == nil {
		s.cfg.Confirm = confirm.New(cfg.Store, confirm.Options{Log: cfg.Log})
		s.ownConfirm = true
	}
	s.hub = newHub(s)
	return s, nil
}

func (c *Config) setEdgeDefaults() {
	if c.Conns.MaxConns <= 0 {
		c.Conns.MaxConns = DefaultMaxConns
	}
	if c.Conns.MaxPerSource <= 0 {
		c.Conns.MaxPerSource = DefaultMaxPerSource
	}
	if c.Conns.AuthTimeout <= 0 {
		c.Conns.AuthTimeout = DefaultAuthTimeout
	}
	if c.MaxRecvMsgSize <= 0 {
		c.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshake
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
}

// grpcServer returns a grpc.Server with the gNMI service, the
// authentication tap and interceptors and the edge's limits; lis is the
// listener it will serve, told which connections authenticate.
func (s *Server) grpcServer(lis *connlimit.Listener) *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.InTapHandle(s.tap(lis)),
		grpc.UnaryInterceptor(s.unaryAuth),
		grpc.StreamInterceptor(s.streamAuth),
		grpc.MaxRecvMsgSize(s.cfg.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(DefaultMaxMsgSize),
		grpc.MaxConcurrentStreams(s.cfg.MaxStreams),
		grpc.MaxHeaderListSize(maxHeaderList),
		grpc.ConnectionTimeout(s.cfg.HandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: s.cfg.IdleTimeout}),
	}
	if s.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.cfg.TLS)))
	}
	g := grpc.NewServer(opts...)
	gpb.RegisterGNMIServer(g, s)
	return g
}

// Serve serves gNMI on lis until ctx is done, then stops gracefully (open
// subscriptions are ended). A plaintext server refuses a non-loopback
// listener unless Config.InsecureForce is set.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if s.cfg.TLS == nil && !s.cfg.InsecureForce && !isLoopbackAddr(lis.Addr()) {
		return fmt.Errorf("gnmi: refusing plaintext gNMI on %s: not a loopback address (use TLS, or force it)", lis.Addr())
	}
	hubCtx, stopHub := context.WithCancel(ctx)
	defer stopHub()
	go s.hub.run(hubCtx)
	if s.cfg.Users != nil {
		// Removing a user (or its role) ends its open RPCs and streams.
		go s.cfg.Users.Watch(hubCtx, 0)
	}
	defer s.rl.Flush()

	cl := connlimit.Wrap(lis, s.cfg.Conns, "gNMI", s.log)
	s.edge.Store(cl)
	g := s.grpcServer(cl)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(cl) }()
	s.log.Info("gNMI server listening", "addr", lis.Addr().String(), "tls", s.cfg.TLS != nil,
		"client_cert", s.cfg.TLS != nil && s.cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert, "lab", s.cfg.Lab,
		"max_conns", s.cfg.Conns.MaxConns, "max_conns_per_source", s.cfg.Conns.MaxPerSource, "auth_timeout", s.cfg.Conns.AuthTimeout,
		"max_recv_msg", s.cfg.MaxRecvMsgSize, "max_streams", s.cfg.MaxStreams, "idle_timeout", s.cfg.IdleTimeout)
	select {
	case err := <-errc:
		return fmt.Errorf("gnmi: serve: %w", err)
	case <-ctx.Done():
	}
	stopHub()
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		g.Stop()
	}
	if s.ownConfirm {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s.cfg.Confirm.Shutdown(sctx)
		cancel()
	}
	return nil
}

func isLoopbackAddr(a net.Addr) bool {
	switch x := a.(type) {
	case *net.TCPAddr:
		return x.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Capabilities lists the models, the encodings and the gNMI version.
func (s *Server) Capabilities(ctx context.Context, req *gpb.CapabilityRequest) (*gpb.CapabilityResponse, error) {
	models := make([]*gpb.ModelData, len(gen.ΓModelData))
	for i, m := range gen.ΓModelData {
		models[i] = &gpb.ModelData{Name: m.Name, Organization: m.Organization, Version: modelRevision(m.Name)}
	}
	return &gpb.CapabilityResponse{
		SupportedModels:    models,
		SupportedEncodings: []gpb.Encoding{gpb.Encoding_JSON, gpb.Encoding_JSON_IETF, gpb.Encoding_PROTO},
		GNMIVersion:        Version,
	}, nil
}

// modelRevision is the revision date of the YANG modules (both are released
// together; see yang/).
func modelRevision(string) string { return "2026-11-27" }

// now is the current time in nanoseconds since the epoch.
func (s *Server) now() int64 { return s.cfg.Now().UnixNano() }

// errStatus makes a status with a formatted message.
func errStatus(c codes.Code, format string, args ...any) error {
	return status.Errorf(c, format, args...)
}

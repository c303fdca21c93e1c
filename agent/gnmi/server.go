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
	"google.golang.org/grpc/status"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/confirm"
	"github.com/spiagent/spiagent/agent/dslock"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/store"
)

// Version is the gNMI specification version the server implements.
const Version = "0.10.0"

// Defaults of Config fields left zero.
const (
	DefaultSubscriberQueue   = 1024
	DefaultMinSampleInterval = 100 * time.Millisecond
	DefaultTargetSample      = 10 * time.Second
	DefaultMaxMsgSize        = 256 << 20
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
}

// Server is a gNMI server. Create it with New and run it with Serve.
type Server struct {
	gpb.UnimplementedGNMIServer

	cfg Config
	log *slog.Logger

	redacted atomic.Pointer[redactedConfig]
	hub      *hub
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
	s := &Server{cfg: cfg, log: cfg.Log.With("component", "gnmi")}
	if s.cfg.Confirm == nil {
		s.cfg.Confirm = confirm.New(cfg.Store, confirm.Options{Log: cfg.Log})
		s.ownConfirm = true
	}
	s.hub = newHub(s)
	return s, nil
}

// grpcServer returns a grpc.Server with the gNMI service and the
// authentication interceptors registered.
func (s *Server) grpcServer() *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.UnaryInterceptor(s.unaryAuth),
		grpc.StreamInterceptor(s.streamAuth),
		grpc.MaxRecvMsgSize(DefaultMaxMsgSize),
		grpc.MaxSendMsgSize(DefaultMaxMsgSize),
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

	g := s.grpcServer()
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	s.log.Info("gNMI server listening", "addr", lis.Addr().String(), "tls", s.cfg.TLS != nil,
		"client_cert", s.cfg.TLS != nil && s.cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert, "lab", s.cfg.Lab)
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

package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"time"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/connlimit"
	"github.com/spiagent/spiagent/agent/gnmi"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/store"
)

// gnmiFlags are the gNMI server's flags of `spiagent run`.
type gnmiFlags struct {
	addr          string
	certFile      string
	keyFile       string
	clientCA      string
	usersFile     string
	insecure      bool
	insecureForce bool
	lab           bool

	conns      connlimit.Limits
	maxRecvMsg int
	maxStreams uint
	handshake  time.Duration
	idle       time.Duration
}

func addGNMIFlags(fs *flag.FlagSet) *gnmiFlags {
	f := &gnmiFlags{}
	fs.StringVar(&f.addr, "gnmi-addr", ":9339", "gNMI listen address (9339 is the IANA gNMI port); empty disables gNMI")
	fs.StringVar(&f.certFile, "gnmi-cert", "", "TLS certificate (PEM); default: a self-signed one generated in the data dir")
	fs.StringVar(&f.keyFile, "gnmi-key", "", "TLS private key (PEM) of --gnmi-cert")
	fs.StringVar(&f.clientCA, "client-ca", "", "require client certificates signed by a CA in this PEM file")
	fs.StringVar(&f.usersFile, "users-file", "", "users file (spiagent user add); default DATA-DIR/users")
	fs.BoolVar(&f.insecure, "insecure", false, "serve gNMI in plaintext (loopback addresses only, unless --insecure-force)")
	fs.BoolVar(&f.insecureForce, "insecure-force", false, "allow --insecure on a non-loopback address")
	fs.BoolVar(&f.lab, "lab", false, "lab mode: with no users file, let plaintext loopback clients in unauthenticated (read-write)")
	fs.IntVar(&f.maxRecvMsg, "gnmi-max-recv-msg", gnmi.DefaultMaxRecvMsgSize, "largest gNMI request message accepted, in bytes")
	fs.UintVar(&f.maxStreams, "gnmi-max-streams", gnmi.DefaultMaxStreams, "concurrent gNMI RPCs per connection (more wait in the client)")
	fs.IntVar(&f.conns.MaxConns, "gnmi-max-conns", gnmi.DefaultMaxConns, "open gNMI connections, authenticated or not")
	fs.IntVar(&f.conns.MaxPerSource, "gnmi-max-conns-per-source", gnmi.DefaultMaxPerSource, "open gNMI connections from one address (IPv6: one /64)")
	fs.DurationVar(&f.conns.AuthTimeout, "gnmi-auth-timeout", gnmi.DefaultAuthTimeout, "close a gNMI connection that has not made an authenticated RPC this long after it was accepted")
	fs.DurationVar(&f.handshake, "gnmi-handshake-timeout", gnmi.DefaultHandshake, "close a gNMI connection whose TLS handshake takes longer")
	fs.DurationVar(&f.idle, "gnmi-idle-timeout", gnmi.DefaultIdleTimeout, "close a gNMI connection with no RPC for this long (clients reconnect)")
	return f
}

// usersPath is the users file: --users-file, or DATA-DIR/users.
func usersPath(flagVal, dataDir string) string {
	if flagVal != "" {
		return flagVal
	}
	return filepath.Join(dataDir, "users")
}

// listenAddr decides where to listen: a plaintext server without
// --insecure-force binds to loopback only (":9339" becomes
// "127.0.0.1:9339"; a non-loopback host is refused).
func (f *gnmiFlags) listenAddr() (string, error) {
	if !f.insecure || f.insecureForce {
		return f.addr, nil
	}
	host, port, err := net.SplitHostPort(f.addr)
	if err != nil {
		return "", fmt.Errorf("--gnmi-addr %q: %w", f.addr, err)
	}
	if host == "" {
		return net.JoinHostPort("127.0.0.1", port), nil
	}
	if host == "localhost" {
		return net.JoinHostPort("127.0.0.1", port), nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("--insecure serves plaintext: %s is not a loopback address (use TLS, or --insecure-force)", host)
	}
	return f.addr, nil
}

// startGNMI starts the gNMI server; the returned function waits for it to
// stop after ctx is done.
func startGNMI(ctx context.Context, log *slog.Logger, st *store.Store, tel *telemetry.Tree, ops gnmi.Operations, nb northbound, dataDir string, f *gnmiFlags) (func() error, error) {
	if f.addr == "" {
		log.Info("gNMI disabled (--gnmi-addr \"\")")
		return func() error { return nil }, nil
	}
	if f.lab && !f.insecure {
		return nil, fmt.Errorf("--lab needs --insecure: lab mode is plaintext on loopback only")
	}
	users := nb.users
	if users == nil {
		var err error
		if users, err = auth.OpenUsers(usersPath(f.usersFile, dataDir)); err != nil {
			return nil, err
		}
	}
	if users.Empty() {
		if f.lab {
			log.Warn("no gNMI users: lab mode lets loopback clients in without authentication", "users_file", users.Path())
		} else {
			log.Warn("no gNMI users: every gNMI request will be refused until one is added with `spiagent user add`", "users_file", users.Path())
		}
	}
	if f.maxStreams > math.MaxUint32 {
		return nil, fmt.Errorf("--gnmi-max-streams %d is too large", f.maxStreams)
	}
	cfg := gnmi.Config{Store: st, State: tel, Users: users, Lab: f.lab, InsecureForce: f.insecureForce, Ops: ops, RunningLock: nb.lock, Confirm: nb.confirm, Log: log,
		Conns: f.conns, MaxRecvMsgSize: f.maxRecvMsg, MaxStreams: uint32(f.maxStreams), HandshakeTimeout: f.handshake, IdleTimeout: f.idle}
	if !f.insecure {
		cert, err := auth.LoadServerCert(f.certFile, f.keyFile, dataDir)
		if err != nil {
			return nil, err
		}
		if cert.Generated {
			log.Info("generated a self-signed gNMI certificate", "file", cert.CertFile, "sha256", cert.Fingerprint)
		} else {
			log.Info("gNMI certificate", "file", cert.CertFile, "sha256", cert.Fingerprint)
		}
		if cfg.TLS, err = auth.ServerTLSConfig(cert, f.clientCA); err != nil {
			return nil, err
		}
	} else if f.clientCA != "" {
		return nil, fmt.Errorf("--client-ca needs TLS: drop --insecure")
	}
	addr, err := f.listenAddr()
	if err != nil {
		return nil, err
	}
	srv, err := gnmi.New(cfg)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gNMI listen: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	return func() error { return <-done }, nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/gnmi"
	"github.com/spiagent/spiagent/agent/netconf"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/store"
)

// netconfFlags are the NETCONF server's flags of `spiagent run`.
type netconfFlags struct {
	addr        string
	hostKey     string
	maxSessions int
	maxMessage  int
	idle        time.Duration
}

func addNETCONFFlags(fs *flag.FlagSet) *netconfFlags {
	f := &netconfFlags{}
	fs.StringVar(&f.addr, "netconf-addr", ":830", "NETCONF over SSH listen address (830 is the IANA netconf-ssh port); empty disables NETCONF")
	fs.StringVar(&f.hostKey, "netconf-host-key", "", "SSH host key of the NETCONF server; default DATA-DIR/"+netconf.HostKeyFile+" (generated on first start)")
	fs.IntVar(&f.maxSessions, "netconf-max-sessions", netconf.DefaultMaxSessions, "concurrent NETCONF sessions")
	fs.IntVar(&f.maxMessage, "netconf-max-message", netconf.DefaultMaxMessage, "largest NETCONF message accepted, in bytes")
	fs.DurationVar(&f.idle, "netconf-idle-timeout", netconf.DefaultIdleTimeout, "close NETCONF sessions idle this long")
	return f
}

// startNETCONF starts the NETCONF server; the returned function waits for it
// to stop after ctx is done. It shares the users file (and roles) with gNMI.
func startNETCONF(ctx context.Context, log *slog.Logger, st *store.Store, tel *telemetry.Tree, ops gnmi.Operations, nb northbound, dataDir string, usersFile string, f *netconfFlags) (func() error, error) {
	if f.addr == "" {
		log.Info("NETCONF disabled (--netconf-addr \"\")")
		return func() error { return nil }, nil
	}
	users, err := auth.OpenUsers(usersPath(usersFile, dataDir))
	if err != nil {
		return nil, err
	}
	keyPath := f.hostKey
	if keyPath == "" {
		keyPath = filepath.Join(dataDir, netconf.HostKeyFile)
	}
	key, generated, err := netconf.LoadHostKey(keyPath)
	if err != nil {
		return nil, err
	}
	fp := ssh.FingerprintSHA256(key.PublicKey())
	if generated {
		log.Info("generated a NETCONF SSH host key", "file", keyPath, "fingerprint", fp)
	} else {
		log.Info("NETCONF SSH host key", "file", keyPath, "fingerprint", fp)
	}
	srv, err := netconf.New(netconf.Config{
		Store: st, State: tel, Users: users, HostKey: key, Ops: ops, RunningLock: nb.lock, Confirm: nb.confirm, Log: log,
		MaxSessions: f.maxSessions, MaxMessage: f.maxMessage, IdleTimeout: f.idle,
	})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", f.addr)
	if err != nil {
		return nil, fmt.Errorf("NETCONF listen: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	return func() error { return <-done }, nil
}

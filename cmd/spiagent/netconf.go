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
	"github.com/spiagent/spiagent/agent/connlimit"
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
	maxBuffered int64
	idle        time.Duration
	conns       connlimit.Limits
	channel     time.Duration
}

func addNETCONFFlags(fs *flag.FlagSet) *netconfFlags {
	f := &netconfFlags{}
	fs.StringVar(&f.addr, "netconf-addr", ":830", "NETCONF over SSH listen address (830 is the IANA netconf-ssh port); empty disables NETCONF")
	fs.StringVar(&f.hostKey, "netconf-host-key", "", "SSH host key of the NETCONF server; default DATA-DIR/"+netconf.HostKeyFile+" (generated on first start)")
	fs.IntVar(&f.maxSessions, "netconf-max-sessions", netconf.DefaultMaxSessions, "concurrent NETCONF sessions")
	fs.IntVar(&f.maxMessage, "netconf-max-message", netconf.DefaultMaxMessage, "largest NETCONF message accepted, in bytes")
	fs.Int64Var(&f.maxBuffered, "netconf-max-buffered", netconf.DefaultMaxBuffered, "bytes the incoming NETCONF messages of all sessions may hold together (at least --netconf-max-message)")
	fs.DurationVar(&f.idle, "netconf-idle-timeout", netconf.DefaultIdleTimeout, "close NETCONF sessions idle this long")
	fs.IntVar(&f.conns.MaxConns, "netconf-max-conns", netconf.DefaultMaxConns, "open NETCONF (SSH) connections, logged in or not")
	fs.IntVar(&f.conns.MaxPerSource, "netconf-max-conns-per-source", netconf.DefaultMaxPerSource, "open NETCONF connections from one address (IPv6: one /64)")
	fs.DurationVar(&f.conns.AuthTimeout, "netconf-auth-timeout", netconf.DefaultAuthTimeout, "close a NETCONF connection not logged in this long after it was accepted")
	fs.DurationVar(&f.channel, "netconf-channel-timeout", netconf.DefaultChannelTimeout, "close a logged-in NETCONF connection that has not started the netconf subsystem in this time")
	return f
}

// startNETCONF starts the NETCONF server; the returned function waits for it
// to stop after ctx is done. It shares the users file (and roles) with gNMI.
func startNETCONF(ctx context.Context, log *slog.Logger, st *store.Store, tel *telemetry.Tree, ops gnmi.Operations, nb northbound, dataDir string, usersFile string, f *netconfFlags) (func() error, error) {
	if f.addr == "" {
		log.Info("NETCONF disabled (--netconf-addr \"\")")
		return func() error { return nil }, nil
	}
	users := nb.users
	if users == nil {
		var err error
		if users, err = auth.OpenUsers(usersPath(usersFile, dataDir)); err != nil {
			return nil, err
		}
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
		MaxSessions: f.maxSessions, MaxMessage: f.maxMessage, MaxBuffered: f.maxBuffered, IdleTimeout: f.idle,
		Conns: f.conns, ChannelTimeout: f.channel,
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

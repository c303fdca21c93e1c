// Command spiagent is the spiagent daemon: a model-driven IKEv1/IPsec agent.
//
//	spiagent run --data-dir DIR        run the agent with the config persisted in DIR
//	spiagent validate FILE.json        check a JSON_IETF config file against the model
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spiagent/spiagent/agent"
	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/confirm"
	"github.com/spiagent/spiagent/agent/dslock"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/agent/validators"
	"github.com/spiagent/spiagent/store"
)

// exitUsage is the exit status for a bad command line.
const exitUsage = 2

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "user":
		return cmdUser(args[1:], stdin, stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "spiagent: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  spiagent run --data-dir DIR [flags]   run the agent (spiagent run -h lists the flags)
  spiagent validate FILE.json           validate a JSON_IETF configuration file
  spiagent user add NAME --role R       add a gNMI user (read-only|read-write; password on stdin)
  spiagent user del NAME                delete a gNMI user
`)
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "/var/lib/spiagent", "directory holding the running config and the agent's keys")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	dataplane := fs.String("dataplane", "auto", "IPsec dataplane: auto (xfrm when the kernel can do ESP, else userspace), userspace or xfrm")
	tunName := fs.String("tun", "spi0", "TUN device of the userspace dataplane")
	ikePort := fs.Uint("ike-port", 500, "local IKE port")
	nattPort := fs.Uint("natt-port", 4500, "local NAT-T (IKE and ESP-in-UDP) port")
	gf := addGNMIFlags(fs)
	nf := addNETCONFFlags(fs)
	lf := addLoginFlags(fs)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "spiagent: --log-level: %v\n", err)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *ikePort > 65535 || *nattPort > 65535 {
		fmt.Fprintln(stderr, "spiagent: --ike-port and --natt-port must be at most 65535")
		return exitUsage
	}
	acfg := agent.Config{Dataplane: *dataplane, TUNName: *tunName, IKEPort: uint16(*ikePort), NATTPort: uint16(*nattPort), Log: log}
	if err := runAgent(ctx, log, *dataDir, acfg, gf, nf, lf); err != nil {
		log.Error("spiagent stopped", "err", err)
		return 1
	}
	return 0
}

func runAgent(ctx context.Context, log *slog.Logger, dataDir string, acfg agent.Config, gf *gnmiFlags, nf *netconfFlags, lf *auth.BackoffConfig) error {
	st, err := store.Open(dataDir, store.WithValidator(validators.NewCrypto()))
	if err != nil {
		return fmt.Errorf("open datastore: %w", err)
	}
	defer st.Close()
	snap := st.Running()
	tel := telemetry.New()
	a, err := agent.New(acfg, st, tel)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Start(ctx); err != nil {
		return err
	}
	// One lock on running and one confirmed commit for both northbound
	// interfaces (RFC 6241 §7.5). A confirmed commit left pending by an
	// agent that died is rolled back before anyone connects.
	// One users file, hence one login backoff, for both.
	users, err := auth.OpenUsers(usersPath(gf.usersFile, dataDir))
	if err != nil {
		return err
	}
	users.SetBackoff(*lf)
	nb := northbound{lock: &dslock.Lock{}, confirm: confirm.New(st, confirm.Options{Log: log, Dir: dataDir}), users: users}
	if err := nb.confirm.Recover(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		nb.confirm.Shutdown(sctx)
	}()
	waitGNMI, err := startGNMI(ctx, log, st, tel, a, nb, dataDir, gf)
	if err != nil {
		return fmt.Errorf("gNMI: %w", err)
	}
	waitNETCONF, err := startNETCONF(ctx, log, st, tel, a, nb, dataDir, gf.usersFile, nf)
	if err != nil {
		return fmt.Errorf("NETCONF: %w", err)
	}
	defer waitNETCONF()
	log.Info("spiagent running", "data_dir", dataDir, "commit", snap.ID)
	<-ctx.Done()
	log.Info("spiagent shutting down", "reason", context.Cause(ctx))
	return waitGNMI()
}

// northbound is what the gNMI and NETCONF servers share.
type northbound struct {
	lock    *dslock.Lock
	confirm *confirm.Manager
	users   *auth.Users // nil: each server opens the users file
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: spiagent validate FILE.json")
		return exitUsage
	}
	problems, err := validateFile(args[0])
	if err != nil {
		fmt.Fprintf(stdout, "%s: %v\n", args[0], err)
		return 1
	}
	for _, p := range problems {
		fmt.Fprintf(stdout, "%s: %s\n", p.Path, p.Reason)
	}
	if len(problems) > 0 {
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid\n", args[0])
	return 0
}

func validateFile(name string) ([]store.Problem, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	root, err := store.LoadJSON(b)
	if err != nil {
		var perr *store.ValidationError
		if errors.As(err, &perr) {
			return perr.Problems, nil
		}
		return nil, err
	}
	return store.Validate(root, validators.NewCrypto()), nil
}

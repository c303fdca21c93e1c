// Command spictl is the operator's CLI for spiagent: it talks gNMI to the
// agent and prints router-style tables.
//
//	spictl [flags] show crypto isakmp sa
//	spictl [flags] show crypto ipsec sa
//	spictl [flags] show running-config
//	spictl [flags] clear crypto sa [peer ADDRESS | map NAME]
//	spictl [flags] clear crypto isakmp
//
// Flags follow gnmic: -a ADDRESS, -u USER, -p PASSWORD (or $SPICTL_PASSWORD),
// --insecure (plaintext), --skip-verify (TLS without checking the
// certificate), --tls-ca FILE.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const exitUsage = 2

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	addr, user, pass, caFile string
	insecure, skipVerify     bool
	timeout                  time.Duration
}

const usageText = `usage: spictl [flags] COMMAND
commands:
  show crypto isakmp sa                 IKE (ISAKMP) SAs
  show crypto ipsec sa                  IPsec SAs: peer, SPIs in/out, transform, counters, lifetime left
  show running-config                   the running configuration (JSON_IETF, keys redacted)
  clear crypto sa [peer ADDR | map NAME] [no-notify]
                                        delete IPsec SAs (all, of a peer, or of a crypto map)
  clear crypto isakmp [no-notify]       delete IKE SAs (and their IPsec SAs)
                                        no-notify: without DELETE notifications (makes a black hole)
flags:
`

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("spictl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usageText); fs.PrintDefaults() }
	o := options{}
	fs.StringVar(&o.addr, "a", "localhost:9339", "agent's gNMI address")
	fs.StringVar(&o.addr, "address", "localhost:9339", "same as -a")
	fs.StringVar(&o.user, "u", "", "username")
	fs.StringVar(&o.user, "username", "", "same as -u")
	fs.StringVar(&o.pass, "p", "", "password (default $SPICTL_PASSWORD)")
	fs.StringVar(&o.pass, "password", "", "same as -p")
	fs.BoolVar(&o.insecure, "insecure", false, "plaintext, no TLS")
	fs.BoolVar(&o.skipVerify, "skip-verify", false, "TLS without verifying the agent's certificate")
	fs.StringVar(&o.caFile, "tls-ca", "", "CA (or the agent's self-signed certificate) to verify the agent with")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "RPC timeout")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if o.pass == "" {
		o.pass = os.Getenv("SPICTL_PASSWORD")
	}
	words := fs.Args()
	cmd, err := parseCommand(words)
	if err != nil {
		fmt.Fprintf(stderr, "spictl: %v\n", err)
		fs.Usage()
		return exitUsage
	}
	cc, err := dial(o)
	if err != nil {
		fmt.Fprintf(stderr, "spictl: %v\n", err)
		return 1
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if o.user != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "username", o.user, "password", o.pass)
	}
	if err := cmd(ctx, gpb.NewGNMIClient(cc), stdout); err != nil {
		fmt.Fprintf(stderr, "spictl: %s\n", describe(err))
		return 1
	}
	return 0
}

// describe turns a gRPC status into a one-line message.
func describe(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	switch st.Code() {
	case codes.Unauthenticated:
		return "authentication failed: " + st.Message()
	case codes.PermissionDenied:
		return "permission denied: " + st.Message()
	case codes.Unavailable:
		return "agent unavailable: " + st.Message()
	}
	return fmt.Sprintf("%s: %s", st.Code(), st.Message())
}

func dial(o options) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if !o.insecure {
		cfg := &tls.Config{InsecureSkipVerify: o.skipVerify} //nolint:gosec // the operator asked for it
		if o.caFile != "" {
			pem, err := os.ReadFile(o.caFile)
			if err != nil {
				return nil, fmt.Errorf("--tls-ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca %s: no PEM certificates", o.caFile)
			}
		}
		creds = credentials.NewTLS(cfg)
	}
	return grpc.NewClient(o.addr, grpc.WithTransportCredentials(creds))
}

type command func(ctx context.Context, c gpb.GNMIClient, w io.Writer) error

// parseCommand maps the command words to a command.
// A clear command may end in "no-notify": delete without telling the peer
// (how the seed's black hole is made on purpose).
func parseCommand(w []string) (command, error) {
	noNotify := len(w) > 2 && w[0] == "clear" && w[len(w)-1] == "no-notify"
	if noNotify {
		w = w[:len(w)-1]
	}
	clear := func(in map[string]any) command {
		if noNotify {
			in["no-notify"] = true
		}
		return clearCmd(in)
	}
	line := strings.Join(w, " ")
	switch {
	case line == "show crypto isakmp sa":
		return showISAKMP, nil
	case line == "show crypto ipsec sa":
		return showIPsec, nil
	case line == "show running-config" || line == "show run":
		return showRunning, nil
	case line == "clear crypto isakmp":
		return clear(map[string]any{"isakmp": true}), nil
	case line == "clear crypto sa":
		return clear(map[string]any{}), nil
	case len(w) == 5 && strings.Join(w[:4], " ") == "clear crypto sa peer":
		return clear(map[string]any{"peer": w[4]}), nil
	case len(w) == 5 && strings.Join(w[:4], " ") == "clear crypto sa map":
		return clear(map[string]any{"crypto-map": w[4]}), nil
	case line == "":
		return nil, errors.New("no command")
	}
	return nil, fmt.Errorf("unknown command %q", line)
}

package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/agent/netconf"
	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/agent/validators"
	"github.com/spiagent/spiagent/store"
)

// TestStartNETCONF starts the server as `spiagent run` does: the host key
// is generated in the data dir (0600) and reused, the users file is the
// gNMI one, and a client gets the server's hello over the "netconf"
// subsystem.
func TestStartNETCONF(t *testing.T) {
	dir := t.TempDir()
	if err := auth.AddUser(filepath.Join(dir, "users"), "op", auth.RoleReadOnly, []byte("op-pw")); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "store"), store.WithValidator(validators.NewCrypto()))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	f := &netconfFlags{addr: addr, maxSessions: 4, maxMessage: 1 << 20, idle: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := startNETCONF(ctx, log, st, telemetry.New(), nil, northbound{}, dir, "", f)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, netconf.HostKeyFile)
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key: %v, mode %v", err, fi)
	}
	if !strings.Contains(logBuf.String(), "generated a NETCONF SSH host key") || !strings.Contains(logBuf.String(), "SHA256:") {
		t.Errorf("log: %s", logBuf.String())
	}
	var hostKey ssh.PublicKey
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User: "op", Auth: []ssh.AuthMethod{ssh.Password("op-pw")}, Timeout: 10 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error { hostKey = k; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := conn.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := sess.StdoutPipe()
	if err := sess.RequestSubsystem("netconf"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var got []byte
	for !bytes.Contains(got, []byte("]]>]]>")) {
		n, err := out.Read(buf)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if n == 0 && err == io.EOF {
			break
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Contains(got, []byte("<capability>urn:ietf:params:netconf:base:1.1</capability>")) {
		t.Fatalf("hello: %s", got)
	}
	conn.Close()
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	// A restart reuses the key.
	pem1, _ := os.ReadFile(keyFile)
	signer, generated, err := netconf.LoadHostKey(keyFile)
	if err != nil || generated || !bytes.Equal(signer.PublicKey().Marshal(), hostKey.Marshal()) {
		t.Fatalf("reload: %v generated=%v", err, generated)
	}
	pem2, _ := os.ReadFile(keyFile)
	if !bytes.Equal(pem1, pem2) {
		t.Fatal("host key file rewritten")
	}
	// --netconf-addr "" disables the server.
	wait, err = startNETCONF(context.Background(), log, st, telemetry.New(), nil, northbound{}, dir, "", &netconfFlags{})
	if err != nil || wait() != nil {
		t.Fatalf("disabled: %v", err)
	}
}

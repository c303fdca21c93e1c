package seedlab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spiagent/spiagent/lab/netlab"
)

// strongSwan's binaries, from Debian's strongswan-charon and
// strongswan-swanctl (scripts/deps.sh installs them).
const (
	CharonBin  = "/usr/lib/ipsec/charon"
	SwanctlBin = "/usr/sbin/swanctl"
)

// Charon is strongSwan 5.9.8's charon standing in for routerA: IKEv1 Main
// Mode with the lab's pre-shared key, its userspace IPsec (kernel-libipsec,
// which only speaks ESP-in-UDP and fakes NAT detection to get it). It
// initiates at start: libipsec raises no acquires, so trap policies never
// negotiate.
type Charon struct {
	NS  string
	Dir string
	cmd *exec.Cmd
}

// charonConf is strongswan.conf: only the plugins we need, its own vici
// socket and log, nothing from /etc.
const charonConf = `charon {
	load = random nonce aes sha1 sha2 md5 hmac gmp des kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
	install_virtual_ip = no
	retransmit_tries = 3
	retransmit_timeout = 2.0
	plugins { vici { socket = unix://%[1]s/run/charon.vici } }
	syslog { daemon { default = -1 } }
	filelog { main { path = %[1]s/charon.log
		time_format = %%H:%%M:%%S
		append = yes
		flush_line = yes
		default = 1
		ike = 2 } }
}
`

// swanctlConf is routerA's crypto configuration in swanctl terms: the same
// as examples/lab/router-a.json but with algorithms libipsec supports.
const swanctlConf = `connections {
	seed {
		version = 1
		aggressive = no
		local_addrs = 192.0.2.1
		remote_addrs = 192.0.2.2
		proposals = aes128-sha1-modp2048
		local { auth = psk
			id = 192.0.2.1 }
		remote { auth = psk
			id = 192.0.2.2 }
		children { net {
			local_ts = 198.51.100.0/24
			remote_ts = 203.0.113.0/24
			esp_proposals = aes128-sha1
			mode = tunnel
			start_action = start
			close_action = none
			dpd_action = clear } } }
}
secrets { ike-seed { id-a = 192.0.2.1
	id-b = 192.0.2.2
	secret = "%s" } }
`

// StartCharon writes the configuration into dir and starts charon in ns.
func StartCharon(ctx context.Context, ns, dir, psk string) (*Charon, error) {
	c := &Charon{NS: ns, Dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o700); err != nil {
		return nil, err
	}
	for name, body := range map[string]string{
		"strongswan.conf": fmt.Sprintf(charonConf, dir),
		"swanctl.conf":    fmt.Sprintf(swanctlConf, psk),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return nil, err
		}
	}
	// charon's PID file path is fixed (/var/run/charon.pid): a private
	// /run, bind-mounted in the namespace's own mount namespace, keeps it
	// apart from any other charon.
	cmd := exec.Command("ip", "netns", "exec", ns, "sh", "-c",
		fmt.Sprintf("mount --bind %s/run /run && exec env STRONGSWAN_CONF=%s/strongswan.conf %s", dir, dir, CharonBin))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start charon: %w", err)
	}
	c.cmd = cmd
	sock := filepath.Join(dir, "run", "charon.vici")
	if !netlab.WaitFor(ctx, 10*time.Second, 50*time.Millisecond, func() bool { _, err := os.Stat(sock); return err == nil }) {
		c.Stop()
		return nil, fmt.Errorf("charon did not come up: %s\n%s", out.String(), c.Log())
	}
	if _, err := c.Swanctl(ctx, "--load-all", "--file", filepath.Join(dir, "swanctl.conf")); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Swanctl runs a swanctl command against this charon.
func (c *Charon) Swanctl(ctx context.Context, cmd string, args ...string) (string, error) {
	a := append([]string{cmd, "--uri", "unix://" + filepath.Join(c.Dir, "run", "charon.vici")}, args...)
	out, err := exec.CommandContext(ctx, SwanctlBin, a...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("swanctl %v: %w\n%s", a, err, out)
	}
	return string(out), nil
}

// Log returns charon's log.
func (c *Charon) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "charon.log"))
	return string(b)
}

// Stop ends charon (SIGTERM, then SIGKILL).
func (c *Charon) Stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	c.cmd = nil
}

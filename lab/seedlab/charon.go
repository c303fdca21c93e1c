package seedlab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spiagent/spiagent/lab/netlab"
)

// strongSwan's binaries, from Debian's strongswan-charon and
// strongswan-swanctl (scripts/deps.sh installs them; lab/qemu packs them
// into the guest at the same paths).
const (
	CharonBin  = "/usr/lib/ipsec/charon"
	SwanctlBin = "/usr/sbin/swanctl"
)

// Charon is strongSwan 5.9.8's charon standing in for one of the routers:
// IKEv1 Main Mode with the lab's pre-shared key and a tunnel between the
// two LANs, with its own strongswan.conf, vici socket, log and /run.
type Charon struct {
	NS  string
	Dir string
	cmd *exec.Cmd
}

// CharonConfig says how a charon runs. Zero fields take the defaults in
// parentheses.
type CharonConfig struct {
	NS, Dir, PSK string
	// KernelNetlink: IPsec in the kernel's XFRM (kernel-netlink), as Linux
	// users run charon. Otherwise userspace IPsec (kernel-libipsec), which
	// only speaks ESP-in-UDP and fakes NAT detection to get it, and raises
	// no acquires (so it initiates at start).
	KernelNetlink bool
	// RouterB: charon is routerB (192.0.2.2, LAN 203.0.113.0/24), not
	// routerA (192.0.2.1, LAN 198.51.100.0/24).
	RouterB     bool
	Proposal    string // IKE (aes128-sha1-modp2048)
	ESPProposal string // (aes128-sha1)
	// StartAction: start (initiate at start), trap (install the policies
	// and initiate on traffic: the kernel's acquire) or none (respond
	// only). The default is start.
	StartAction string
	// DPD is dpd_delay; dpd_timeout (IKEv1) is three times it. 0: off.
	DPD time.Duration
	// Child SA lifetimes (rekey_time, life_time; rand_time 0 when set) and
	// byte limits (rekey_bytes, life_bytes). Zero: strongSwan's defaults.
	RekeyTime, LifeTime   time.Duration
	RekeyBytes, LifeBytes uint64
}

// charonConf is strongswan.conf: only the plugins we need, its own vici
// socket and log, nothing from /etc.
const charonConf = `charon {
	load = random nonce aes gcm sha1 sha2 md5 hmac gmp curve25519 kdf pem pkcs1 x509 pubkey %[2]s socket-default vici
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
		knl = 2
		ike = 2 } }
}
swanctl { load = random nonce pem pkcs1 x509 pubkey }
`

// swanctlConf is one router's crypto configuration in swanctl terms: the
// lab's tunnel (examples/lab) with the algorithms of the config.
const swanctlConf = `connections {
	seed {
		version = 1
		aggressive = no
		local_addrs = %[1]s
		remote_addrs = %[2]s
		proposals = %[5]s
		dpd_delay = %[8]s
		dpd_timeout = %[9]s
		local { auth = psk
			id = %[1]s }
		remote { auth = psk
			id = %[2]s }
		children { net {
			local_ts = %[3]s
			remote_ts = %[4]s
			esp_proposals = %[6]s
			mode = tunnel
			start_action = %[7]s
			close_action = %[10]s
			dpd_action = %[10]s
%[11]s		} } }
}
secrets { ike-seed { id-a = %[1]s
	id-b = %[2]s
	secret = "%[12]s" } }
`

// StartCharon starts charon as routerA with kernel-libipsec, initiating at
// start (the build host's kernel has no ESP).
func StartCharon(ctx context.Context, ns, dir, psk string) (*Charon, error) {
	return StartCharonWith(ctx, CharonConfig{NS: ns, Dir: dir, PSK: psk})
}

// StartCharonWith writes the configuration into cfg.Dir, starts charon in
// cfg.NS and loads the connection.
func StartCharonWith(ctx context.Context, cfg CharonConfig) (*Charon, error) {
	c := &Charon{NS: cfg.NS, Dir: cfg.Dir}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "run"), 0o700); err != nil {
		return nil, err
	}
	for name, body := range map[string]string{
		"strongswan.conf": cfg.strongswanConf(),
		"swanctl.conf":    cfg.swanctlConf(),
	} {
		if err := os.WriteFile(filepath.Join(cfg.Dir, name), []byte(body), 0o600); err != nil {
			return nil, err
		}
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (cfg CharonConfig) strongswanConf() string {
	kernel := "kernel-libipsec kernel-netlink" // libipsec first: it takes the IPsec part
	if cfg.KernelNetlink {
		kernel = "kernel-netlink"
	}
	return fmt.Sprintf(charonConf, cfg.Dir, kernel)
}

func (cfg CharonConfig) swanctlConf() string {
	local, remote, lts, rts := netlab.RouterAWAN, netlab.RouterBWAN, "198.51.100.0/24", "203.0.113.0/24"
	if cfg.RouterB {
		local, remote, lts, rts = remote, local, rts, lts
	}
	or := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	start := or(cfg.StartAction, "start")
	// What to do when the peer deletes the SA or is dead: with trap
	// policies, put the trap back (the next packet renegotiates).
	closeAction := "none"
	if start == "trap" {
		closeAction = "trap"
	}
	var life strings.Builder
	if cfg.RekeyTime > 0 || cfg.LifeTime > 0 {
		fmt.Fprintf(&life, "\t\t\trekey_time = %ds\n\t\t\tlife_time = %ds\n\t\t\trand_time = 0s\n",
			int(cfg.RekeyTime.Seconds()), int(cfg.LifeTime.Seconds()))
	}
	if cfg.RekeyBytes > 0 || cfg.LifeBytes > 0 {
		fmt.Fprintf(&life, "\t\t\trekey_bytes = %d\n\t\t\tlife_bytes = %d\n\t\t\trand_bytes = 0\n", cfg.RekeyBytes, cfg.LifeBytes)
	}
	dpd, dpdTimeout := "0s", "0s"
	if cfg.DPD > 0 {
		dpd, dpdTimeout = fmt.Sprintf("%ds", int(cfg.DPD.Seconds())), fmt.Sprintf("%ds", 3*int(cfg.DPD.Seconds()))
	}
	return fmt.Sprintf(swanctlConf, local, remote, lts, rts, or(cfg.Proposal, "aes128-sha1-modp2048"),
		or(cfg.ESPProposal, "aes128-sha1"), start, dpd, dpdTimeout, closeAction, life.String(), cfg.PSK)
}

// start runs charon in its namespace and loads swanctl.conf.
func (c *Charon) start(ctx context.Context) error {
	// charon's PID file path is fixed (/var/run/charon.pid): a private
	// /run, bind-mounted in the namespace's own mount namespace, keeps it
	// apart from any other charon.
	cmd := exec.Command("ip", "netns", "exec", c.NS, "sh", "-c",
		fmt.Sprintf("mount -o bind %s/run /run && exec env STRONGSWAN_CONF=%s/strongswan.conf %s", c.Dir, c.Dir, CharonBin))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start charon: %w", err)
	}
	c.cmd = cmd
	sock := filepath.Join(c.Dir, "run", "charon.vici")
	if !netlab.WaitFor(ctx, 30*time.Second, 50*time.Millisecond, func() bool { _, err := os.Stat(sock); return err == nil }) {
		c.Stop()
		return fmt.Errorf("charon did not come up: %s\n%s", out.String(), c.Log())
	}
	if _, err := c.Swanctl(ctx, "--load-all", "--file", filepath.Join(c.Dir, "swanctl.conf")); err != nil {
		c.Stop()
		return err
	}
	return nil
}

// Restart starts a stopped (or killed) charon again with the same files.
func (c *Charon) Restart(ctx context.Context) error {
	_ = os.Remove(filepath.Join(c.Dir, "run", "charon.vici"))
	_ = os.Remove(filepath.Join(c.Dir, "run", "charon.pid"))
	return c.start(ctx)
}

// Swanctl runs a swanctl command against this charon.
func (c *Charon) Swanctl(ctx context.Context, cmd string, args ...string) (string, error) {
	a := append([]string{cmd, "--uri", "unix://" + filepath.Join(c.Dir, "run", "charon.vici")}, args...)
	x := exec.CommandContext(ctx, SwanctlBin, a...)
	// swanctl reads strongswan.conf too: ours, not /etc's.
	x.Env = append(os.Environ(), "STRONGSWAN_CONF="+filepath.Join(c.Dir, "strongswan.conf"))
	out, err := x.CombinedOutput()
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
func (c *Charon) Stop() { c.signal(syscall.SIGTERM) }

// Kill ends charon with SIGKILL, as a crash would: its kernel SAs and
// policies stay behind (kernel-netlink), its IKE state is gone.
func (c *Charon) Kill() { c.signal(syscall.SIGKILL) }

func (c *Charon) signal(sig syscall.Signal) {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, sig)
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

package userspace

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// swanLab is the strongSwan peer TestStrongSwanInterop runs against, built
// from scratch in four network namespaces of its own (TEST-NET only):
//
//	h1 198.51.100.10 -- 198.51.100.1 a 192.0.2.1 ==== 192.0.2.2 b 203.0.113.1 -- 203.0.113.10 h2
//
// Each router namespace runs its own charon (strongSwan 5.9.8) with
// kernel-libipsec: ESP in userspace on a TUN (ipsec0), and in 5.9.8 only
// ESP in UDP (charon fakes NAT detection to get it). The routers have no
// route to the remote LAN, so only the tunnel joins h1 and h2. Everything,
// charons included, goes away in t.Cleanup, also when the test fails.
type swanLab struct {
	prefix string // namespace names are prefix+role
	dir    string // per-router configuration, run directory and log
}

// strongSwan's binaries and the plugins the lab needs beyond the basic
// ones (which come with strongswan-charon), with their Debian packages.
const (
	charonBin  = "/usr/lib/ipsec/charon"
	swanctlBin = "/usr/sbin/swanctl"
	swanPkgs   = "strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins"
)

var swanDeps = []struct{ path, pkg string }{
	{charonBin, "strongswan-charon"},
	{swanctlBin, "strongswan-swanctl"},
	{"/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so", "libcharon-extra-plugins"},
	{"/usr/lib/ipsec/plugins/libstrongswan-gcm.so", "libstrongswan-standard-plugins"},
}

// requireStrongSwan fails (as root the interop test must not vanish
// silently) when strongSwan's pieces are missing.
func requireStrongSwan(t *testing.T) {
	t.Helper()
	var missing []string
	for _, d := range swanDeps {
		if _, err := os.Stat(d.path); err != nil {
			missing = append(missing, d.path+" (Debian package "+d.pkg+")")
		}
	}
	if len(missing) > 0 {
		t.Fatalf("strongSwan, the interop peer, is not installed: missing %s.\n"+
			"Install the Debian packages %s (scripts/deps.sh installs them).", strings.Join(missing, ", "), swanPkgs)
	}
}

// swanRouter is one side's addressing and configuration.
type swanRouter struct {
	role            string // "a" or "b"
	me, peer        string
	localTS, remote string
	start           string // start_action
}

var (
	swanA = swanRouter{"a", "192.0.2.1", "192.0.2.2", "198.51.100.0/24", "203.0.113.0/24", "start"}
	swanB = swanRouter{"b", "192.0.2.2", "192.0.2.1", "203.0.113.0/24", "198.51.100.0/24", "none"}
)

// newSwanLab builds the namespaces, links and addresses.
func newSwanLab(t *testing.T) *swanLab {
	t.Helper()
	dir, err := os.MkdirTemp("", "upTswan") // short: vici's socket path must fit sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l := &swanLab{prefix: fmt.Sprintf("upTs%d_%d", os.Getpid()%10000, nsSeq.Add(1)), dir: dir}
	for _, role := range []string{"h1", "a", "b", "h2"} {
		n := l.ns(role)
		run(t, "ip", "netns", "add", n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
		run(t, "ip", "-n", n, "link", "set", "lo", "up")
		// IPv6 off: libipsec complains about link-local noise on ipsec0.
		run(t, "ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1",
			"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
			"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	// Interface names are per namespace; the veths are created inside them.
	for _, v := range []struct{ ns1, if1, addr1, ns2, if2, addr2 string }{
		{"h1", "h1-a", "198.51.100.10/24", "a", "a-h1", "198.51.100.1/24"},
		{"a", "a-b", "192.0.2.1/24", "b", "b-a", "192.0.2.2/24"},
		{"b", "b-h2", "203.0.113.1/24", "h2", "h2-b", "203.0.113.10/24"},
	} {
		run(t, "ip", "-n", l.ns(v.ns1), "link", "add", v.if1, "type", "veth", "peer", "name", v.if2, "netns", l.ns(v.ns2))
		for _, end := range [][3]string{{v.ns1, v.if1, v.addr1}, {v.ns2, v.if2, v.addr2}} {
			run(t, "ip", "-n", l.ns(end[0]), "addr", "add", end[2], "dev", end[1])
			run(t, "ip", "-n", l.ns(end[0]), "link", "set", end[1], "up")
		}
	}
	run(t, "ip", "-n", l.ns("h1"), "route", "add", "default", "via", "198.51.100.1")
	run(t, "ip", "-n", l.ns("h2"), "route", "add", "default", "via", "203.0.113.1")
	return l
}

func (l *swanLab) ns(role string) string { return l.prefix + role }

// strongswanConf is charon's whole configuration: only the plugins it needs
// (kernel-libipsec before kernel-netlink, so that libipsec does the IPsec
// and kernel-netlink only addresses and routes; kdf for PRF+; gcm for
// AES-GCM), its own vici socket and a log in which CHILD_SA keys and SPIs
// appear (chd = 4; ike_name tags the lines). Nothing from /etc is read.
const strongswanConf = `charon {
	load = random nonce aes sha1 sha2 hmac gmp kdf gcm pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
	install_virtual_ip = no
	plugins {
		vici {
			socket = unix://%[1]s/run/charon.vici
		}
	}
	syslog {
		daemon {
			default = -1
		}
	}
	filelog {
		main {
			path = %[1]s/charon.log
			ike_name = yes
			flush_line = yes
			default = 1
			chd = 4
		}
	}
}
`

// swanctlConf: IKEv1 Main Mode with a pre-shared key, one tunnel-mode
// CHILD_SA between the LANs with the ESP proposal under test.
const swanctlConf = `connections {
	interop {
		version = 1
		local_addrs = %[1]s
		remote_addrs = %[2]s
		proposals = aes128-sha1-modp2048
		local {
			auth = psk
			id = %[1]s
		}
		remote {
			auth = psk
			id = %[2]s
		}
		children {
			net {
				local_ts = %[3]s
				remote_ts = %[4]s
				esp_proposals = %[5]s
				mode = tunnel
				start_action = %[6]s
			}
		}
	}
}
secrets {
	ike-interop {
		id-a = 192.0.2.1
		id-b = 192.0.2.2
		secret = "spiagent-strongswan-interop"
	}
}
`

func (l *swanLab) routerDir(role string) string { return filepath.Join(l.dir, role) }

func (l *swanLab) vici(role string) string {
	return "unix://" + filepath.Join(l.routerDir(role), "run", "charon.vici")
}

// startCharon writes r's configuration, starts its charon in its namespace
// and loads the connection; t.Cleanup stops it by PID (before the
// namespaces go: cleanups run last-registered first).
func (l *swanLab) startCharon(t *testing.T, r swanRouter, espProp string) {
	t.Helper()
	d := l.routerDir(r.role)
	if err := os.MkdirAll(filepath.Join(d, "run"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"strongswan.conf": fmt.Sprintf(strongswanConf, d),
		"swanctl.conf":    fmt.Sprintf(swanctlConf, r.me, r.peer, r.localTS, r.remote, espProp, r.start),
	} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := os.Create(filepath.Join(d, "charon.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the child has its own copy
	// charon's PID file is /var/run/charon.pid, fixed: ip netns exec gives
	// the command a private mount namespace, and a per-router directory
	// bind-mounted over /run there keeps the two charons apart (and the
	// host's /run untouched). sh and env exec, so the PID is charon's.
	cmd := exec.Command("ip", "netns", "exec", l.ns(r.role), "sh", "-c",
		`mount --bind "$1/run" /run && exec env STRONGSWAN_CONF="$1/strongswan.conf" "$2"`, "sh", d, charonBin)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start charon %s: %v", r.role, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	sock := filepath.Join(d, "run", "charon.vici")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("charon %s exited at start: %s\n%s", r.role, readTail(filepath.Join(d, "charon.out")), l.logTail(r.role))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("charon %s: no vici socket after 10 s\n%s", r.role, l.logTail(r.role))
		}
	}
	l.swanctl(t, r.role, "--load-all", "--file", filepath.Join(d, "swanctl.conf"))
}

// swanctl runs a swanctl command against role's charon (the command option
// must come before --uri).
func (l *swanLab) swanctl(t *testing.T, role, cmd string, args ...string) string {
	t.Helper()
	a := append([]string{cmd, "--uri", l.vici(role)}, args...)
	out, err := exec.Command(swanctlBin, a...).CombinedOutput()
	if err != nil {
		t.Fatalf("swanctl %s: %v\n%s\n%s", strings.Join(a, " "), err, out, l.logTail(role))
	}
	return string(out)
}

// waitChild waits until role's charon has its CHILD_SA installed.
func (l *swanLab) waitChild(t *testing.T, role string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(l.swanctl(t, role, "--list-sas"), "INSTALLED") {
			return
		}
	}
	t.Fatalf("no CHILD_SA installed on %s after %s\n%s\n%s", role, timeout, l.logTail("a"), l.logTail("b"))
}

func (l *swanLab) log(role string) string { return filepath.Join(l.routerDir(role), "charon.log") }

func (l *swanLab) logTail(role string) string {
	return "charon " + role + " log (tail):\n" + readTail(l.log(role))
}

func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

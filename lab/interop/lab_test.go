// Package interop tests spiagent's IKEv1 engine against strongSwan's charon
// (5.9.8, kernel-libipsec) in network namespaces. It needs root; without
// root the tests skip, with root they fail when charon is missing.
package interop

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	charonBin  = "/usr/lib/ipsec/charon"
	swanctlBin = "/usr/sbin/swanctl"
	testPSK    = "interop-psk-0123456789"
	addrOurs   = "192.0.2.1"
	addrCharon = "192.0.2.2"
	lanOurs    = "198.51.100.0/24"
	lanCharon  = "203.0.113.0/24"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("interop: needs root (network namespaces, charon); run as root: go test ./lab/interop/")
	}
	for _, b := range []string{charonBin, swanctlBin} {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("interop: %s missing (install strongswan-charon strongswan-swanctl libcharon-extra-plugins; see scripts/deps.sh): %v", b, err)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lab is two namespaces joined by a veth: ours (192.0.2.1) and charon's (192.0.2.2).
type lab struct {
	t        *testing.T
	nsOurs   string
	nsCharon string
	dir      string
	charon   *exec.Cmd
}

func newLab(t *testing.T) *lab {
	needRoot(t)
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	l := &lab{t: t, nsOurs: "ikeTA" + id, nsCharon: "ikeTB" + id, dir: t.TempDir()}
	for _, ns := range []string{l.nsOurs, l.nsCharon} {
		run(t, "ip", "netns", "add", ns)
		ns := ns
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv4.conf.all.rp_filter=0")
	}
	run(t, "ip", "-n", l.nsOurs, "link", "add", "ikeT-a", "type", "veth", "peer", "name", "ikeT-b", "netns", l.nsCharon)
	run(t, "ip", "-n", l.nsOurs, "addr", "add", addrOurs+"/24", "dev", "ikeT-a")
	run(t, "ip", "-n", l.nsCharon, "addr", "add", addrCharon+"/24", "dev", "ikeT-b")
	run(t, "ip", "-n", l.nsOurs, "link", "set", "ikeT-a", "up")
	run(t, "ip", "-n", l.nsCharon, "link", "set", "ikeT-b", "up")
	// A LAN address on each side so the selectors are real subnets.
	run(t, "ip", "-n", l.nsOurs, "addr", "add", "198.51.100.1/24", "dev", "lo")
	run(t, "ip", "-n", l.nsCharon, "addr", "add", "203.0.113.1/24", "dev", "lo")
	if err := os.MkdirAll(filepath.Join(l.dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.stopCharon)
	return l
}

// inNetns runs f on an OS thread switched into ns; the thread is
// discarded afterwards (never unlocked), so no other goroutine inherits it.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

type charonConf struct {
	ikeProp, espProp string
	start            bool // charon initiates
	dpd              string
}

func (l *lab) writeConf(c charonConf) {
	l.t.Helper()
	start := "none"
	if c.start {
		start = "start"
	}
	if c.dpd == "" {
		c.dpd = "0s"
	}
	conf := fmt.Sprintf(`charon {
	load = random nonce aes sha1 sha2 md5 hmac gmp curve25519 kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
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
		ike = 2
		enc = 1
		knl = 1 } }
}
`, l.dir)
	sw := fmt.Sprintf(`connections { s2s {
	version = 1
	aggressive = no
	local_addrs = %s
	remote_addrs = %s
	proposals = %s
	dpd_delay = %s
	dpd_timeout = 30s
	local { auth = psk
		id = %s }
	remote { auth = psk
		id = %s }
	children { net {
		local_ts = %s
		remote_ts = %s
		esp_proposals = %s
		mode = tunnel
		start_action = %s
		close_action = none
		dpd_action = clear } } } }
secrets { ike-s2s { id-a = %s
	id-b = %s
	secret = "%s" } }
`, addrCharon, addrOurs, c.ikeProp, c.dpd, addrCharon, addrOurs, lanCharon, lanOurs, c.espProp, start, addrCharon, addrOurs, testPSK)
	for name, body := range map[string]string{"strongswan.conf": conf, "swanctl.conf": sw} {
		if err := os.WriteFile(filepath.Join(l.dir, name), []byte(body), 0o600); err != nil {
			l.t.Fatal(err)
		}
	}
}

func (l *lab) uri() string { return "unix://" + filepath.Join(l.dir, "run", "charon.vici") }

// startCharon starts charon in its namespace with the written config.
func (l *lab) startCharon() {
	l.t.Helper()
	os.Remove(filepath.Join(l.dir, "run", "charon.vici"))
	os.Remove(filepath.Join(l.dir, "run", "charon.pid"))
	cmd := exec.Command("ip", "netns", "exec", l.nsCharon, "sh", "-c",
		fmt.Sprintf("mount --bind %s/run /run && exec env STRONGSWAN_CONF=%s/strongswan.conf %s", l.dir, l.dir, charonBin))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// No Pdeathsig: it fires when the forking OS thread exits, and inNetns
	// discards threads. Cleanup stops charon by PID instead.
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.charon = cmd
	sock := filepath.Join(l.dir, "run", "charon.vici")
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(sock); err != nil {
		l.t.Fatalf("charon did not come up: %s\n%s", out.String(), l.log())
	}
	l.swanctl("--load-all", "--file", filepath.Join(l.dir, "swanctl.conf"))
}

func (l *lab) stopCharon() {
	if l.charon == nil || l.charon.Process == nil {
		return
	}
	l.charon.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { l.charon.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		l.charon.Process.Kill()
		<-done
	}
	l.charon = nil
}

func (l *lab) swanctl(cmd string, args ...string) string {
	l.t.Helper()
	a := append([]string{cmd, "--uri", l.uri()}, args...)
	out, err := exec.Command(swanctlBin, a...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("swanctl %v: %v\n%s", a, err, out)
	}
	return string(out)
}

func (l *lab) listSAs() string {
	out, _ := exec.Command(swanctlBin, "--list-sas", "--uri", l.uri()).CombinedOutput()
	return string(out)
}

func (l *lab) log() string {
	b, _ := os.ReadFile(filepath.Join(l.dir, "charon.log"))
	return string(b)
}

// waitFor polls cond every 50 ms up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

var spiLine = regexp.MustCompile(`(?s)\bin\s+([0-9a-f]{8})\b.*?\bout\s+([0-9a-f]{8})\b`)

// charonChildSPIs returns (in, out) ESP SPIs of each installed CHILD_SA.
func charonChildSPIs(list string) [][2]string {
	var out [][2]string
	for _, m := range spiLine.FindAllStringSubmatch(list, -1) {
		out = append(out, [2]string{m[1], m[2]})
	}
	return out
}

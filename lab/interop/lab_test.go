// Package interop tests spiagent's IKEv1 engine against strongSwan's charon
// (5.9.8, kernel-libipsec) in network namespaces. It needs root; without
// root the tests skip, with root they fail when charon is missing.
package interop

import (
	"bytes"
	"fmt"
	"net/netip"
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

func needRoot(t testing.TB) {
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

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lab is two namespaces joined by a veth: ours (192.0.2.1) and charon's (192.0.2.2).
type lab struct {
	t        testing.TB
	nsOurs   string
	nsCharon string
	*charon       // the charon in nsCharon
	bindAny  bool // our transport binds 0.0.0.0 (IP_PKTINFO) instead of 192.0.2.1
}

// charon is one charon daemon in a namespace with its own directory.
type charon struct {
	t   testing.TB
	ns  string
	dir string
	cmd *exec.Cmd
}

func newLab(t testing.TB) *lab {
	needRoot(t)
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	l := &lab{t: t, nsOurs: "ikeTA" + id, nsCharon: "ikeTB" + id}
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
	l.charon = newCharon(t, l.nsCharon)
	return l
}

func newCharon(t testing.TB, ns string) *charon {
	c := &charon{t: t, ns: ns, dir: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(c.dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stopCharon)
	return c
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
	// local/remote addresses and LANs; empty means charon on 192.0.2.2.
	local, remote       string
	localLAN, remoteLAN string
	// conns > 1 generates that many connections, each with a /32 pair of
	// selectors inside the LANs (for rate measurements).
	conns int
	// rate lifts charon's per-peer half-open limit (block_threshold, 5 by
	// default), which otherwise drops a burst of Main Modes from one peer.
	// For IKEv1 charon reuses an ISAKMP SA for every connection whose
	// peer config is equal, so generated connections differ in rekey_time:
	// each then gets its own Main Mode.
	rate bool
	// secrets logs keying material (ike/chd level 4), for known answers.
	secrets bool
}

func (c *charon) writeConf(cc charonConf) {
	c.t.Helper()
	start := "none"
	if cc.start {
		start = "start"
	}
	if cc.dpd == "" {
		cc.dpd = "0s"
	}
	ikeLevel := 2
	if cc.secrets {
		ikeLevel = 4
	}
	block := 5
	if cc.rate {
		block = 1 << 20
	}
	if cc.local == "" {
		cc.local, cc.remote, cc.localLAN, cc.remoteLAN = addrCharon, addrOurs, lanCharon, lanOurs
	}
	conf := fmt.Sprintf(`charon {
	load = random nonce aes gcm sha1 sha2 md5 hmac gmp curve25519 kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
	install_virtual_ip = no
	block_threshold = %[2]d
	retransmit_tries = 3
	retransmit_timeout = 2.0
	plugins { vici { socket = unix://%[1]s/run/charon.vici } }
	syslog { daemon { default = -1 } }
	filelog { main { path = %[1]s/charon.log
		time_format = %%H:%%M:%%S
		append = yes
		flush_line = yes
		default = 1
		ike = %[3]d
		chd = %[3]d
		enc = 1
		knl = 1 } }
}
`, c.dir, block, ikeLevel)
	var sw strings.Builder
	sw.WriteString("connections {\n")
	n := max(cc.conns, 1)
	for k := 0; k < n; k++ {
		lts, rts := cc.localLAN, cc.remoteLAN
		if cc.conns > 1 {
			lts, rts = hostIn(cc.localLAN, k/250), hostIn(cc.remoteLAN, k%250)
		}
		name := "s2s"
		if k > 0 {
			name = fmt.Sprintf("s2s%d", k)
		}
		fmt.Fprintf(&sw, `%s {
	rekey_time = %ds
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
		dpd_action = clear } } }
`, name, 14400+k, cc.local, cc.remote, cc.ikeProp, cc.dpd, cc.local, cc.remote, lts, rts, cc.espProp, start)
	}
	fmt.Fprintf(&sw, "}\nsecrets { ike-s2s { id-a = %s\n\tid-b = %s\n\tsecret = \"%s\" } }\n", cc.local, cc.remote, testPSK)
	for name, body := range map[string]string{"strongswan.conf": conf, "swanctl.conf": sw.String()} {
		if err := os.WriteFile(filepath.Join(c.dir, name), []byte(body), 0o600); err != nil {
			c.t.Fatal(err)
		}
	}
}

// hostIn returns the k-th host (k+1) of a /24 as a /32.
func hostIn(lan string, k int) string {
	p := netip.MustParsePrefix(lan)
	b := p.Addr().As4()
	b[3] = byte(k + 1)
	return netip.AddrFrom4(b).String() + "/32"
}

func (c *charon) uri() string { return "unix://" + filepath.Join(c.dir, "run", "charon.vici") }

// startCharon starts charon in its namespace with the written config.
func (c *charon) startCharon() {
	c.t.Helper()
	os.Remove(filepath.Join(c.dir, "run", "charon.vici"))
	os.Remove(filepath.Join(c.dir, "run", "charon.pid"))
	cmd := exec.Command("ip", "netns", "exec", c.ns, "sh", "-c",
		fmt.Sprintf("mount --bind %s/run /run && exec env STRONGSWAN_CONF=%s/strongswan.conf %s", c.dir, c.dir, charonBin))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// No Pdeathsig: it fires when the forking OS thread exits, and inNetns
	// discards threads. Cleanup stops charon by PID instead.
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.cmd = cmd
	sock := filepath.Join(c.dir, "run", "charon.vici")
	if !waitFor(5*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }) {
		c.t.Fatalf("charon did not come up: %s\n%s", out.String(), c.log())
	}
	c.swanctl("--load-all", "--file", filepath.Join(c.dir, "swanctl.conf"))
}

func (c *charon) stopCharon() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
	c.cmd = nil
}

func (c *charon) swanctl(cmd string, args ...string) string {
	c.t.Helper()
	a := append([]string{cmd, "--uri", c.uri()}, args...)
	out, err := exec.Command(swanctlBin, a...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("swanctl %v: %v\n%s", a, err, out)
	}
	return string(out)
}

func (c *charon) listSAs() string {
	out, _ := exec.Command(swanctlBin, "--list-sas", "--uri", c.uri()).CombinedOutput()
	return string(out)
}

func (c *charon) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "charon.log"))
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

// Package qemu proves ipsec/xfrm against a real ESP-capable kernel: this
// host's kernel has XFRM but no ESP, so TestXFRMInQEMU downloads a Debian
// kernel (never installing it), builds a small initramfs with the
// ipsec/xfrm test binary, boots it under qemu and turns the guest's test
// results into its own. Entry point without make: lab/qemu/run.sh.
package qemu

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// requiredGuestTests must PASS in the guest (not skip): they are the proof.
var requiredGuestTests = []string{
	"TestGuestSupported",
	"TestGuestESPTunnel",
	"TestGuestTransportMode",
	"TestGuestAHESPBundle",
	"TestGuestESPInUDP",
	"TestGuestAcquire",
	"TestGuestInvalidSPI",
	"TestGuestInvalidSPIRawSocket",
	"TestGuestIntegrityFailure",
	"TestGuestExpire",
	"TestGuestFlushOwnedOnly",
	"TestGuestReplay",
	"TestGuestAddSAErrors",
}

const marker = "SPIAGENT-QEMU-RESULT:"

// guestResult is one top-level test's outcome in the guest.
type guestResult struct {
	name, status string // PASS, FAIL, SKIP
	output       []string
}

var resultLine = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+)`)

// parseGuestLog reads a serial console log: top-level "--- PASS/FAIL/SKIP"
// lines (subtests are indented and belong to their parent), each with the
// output printed since the previous top-level result, and the result marker.
func parseGuestLog(r io.Reader) (results []guestResult, markerLine string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var pending []string
	for sc.Scan() {
		line := strings.TrimRight(strings.ReplaceAll(sc.Text(), "\r", ""), " ")
		if i := strings.Index(line, marker); i >= 0 {
			markerLine = strings.TrimSpace(line[i:])
			continue
		}
		if m := resultLine.FindStringSubmatch(line); m != nil {
			results = append(results, guestResult{name: m[2], status: m[1], output: append(pending, line)})
			pending = nil
			continue
		}
		if strings.HasPrefix(line, "=== RUN") && !strings.Contains(line, "/") {
			pending = nil // a new top-level test starts
		}
		pending = append(pending, line)
		if len(pending) > 400 {
			pending = pending[len(pending)-400:]
		}
	}
	return results, markerLine, sc.Err()
}

func repoRoot(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(string(bytes.TrimSpace(out)))
}

func cacheDir() string {
	if d := os.Getenv("SPIAGENT_QEMU_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "spiagent", "qemu")
	}
	return "/var/cache/spiagent/qemu"
}

// step runs a command, logs how long it took and fails the test on error.
func step(t *testing.T, name string, cmd *exec.Cmd) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	t.Logf("%s: %.1fs %s", name, time.Since(start).Seconds(), strings.TrimSpace(stderr.String()))
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, stderr.String())
	}
	return out
}

func TestXFRMInQEMU(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (apt-get download, depmod, and the guest's tests); run lab/qemu/run.sh as root")
	}
	if testing.Short() {
		t.Skip("boots a kernel under qemu (about a minute); skipped with -short")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("qemu-system-x86_64 not found (scripts/deps.sh installs qemu-system-x86): %v", err)
	}
	for _, tool := range []string{"busybox", "cpio", "depmod", "modprobe", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (scripts/deps.sh installs busybox-static, cpio, kmod): %v", tool, err)
		}
	}
	root := repoRoot(t)
	work := t.TempDir()
	total := time.Now()
	kernel := fetchKernel(t, root)
	initrd := buildImage(t, root, kernel, work)
	logPath := boot(t, qemu, kernel["KERNEL"], initrd, work)
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	results, mark, err := parseGuestLog(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("total %.1fs, guest marker %q, %d guest tests", time.Since(total).Seconds(), mark, len(results))
	report(t, results, mark, logPath)
	fmt.Fprintf(os.Stderr, "lab/qemu: %d guest tests, marker %q, %.1fs in all\n", len(results), mark, time.Since(total).Seconds())
}

// fetchKernel downloads and unpacks the Debian kernel into the cache (never
// installing it) and returns fetch-kernel.sh's KERNEL, MODROOT and KVER.
func fetchKernel(t *testing.T, root string) map[string]string {
	meta := os.Getenv("SPIAGENT_QEMU_KERNEL_META")
	if meta == "" {
		meta = "linux-image-cloud-amd64"
	}
	out := step(t, "fetch kernel", exec.Command(filepath.Join(root, "lab", "qemu", "fetch-kernel.sh"), cacheDir(), meta))
	env := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	if env["KERNEL"] == "" || env["MODROOT"] == "" || env["KVER"] == "" {
		t.Fatalf("fetch-kernel.sh printed %q", out)
	}
	return env
}

// buildImage compiles the ipsec/xfrm tests as one static binary and packs
// it with busybox, ip and the modules into an initramfs.
func buildImage(t *testing.T, root string, kernel map[string]string, work string) string {
	bin := filepath.Join(work, "xfrm.test")
	build := exec.Command("go", "test", "-c", "-trimpath", "-o", bin, "./ipsec/xfrm")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	step(t, "go test -c ./ipsec/xfrm", build)
	initrd := filepath.Join(work, "initramfs.cpio.gz")
	mk := exec.Command(filepath.Join(root, "lab", "qemu", "build-initramfs.sh"), initrd, bin+"@"+filepath.Join(root, "ipsec", "xfrm"))
	mk.Env = append(os.Environ(), "KVER="+kernel["KVER"], "MODROOT="+kernel["MODROOT"], "WORK="+filepath.Join(work, "build"))
	step(t, "build initramfs", mk)
	return initrd
}

// boot runs the guest under TCG (SPIAGENT_QEMU_ACCEL=kvm to try KVM: a
// /dev/kvm that opens is not proof that KVM works, as on this host) with no
// NIC, so the guest's traffic stays on its own veths. It returns the serial
// console log's path.
func boot(t *testing.T, qemu, kernel, initrd, work string) string {
	appendLine := "console=ttyS0 quiet panic=-1"
	if run := os.Getenv("SPIAGENT_QEMU_RUN"); run != "" {
		appendLine += " spiagent.run=" + run
	}
	args := []string{"-kernel", kernel, "-initrd", initrd, "-append", appendLine,
		"-nographic", "-no-reboot", "-m", "512", "-nic", "none"}
	if os.Getenv("SPIAGENT_QEMU_ACCEL") == "kvm" {
		args = append(args, "-enable-kvm", "-cpu", "host")
	}
	logPath := filepath.Join(work, "serial.log")
	if keep := os.Getenv("SPIAGENT_QEMU_LOG"); keep != "" {
		logPath = keep
	}
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, logf, logf
	start := time.Now()
	err = cmd.Run()
	t.Logf("qemu: %.1fs (%v), serial log %s", time.Since(start).Seconds(), err, logPath)
	if ctx.Err() != nil {
		t.Errorf("qemu did not power off within the timeout")
	}
	return logPath
}

// report turns the guest's results into subtests, checks that the proof's
// tests passed (not skipped) and that the guest printed the PASS marker.
func report(t *testing.T, results []guestResult, mark, logPath string) {
	byName := map[string]guestResult{}
	for _, r := range results {
		r := r
		byName[r.name] = r
		t.Run(r.name, func(t *testing.T) {
			switch r.status {
			case "FAIL":
				t.Errorf("failed in the guest:\n%s", strings.Join(r.output, "\n"))
			case "SKIP":
				t.Skipf("skipped in the guest: %s", strings.Join(r.output, "\n"))
			}
		})
	}
	if os.Getenv("SPIAGENT_QEMU_RUN") == "" {
		for _, name := range requiredGuestTests {
			if r, ok := byName[name]; !ok || r.status != "PASS" {
				t.Errorf("%s did not pass in the guest (status %q)", name, r.status)
			}
		}
	}
	if mark != marker+" PASS" {
		tail, _ := os.ReadFile(logPath)
		if len(tail) > 6000 {
			tail = tail[len(tail)-6000:]
		}
		t.Fatalf("guest marker %q, want %q; end of the serial log:\n%s", mark, marker+" PASS", bytes.ReplaceAll(tail, []byte("\r"), nil))
	}
}

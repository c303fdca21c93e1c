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

type guestProgram struct {
	prog     Program // its Name is a key of guestPackages
	required []string
}

// guestPrograms is what one boot runs, in order, and the guest tests of
// each that must PASS (not skip): they are the proof.
var guestPrograms = []guestProgram{
	{Program{Name: "xfrm", Test: true, Timeout: 150 * time.Second}, []string{
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
	}},
	{Program{Name: "seedlab", Test: true, Run: "^TestGuest", Timeout: 12 * time.Minute}, []string{
		"TestGuestSeedXFRM",
		"TestGuestMixedDataplanes",
		"TestGuestStrongSwanInitiatesOnTraffic",
		"TestGuestStrongSwanResponds",
		"TestGuestStrongSwanRekey",
		"TestGuestLifetimes",
	}},
}

// selectedPrograms is guestPrograms, or those named in
// $SPIAGENT_QEMU_PROGRAMS (comma-separated).
func selectedPrograms() []guestProgram {
	only := os.Getenv("SPIAGENT_QEMU_PROGRAMS")
	if only == "" {
		return guestPrograms
	}
	var out []guestProgram
	for _, gp := range guestPrograms {
		for _, name := range strings.Split(only, ",") {
			if name == gp.prog.Name {
				out = append(out, gp)
			}
		}
	}
	return out
}

// guestResult is one top-level test's outcome in the guest.
type guestResult struct {
	program      string // the /tests directory it ran from
	name, status string // PASS, FAIL, SKIP
	output       []string
}

var (
	resultLine  = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+)`)
	programLine = regexp.MustCompile(`SPIAGENT-QEMU: running (\S+) at`)
)

// parseGuestLog reads a serial console log: top-level "--- PASS/FAIL/SKIP"
// lines (subtests are indented and belong to their parent), each with the
// program it ran in and the output printed since the previous top-level
// result, and the result marker.
func parseGuestLog(r io.Reader) (results []guestResult, markerLine string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var pending []string
	program := ""
	for sc.Scan() {
		line := strings.TrimRight(strings.ReplaceAll(sc.Text(), "\r", ""), " ")
		if i := strings.Index(line, Marker); i >= 0 {
			markerLine = strings.TrimSpace(line[i:])
			continue
		}
		if m := programLine.FindStringSubmatch(line); m != nil {
			program, pending = m[1], nil
			continue
		}
		if m := resultLine.FindStringSubmatch(line); m != nil {
			results = append(results, guestResult{program: program, name: m[2], status: m[1], output: append(pending, line)})
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

// step runs f, logs how long it took and fails the test on error.
func step(t *testing.T, name string, f func() error) {
	t.Helper()
	start := time.Now()
	err := f()
	t.Logf("%s: %.1fs", name, time.Since(start).Seconds())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// TestXFRMInQEMU boots a Debian kernel with ESP and runs, in one boot, the
// ipsec/xfrm tests and lab/seedlab's guest tests (two spiagents on XFRM,
// strongSwan's charon with kernel-netlink); every guest test becomes a
// subtest PROGRAM/TEST.
func TestXFRMInQEMU(t *testing.T) {
	needGuestTools(t)
	var progs []Program
	for _, gp := range selectedPrograms() {
		progs = append(progs, gp.prog)
	}
	total := time.Now()
	logPath := runGuest(t, progs, Image{StrongSwan: true}, Boot{Timeout: 15 * time.Minute})
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

// needGuestTools skips without root or with -short and fails when a tool
// the guest image needs is missing.
func needGuestTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (apt-get download, depmod, and the guest's tests); run lab/qemu/run.sh as root")
	}
	if testing.Short() {
		t.Skip("boots a kernel under qemu (a few minutes); skipped with -short")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("qemu-system-x86_64 not found (scripts/deps.sh installs qemu-system-x86): %v", err)
	}
	for _, tool := range []string{"busybox", "cpio", "depmod", "modprobe", "apt-get", "dpkg-deb", "/usr/lib/ipsec/charon", "/usr/sbin/swanctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (scripts/deps.sh installs busybox-static, cpio, kmod, strongswan-charon, strongswan-swanctl): %v", tool, err)
		}
	}
}

// guestPackages maps guest program names to the packages built as them
// (test binaries, but for commands).
var guestPackages = map[string]struct {
	pkg      string
	testdata bool
}{
	"xfrm":       {"./ipsec/xfrm", true},
	"seedlab":    {"./lab/seedlab", false},
	"scalebench": {"./lab/scalebench", false},
}

// runGuest builds spiagent, spictl and the test binaries of progs (by
// name, see guestPackages), packs them with the examples into img, boots
// it and returns the serial log's path ($SPIAGENT_QEMU_LOG to keep it).
func runGuest(t *testing.T, progs []Program, img Image, b Boot) string {
	t.Helper()
	root := repoRoot(t)
	work := t.TempDir()
	ctx := context.Background()
	var k Kernel
	step(t, "fetch kernel", func() (err error) { k, err = FetchKernel(ctx, root, ""); return err })
	img.Share = map[string]string{"examples/lab": filepath.Join(root, "examples", "lab")}
	step(t, "build the guest's binaries", func() error {
		for _, c := range []string{"spiagent", "spictl"} {
			bin := filepath.Join(work, c)
			if err := BuildStatic(ctx, root, "./cmd/"+c, bin, false); err != nil {
				return err
			}
			img.Tools = append(img.Tools, bin)
		}
		for _, p := range progs {
			gp, ok := guestPackages[p.Name]
			if !ok {
				return fmt.Errorf("no package for guest program %q", p.Name)
			}
			p.Bin = filepath.Join(work, p.Name)
			if p.Test {
				p.Bin += ".test"
			}
			if err := BuildStatic(ctx, root, gp.pkg, p.Bin, p.Test); err != nil {
				return err
			}
			if gp.testdata {
				p.Testdata = filepath.Join(root, gp.pkg, "testdata")
			}
			img.Programs = append(img.Programs, p)
		}
		return nil
	})
	var initrd, summary string
	step(t, "build initramfs", func() (err error) { initrd, summary, err = img.Build(ctx, root, k, work); return err })
	t.Log(summary)
	logPath := filepath.Join(work, "serial.log")
	if keep := os.Getenv("SPIAGENT_QEMU_LOG"); keep != "" {
		logPath = keep
	}
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	b.Console = logf
	if run := os.Getenv("SPIAGENT_QEMU_RUN"); run != "" {
		b.Append = append(b.Append, "spiagent.run="+run)
	}
	start := time.Now()
	err = b.Run(ctx, k, initrd)
	logf.Close()
	t.Logf("qemu: %.1fs (%v), serial log %s", time.Since(start).Seconds(), err, logPath)
	if err != nil {
		t.Errorf("%v", err)
	}
	return logPath
}

// report turns the guest's results into subtests, checks that the proof's
// tests passed (not skipped) and that the guest printed the PASS marker.
func report(t *testing.T, results []guestResult, mark, logPath string) {
	byName := map[string]guestResult{}
	for _, r := range results {
		r := r
		byName[r.program+"/"+r.name] = r
		t.Run(r.program+"/"+r.name, func(t *testing.T) {
			switch r.status {
			case "FAIL":
				t.Errorf("failed in the guest:\n%s", strings.Join(r.output, "\n"))
			case "SKIP":
				t.Skipf("skipped in the guest: %s", strings.Join(r.output, "\n"))
			}
		})
	}
	if os.Getenv("SPIAGENT_QEMU_RUN") == "" {
		for _, gp := range selectedPrograms() {
			for _, name := range gp.required {
				if r, ok := byName[gp.prog.Name+"/"+name]; !ok || r.status != "PASS" {
					t.Errorf("%s/%s did not pass in the guest (status %q)", gp.prog.Name, name, r.status)
				}
			}
		}
	}
	if mark != Marker+" PASS" {
		tail, _ := os.ReadFile(logPath)
		if len(tail) > 6000 {
			tail = tail[len(tail)-6000:]
		}
		t.Fatalf("guest marker %q, want %q; end of the serial log:\n%s", mark, Marker+" PASS", bytes.ReplaceAll(tail, []byte("\r"), nil))
	}
}

// Package qemu boots a stock Debian kernel under qemu and runs spiagent's
// programs inside it. The build host's kernel has XFRM but no ESP or AH (and
// no modules to load), so everything that needs the kernel's IPsec runs in
// this guest: the ipsec/xfrm tests, the seed scenario with two spiagents on
// XFRM, strongSwan's charon with kernel-netlink, the XFRM benchmarks and
// `make demo DATAPLANE=xfrm`.
//
// FetchKernel downloads the kernel package with `apt-get download` and
// unpacks it into a cache (it is never installed); Image.Build packs
// busybox, iproute2's ip, the modules, optionally strongSwan and iperf3
// (from the host's installed Debian packages) and the programs into an
// initramfs; Boot runs it under TCG with no NIC and copies the serial
// console to a writer. The guest's /init (init.sh) runs the programs in
// order, prints "SPIAGENT-QEMU-RESULT: PASS|FAIL (n)" and powers off.
//
// It needs root (depmod, and the programs run as root in the guest),
// qemu-system-x86, busybox-static, cpio and kmod (scripts/deps.sh). It
// imports nothing of spiagent.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Marker starts the guest's last line: "SPIAGENT-QEMU-RESULT: PASS".
const Marker = "SPIAGENT-QEMU-RESULT:"

// Guest paths of what Image puts in the image besides the programs.
const (
	GuestBinDir   = "/usr/local/bin"            // Image.Tools
	GuestShareDir = "/usr/local/share/spiagent" // Image.Share
)

// Kernel is a Debian kernel unpacked in the cache.
type Kernel struct {
	Image   string // boot/vmlinuz-VERSION
	ModRoot string // the unpacked package's root (lib/modules/VERSION inside)
	Version string
}

// CacheDir is where kernels are kept: $SPIAGENT_QEMU_CACHE, else
// $XDG_CACHE_HOME/spiagent/qemu, else /var/cache/spiagent/qemu.
func CacheDir() string {
	if d := os.Getenv("SPIAGENT_QEMU_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "spiagent", "qemu")
	}
	return "/var/cache/spiagent/qemu"
}

// FetchKernel resolves meta (linux-image-cloud-amd64 when empty, or
// $SPIAGENT_QEMU_KERNEL_META) to its versioned package, downloads and
// unpacks it into CacheDir unless it is there already (fetch-kernel.sh).
func FetchKernel(ctx context.Context, repo, meta string) (Kernel, error) {
	if meta == "" {
		meta = os.Getenv("SPIAGENT_QEMU_KERNEL_META")
	}
	if meta == "" {
		meta = "linux-image-cloud-amd64"
	}
	out, err := run(exec.CommandContext(ctx, filepath.Join(repo, "lab", "qemu", "fetch-kernel.sh"), CacheDir(), meta))
	if err != nil {
		return Kernel{}, fmt.Errorf("qemu: fetch kernel: %w", err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	k := Kernel{Image: env["KERNEL"], ModRoot: env["MODROOT"], Version: env["KVER"]}
	if k.Image == "" || k.ModRoot == "" || k.Version == "" {
		return Kernel{}, fmt.Errorf("qemu: fetch-kernel.sh printed %q", out)
	}
	return k, nil
}

// run runs cmd and returns its stdout; the error carries its stderr.
func run(cmd *exec.Cmd) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w\n%s", filepath.Base(cmd.Path), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// BuildStatic compiles a package of the repository as a static binary
// (CGO_ENABLED=0, -trimpath), with `go test -c` when test is set.
func BuildStatic(ctx context.Context, repo, pkg, out string, test bool) error {
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg}
	if test {
		args = []string{"test", "-c", "-trimpath", "-ldflags=-s -w", "-o", out, pkg}
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if _, err := run(cmd); err != nil {
		return fmt.Errorf("qemu: build %s: %w", pkg, err)
	}
	return nil
}

// Program is one thing the guest runs, in Image.Programs order, in its own
// directory /tests/NAME.
type Program struct {
	Name string // the directory's name, unique
	Bin  string // host path of a static binary
	// Test marks a Go test binary: it runs with -test.v, -test.count=1 and
	// -test.timeout, and the kernel command line's spiagent.run=REGEX
	// overrides Run.
	Test     bool
	Run      string        // -test.run
	Timeout  time.Duration // -test.timeout (150 s)
	Args     []string      // further arguments
	Env      []string      // KEY=VALUE for the program's environment
	Testdata string        // host directory copied as /tests/NAME/testdata
}

// Image is what goes into the initramfs besides busybox, ip and the modules.
type Image struct {
	Programs []Program
	Tools    []string          // host binaries copied into GuestBinDir
	Share    map[string]string // path under GuestShareDir -> host file or directory
	// StrongSwan packs charon, swanctl, their plugins and libraries from
	// the host's Debian packages (strongswan-charon, strongswan-swanctl).
	StrongSwan bool
	Iperf      bool // iperf3 and its libraries
}

// Build stages the payload in work and runs build-initramfs.sh. It returns
// the initramfs path and the script's summary line (sizes, modules).
func (img Image) Build(ctx context.Context, repo string, k Kernel, work string) (initrd, summary string, err error) {
	payload := filepath.Join(work, "payload")
	if err := os.RemoveAll(payload); err != nil {
		return "", "", err
	}
	if err := img.stage(payload); err != nil {
		return "", "", fmt.Errorf("qemu: stage payload: %w", err)
	}
	initrd = filepath.Join(work, "initramfs.cpio.gz")
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "lab", "qemu", "build-initramfs.sh"), initrd, payload)
	cmd.Env = append(os.Environ(), "KVER="+k.Version, "MODROOT="+k.ModRoot, "WORK="+filepath.Join(work, "build"),
		"STRONGSWAN="+flag01(img.StrongSwan), "IPERF="+flag01(img.Iperf))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("qemu: build-initramfs.sh: %w\n%s", err, stderr.String())
	}
	return initrd, strings.TrimSpace(stderr.String()), nil
}

func flag01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// stage lays out the payload tree: /tests/NAME/{NAME[.test],args,testdata},
// /etc/programs (the order), the tools and the shared files.
func (img Image) stage(root string) error {
	var order []string
	seen := map[string]bool{}
	for _, p := range img.Programs {
		if p.Name == "" || strings.ContainsAny(p.Name, "/ \n") || seen[p.Name] {
			return fmt.Errorf("program name %q: empty, repeated or not a plain name", p.Name)
		}
		seen[p.Name] = true
		order = append(order, p.Name)
		dir := filepath.Join(root, "tests", p.Name)
		exe := p.Name
		args := p.Args
		if p.Test {
			exe += ".test"
			timeout := p.Timeout
			if timeout == 0 {
				timeout = 150 * time.Second
			}
			args = append([]string{"-test.v", "-test.count=1", "-test.timeout=" + timeout.String()}, args...)
			if p.Run != "" {
				args = append(args, "-test.run="+p.Run)
			}
		}
		if err := copyPath(p.Bin, filepath.Join(dir, exe)); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "args"), []byte(strings.Join(args, "\n")+"\n"), 0o644); err != nil {
			return err
		}
		var env strings.Builder
		for _, kv := range p.Env {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" || strings.ContainsAny(k, " '\"$") || strings.Contains(v, "'") {
				return fmt.Errorf("program %s: env %q: want KEY=VALUE without quotes", p.Name, kv)
			}
			fmt.Fprintf(&env, "export %s='%s'\n", k, v)
		}
		if err := os.WriteFile(filepath.Join(dir, "env"), []byte(env.String()), 0o644); err != nil {
			return err
		}
		if p.Testdata != "" {
			if err := copyPath(p.Testdata, filepath.Join(dir, "testdata")); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "programs"), []byte(strings.Join(order, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	for _, t := range img.Tools {
		if err := copyPath(t, filepath.Join(root, GuestBinDir, filepath.Base(t))); err != nil {
			return err
		}
	}
	for dst, src := range img.Share {
		if filepath.IsAbs(dst) || strings.Contains(dst, "..") {
			return fmt.Errorf("share path %q must be relative", dst)
		}
		if err := copyPath(src, filepath.Join(root, GuestShareDir, dst)); err != nil {
			return err
		}
	}
	return nil
}

// copyPath copies a file (keeping its mode) or a directory tree.
func copyPath(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	cmd := exec.Command("cp", "-rL", src, dst)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cp %s %s: %w: %s", src, dst, err, out)
	}
	return nil
}

// Boot configures one qemu run.
type Boot struct {
	MemoryMiB int           // 1024
	CPUs      int           // 1
	Timeout   time.Duration // 10 min
	Append    []string      // more kernel command-line words (spiagent.run=REGEX)
	// Accel "kvm" uses KVM (SPIAGENT_QEMU_ACCEL=kvm); otherwise TCG. On the
	// build host /dev/kvm exists but KVM aborts, so TCG is the default.
	Accel   string
	Console io.Writer // the serial console (and qemu's own messages)
}

// ErrTimeout is returned when the guest did not power off in time.
var ErrTimeout = errors.New("qemu: the guest did not power off within the timeout")

// Run boots the kernel with the initramfs and waits for the guest to power
// off. The guest has no NIC: its traffic stays on its own veths.
func (b Boot) Run(ctx context.Context, k Kernel, initrd string) error {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return fmt.Errorf("qemu: qemu-system-x86_64 not found (scripts/deps.sh installs qemu-system-x86): %w", err)
	}
	if b.MemoryMiB == 0 {
		b.MemoryMiB = 1024
	}
	if b.CPUs == 0 {
		b.CPUs = 1
	}
	if b.Timeout == 0 {
		b.Timeout = 10 * time.Minute
	}
	if b.Accel == "" {
		b.Accel = os.Getenv("SPIAGENT_QEMU_ACCEL")
	}
	cmdline := append([]string{"console=ttyS0", "quiet", "panic=-1"}, b.Append...)
	args := []string{"-kernel", k.Image, "-initrd", initrd, "-append", strings.Join(cmdline, " "),
		"-nographic", "-no-reboot", "-m", fmt.Sprint(b.MemoryMiB), "-smp", fmt.Sprint(b.CPUs), "-nic", "none"}
	if b.Accel == "kvm" {
		args = append(args, "-enable-kvm", "-cpu", "host")
	}
	ctx, cancel := context.WithTimeout(ctx, b.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	out := b.Console
	if out == nil {
		out = io.Discard
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, out, out
	err = cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return ErrTimeout
	}
	if err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	return nil
}

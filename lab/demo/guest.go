package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spiagent/spiagent/lab/qemu"
)

// runInGuest runs this demo with -dataplane xfrm inside a Debian kernel
// under qemu (the guest of lab/qemu) and copies its narration to stdout.
func runInGuest(ctx context.Context, repo string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	repo, err := filepath.Abs(repo)
	if err != nil {
		return fail(err)
	}
	work, err := os.MkdirTemp("", "spiagent-demo-qemu-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(work)
	start := time.Now()
	k, err := qemu.FetchKernel(ctx, repo, "")
	if err != nil {
		return fail(err)
	}
	img := qemu.Image{Share: map[string]string{"examples/lab": filepath.Join(repo, "examples", "lab")}}
	for _, pkg := range []string{"spiagent", "spictl"} {
		bin := filepath.Join(work, pkg)
		if err := qemu.BuildStatic(ctx, repo, "./cmd/"+pkg, bin, false); err != nil {
			return fail(err)
		}
		img.Tools = append(img.Tools, bin)
	}
	demo := filepath.Join(work, "demo")
	if err := qemu.BuildStatic(ctx, repo, "./lab/demo", demo, false); err != nil {
		return fail(err)
	}
	img.Programs = []qemu.Program{{Name: "demo", Bin: demo, Args: []string{
		"-dataplane", "xfrm", "-guest", k.Version, "-repo", qemu.GuestShareDir, "-bin", qemu.GuestBinDir}}}
	initrd, _, err := img.Build(ctx, repo, k, work)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("Guest: Debian kernel %s, image built in %v; booting it under qemu (TCG)...\n\n", k.Version, time.Since(start).Round(time.Second))
	con := &console{out: os.Stdout, program: "demo", rc: -1}
	err = qemu.Boot{Timeout: 10 * time.Minute, Console: con}.Run(ctx, k, initrd)
	con.flush()
	switch {
	case ctx.Err() != nil:
		fmt.Println("\nInterrupted: qemu stopped (the guest's lab went with it).")
		return 1
	case err != nil || con.rc != 0:
		fmt.Fprintf(os.Stderr, "demo: the guest run failed (%v, exit %d); the end of its console:\n%s\n", err, con.rc, strings.Join(con.tail, "\n"))
		return 1
	}
	fmt.Printf("\nThe guest powered off; %v in all.\n", time.Since(start).Round(time.Second))
	return 0
}

// console copies the guest program's own output from the serial console,
// leaving out the kernel's and /init's lines, and reads its exit status.
type console struct {
	out     io.Writer
	program string
	buf     []byte
	in      bool
	rc      int
	tail    []string
}

func (c *console) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	for {
		i := bytes.IndexByte(c.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		c.line(strings.TrimRight(string(c.buf[:i]), "\r"))
		c.buf = c.buf[i+1:]
	}
}

func (c *console) flush() {
	if len(c.buf) > 0 {
		c.line(strings.TrimRight(string(c.buf), "\r"))
		c.buf = nil
	}
}

func (c *console) line(l string) {
	c.tail = append(c.tail, l)
	if len(c.tail) > 30 {
		c.tail = c.tail[1:]
	}
	switch {
	case strings.Contains(l, "SPIAGENT-QEMU: running "+c.program+" "):
		c.in = true
	case strings.Contains(l, "SPIAGENT-QEMU: "+c.program+" exited "):
		c.in = false
		f := strings.Fields(l[strings.Index(l, " exited ")+len(" exited "):])
		if len(f) > 0 {
			c.rc, _ = strconv.Atoi(f[0])
		}
	case c.in:
		fmt.Fprintln(c.out, l)
	}
}

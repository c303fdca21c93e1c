package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateCommand(t *testing.T) {
	seed, err := os.ReadFile("../../examples/seed/router-a.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		desc     string
		file     string
		wantCode int
		want     []string // substrings of stdout, one per expected line
		lines    int      // expected number of output lines (0: don't check)
	}{
		{desc: "seed router A", file: "../../examples/seed/router-a.json", wantCode: 0, want: []string{"valid"}, lines: 1},
		{desc: "seed router B", file: "../../examples/seed/router-b.json", wantCode: 0, want: []string{"valid"}, lines: 1},
		{desc: "lab router A", file: "../../examples/lab/router-a.json", wantCode: 0, want: []string{"valid"}, lines: 1},
		{desc: "lab router B", file: "../../examples/lab/router-b.json", wantCode: 0, want: []string{"valid"}, lines: 1},
		{desc: "trailing garbage byte", file: write("garbage.json", string(seed)+"x"), wantCode: 1},
		{desc: "missing file", file: filepath.Join(dir, "nope.json"), wantCode: 1, want: []string{"no such file"}},
		{desc: "lifetime out of range and missing transform set", file: write("bad.json",
			strings.Replace(strings.Replace(string(seed), `"lifetime": 180`, `"lifetime": 59`, 1),
				`"auth2"
                  ]`, `"nosuch"
                  ]`, 1)),
			wantCode: 1, want: []string{"lifetime", "nosuch"}, lines: 2},
		{desc: "peer without a key", file: write("nokey.json", strings.Replace(string(seed), `"10.2.2.2"
                  ]`, `"10.9.9.9"
                  ]`, 1)), wantCode: 1, want: []string{"10.9.9.9"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run([]string{"validate", tc.file}, nil, &out, &errb)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.wantCode, out.String(), errb.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			if n := strings.Count(strings.TrimSpace(out.String()), "\n") + 1; tc.lines > 0 && n != tc.lines {
				t.Errorf("%d lines, want %d:\n%s", n, tc.lines, out.String())
			}
			if strings.Contains(out.String()+errb.String(), "1234") {
				t.Errorf("the pre-shared key leaked:\n%s%s", out.String(), errb.String())
			}
		})
	}
}

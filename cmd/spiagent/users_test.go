package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiagent/spiagent/agent/auth"
)

func TestUserCommand(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		desc     string
		args     []string
		stdin    string
		wantCode int
		stdout   string
		stderr   string
	}{
		{"add", []string{"add", "alice", "--role", "read-write", "--data-dir", dir}, "pw one\n", 0, "user alice (read-write) written to " + filepath.Join(dir, "users"), ""},
		{"add read-only to a users file", []string{"add", "bob", "--role", "read-only", "--users-file", filepath.Join(dir, "users")}, "pw2", 0, "user bob (read-only)", ""},
		{"bad role", []string{"add", "carol", "--role", "admin", "--data-dir", dir}, "x\n", 2, "", `unknown role "admin"`},
		{"no role", []string{"add", "carol", "--data-dir", dir}, "x\n", 2, "", "--role"},
		{"empty password", []string{"add", "carol", "--role", "read-only", "--data-dir", dir}, "\n", 1, "", "empty password"},
		{"flags before the name", []string{"add", "--role", "read-only", "carol"}, "x\n", 2, "", "the user name comes first"},
		{"del", []string{"del", "bob", "--data-dir", dir}, "", 0, "deleted user bob", ""},
		{"del unknown", []string{"del", "bob", "--data-dir", dir}, "", 1, "", `no user "bob"`},
		{"no verb", []string{"list"}, "", 2, "", "usage: spiagent user add"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(append([]string{"user"}, tc.args...), strings.NewReader(tc.stdin), &out, &errOut)
			if code != tc.wantCode || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errOut.String(), tc.stderr) {
				t.Errorf("exit %d stdout %q stderr %q; want %d, %q, %q", code, out.String(), errOut.String(), tc.wantCode, tc.stdout, tc.stderr)
			}
		})
	}
	u, err := auth.OpenUsers(filepath.Join(dir, "users"))
	if err != nil {
		t.Fatal(err)
	}
	if role, err := u.Authenticate("alice", "pw one"); err != nil || role != auth.RoleReadWrite {
		t.Errorf("alice: %v %v (the password is the whole first line)", role, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "users"))
	if strings.Contains(string(b), "pw one") {
		t.Error("clear password in the users file")
	}
}

package auth

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	u, err := OpenUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Authenticate("alice", "x"); !errors.Is(err, ErrNoUsers) {
		t.Fatalf("no file: err = %v, want ErrNoUsers", err)
	}
	if err := AddUser(path, "alice", RoleReadWrite, []byte("s3cret")); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(path, "bob", RoleReadOnly, []byte("hunter2")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("users file mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "s3cret") || strings.Contains(string(b), "hunter2") {
		t.Fatalf("users file holds a clear password:\n%s", b)
	}

	tests := []struct {
		desc, name, pass string
		want             Role
		wantErr          error
	}{
		{"read-write user", "alice", "s3cret", RoleReadWrite, nil},
		{"cached second login", "alice", "s3cret", RoleReadWrite, nil},
		{"read-only user", "bob", "hunter2", RoleReadOnly, nil},
		{"wrong password", "alice", "hunter2", RoleNone, ErrBadCredentials},
		{"wrong password after cache", "alice", "s3cret ", RoleNone, ErrBadCredentials},
		{"unknown user", "carol", "s3cret", RoleNone, ErrBadCredentials},
		{"empty password", "bob", "", RoleNone, ErrBadCredentials},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := u.Authenticate(tc.name, tc.pass)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Errorf("Authenticate(%q) = %v, %v; want %v, %v", tc.name, got, err, tc.want, tc.wantErr)
			}
		})
	}

	// Deleting a user takes effect without reopening.
	if err := DelUser(path, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Authenticate("alice", "s3cret"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("deleted user: err = %v, want ErrBadCredentials", err)
	}
	if err := DelUser(path, "alice"); err == nil || !strings.Contains(err.Error(), `no user "alice"`) {
		t.Errorf("deleting twice: err = %v", err)
	}
}

func TestAddUserErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	tests := []struct {
		desc, name string
		role       Role
		pass       string
		wantErr    string
	}{
		{"bad name", "a b", RoleReadOnly, "x", "bad user name"},
		{"no role", "a", RoleNone, "x", "bad role"},
		{"empty password", "a", RoleReadOnly, "", "empty password"},
		{"long password", "a", RoleReadOnly, strings.Repeat("x", 73), "72 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			err := AddUser(path, tc.name, tc.role, []byte(tc.pass))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	if err := os.WriteFile(path, []byte("alice admin $2a$10$xx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenUsers(path); err == nil || !strings.Contains(err.Error(), `unknown role "admin"`) {
		t.Errorf("corrupt file: err = %v", err)
	}
}

func TestSelfSignedCert(t *testing.T) {
	dir := t.TempDir()
	c1, err := LoadServerCert("", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !c1.Generated {
		t.Error("first start did not generate")
	}
	c2, err := LoadServerCert("", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Generated || c2.Fingerprint != c1.Fingerprint {
		t.Errorf("second start: generated=%v fingerprint %s vs %s", c2.Generated, c2.Fingerprint, c1.Fingerprint)
	}
	fi, _ := os.Stat(filepath.Join(dir, GeneratedKeyFile))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(filepath.Join(dir, GeneratedCertFile))
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if Fingerprint(blk.Bytes) != c1.Fingerprint || len(c1.Fingerprint) != 95 {
		t.Errorf("fingerprint %q", c1.Fingerprint)
	}
	if _, err := LoadServerCert("a.pem", "", dir); err == nil {
		t.Error("cert without key accepted")
	}
}

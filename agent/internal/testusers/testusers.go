// Package testusers writes users files for the northbound servers' tests:
// one read-write and one read-only user, hashed with bcrypt once per test
// binary (bcrypt is deliberately slow) and copied into each test's dir.
package testusers

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/spiagent/spiagent/agent/auth"
)

// Set is a pair of users.
type Set struct {
	RW, RWPass string
	RO, ROPass string

	once sync.Once
	b    []byte
	err  error
}

// File writes the users file into dir and returns its path.
func (s *Set) File(t testing.TB, dir string) string {
	t.Helper()
	s.once.Do(func() {
		tmp, err := os.MkdirTemp("", "testusers")
		if err != nil {
			s.err = err
			return
		}
		defer os.RemoveAll(tmp)
		p := filepath.Join(tmp, "users")
		if s.err = auth.AddUser(p, s.RW, auth.RoleReadWrite, []byte(s.RWPass)); s.err != nil {
			return
		}
		if s.err = auth.AddUser(p, s.RO, auth.RoleReadOnly, []byte(s.ROPass)); s.err != nil {
			return
		}
		s.b, s.err = os.ReadFile(p)
	})
	if s.err != nil {
		t.Fatalf("users file: %v", s.err)
	}
	p := filepath.Join(dir, "users")
	if err := os.WriteFile(p, s.b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

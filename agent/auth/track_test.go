package auth

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestTrackEndsRevokedSessions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	for _, u := range []struct {
		name string
		role Role
	}{{"alice", RoleReadWrite}, {"bob", RoleReadOnly}, {"carol", RoleReadWrite}} {
		if err := AddUser(path, u.name, u.role, []byte("pw")); err != nil {
			t.Fatal(err)
		}
	}
	u, err := OpenUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan *RevokedError, 10)
	end := func(e *RevokedError) { ended <- e }
	u.Track("alice", RoleReadOnly, end)  // a subscription: read-only is enough
	u.Track("alice", RoleReadWrite, end) // a NETCONF session of a writer
	u.Track("bob", RoleReadOnly, end)
	untrack := u.Track("carol", RoleReadOnly, end)
	untrack()

	// alice loses read-write; bob and carol are deleted.
	if err := AddUser(path, "alice", RoleReadOnly, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	if err := DelUser(path, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := DelUser(path, "carol"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go u.Watch(ctx, 10*time.Millisecond)
	got := map[string]string{}
	timeout := time.After(10 * time.Second)
	for len(got) < 2 {
		select {
		case e := <-ended:
			got[e.User] = e.Error()
		case <-timeout:
			t.Fatalf("ended so far: %v", got)
		}
	}
	want := map[string]string{
		"alice": `user "alice" no longer has role read-write (now read-only): session ended`,
		"bob":   `user "bob" was removed from the users file: session ended`,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	// alice's read-only session stays; nothing else ends.
	select {
	case e := <-ended:
		t.Fatalf("also ended: %v", e)
	case <-time.After(100 * time.Millisecond):
	}
	if n := len(u.tracked); n != 1 {
		t.Fatalf("%d sessions tracked, want alice's read-only one", n)
	}
}

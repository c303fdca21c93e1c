package netconf

import (
	"slices"
	"testing"
	"time"
)

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConfirmedCommit(t *testing.T) {
	e := newEnv(t, nil)
	edit := editCandidate(newTS, "")
	t.Run("capability", func(t *testing.T) {
		c := e.dial(rwUser, rwPass, true)
		if !slices.Contains(c.caps, capConfirmed11) {
			t.Fatalf("no %s in %v", capConfirmed11, c.caps)
		}
	})
	t.Run("timeout reverts", func(t *testing.T) {
		c := e.dial(rwUser, rwPass, true)
		isOK(t, c.rpc(edit))
		isOK(t, c.rpc(`<commit><confirmed/><confirm-timeout>1</confirm-timeout></commit>`))
		if !hasTS(e, "ts-new") {
			t.Fatal("confirmed commit not applied")
		}
		waitFor(t, "the revert", func() bool { return !hasTS(e, "ts-new") })
	})
	t.Run("confirming commit keeps it", func(t *testing.T) {
		c := e.dial(rwUser, rwPass, false)
		other := e.dial(rwUser, rwPass, true)
		isOK(t, c.rpc(edit))
		isOK(t, c.rpc(`<commit><confirmed/><confirm-timeout>3</confirm-timeout></commit>`))
		wantErr(t, other.rpc(`<commit/>`), "protocol", "in-use", "")
		wantErr(t, other.rpc(`<cancel-commit/>`), "protocol", "in-use", "")
		isOK(t, c.rpc(`<commit/>`))
		time.Sleep(3500 * time.Millisecond)
		if !hasTS(e, "ts-new") {
			t.Fatal("confirmed change reverted")
		}
		wantErr(t, c.rpc(`<cancel-commit/>`), "protocol", "operation-failed", "")
	})
	t.Run("cancel-commit", func(t *testing.T) {
		c := e.dial(rwUser, rwPass, true)
		isOK(t, c.rpc(editCandidate(`<crypto xmlns="`+cryptoNS+`"><transform-sets><transform-set operation="delete"><name>ts-new</name></transform-set></transform-sets></crypto>`, "")))
		isOK(t, c.rpc(`<commit><confirmed/></commit>`))
		if hasTS(e, "ts-new") {
			t.Fatal("confirmed delete not applied")
		}
		isOK(t, c.rpc(`<cancel-commit/>`))
		if !hasTS(e, "ts-new") {
			t.Fatal("cancel-commit did not restore")
		}
	})
	t.Run("session end reverts", func(t *testing.T) {
		c := e.dial(rwUser, rwPass, true)
		isOK(t, c.rpc(editCandidate(`<crypto xmlns="`+cryptoNS+`"><transform-sets><transform-set operation="delete"><name>ts-new</name></transform-set></transform-sets></crypto>`, "")))
		isOK(t, c.rpc(`<commit><confirmed/></commit>`))
		isOK(t, c.rpc(`<close-session/>`))
		waitFor(t, "the revert at session end", func() bool { return hasTS(e, "ts-new") })
	})
	t.Run("persist", func(t *testing.T) {
		c := e.dial(rwUser, rwPass, true)
		isOK(t, c.rpc(editCandidate(`<crypto xmlns="`+cryptoNS+`"><transform-sets><transform-set operation="delete"><name>ts-new</name></transform-set></transform-sets></crypto>`, "")))
		isOK(t, c.rpc(`<commit><confirmed/><persist>tok-1</persist></commit>`))
		isOK(t, c.rpc(`<close-session/>`))
		time.Sleep(200 * time.Millisecond)
		if hasTS(e, "ts-new") {
			t.Fatal("persistent confirmed commit reverted at session end")
		}
		d := e.dial(rwUser, rwPass, true)
		wantErr(t, d.rpc(`<commit/>`), "protocol", "invalid-value", "")
		wantErr(t, d.rpc(`<commit><persist-id>wrong</persist-id></commit>`), "protocol", "invalid-value", "")
		isOK(t, d.rpc(`<commit><persist-id>tok-1</persist-id></commit>`))
		if hasTS(e, "ts-new") {
			t.Fatal("confirmation restored the old config")
		}
		wantErr(t, d.rpc(`<commit><persist-id>tok-1</persist-id></commit>`), "protocol", "invalid-value", "")
	})
}

package netconf

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/spiagent/spiagent/agent/confirm"
	"github.com/spiagent/spiagent/agent/gnmi"
	"github.com/spiagent/spiagent/store"
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

// crossEnv is a NETCONF server and a gNMI server (lab mode, plaintext on
// loopback) over one store, sharing one confirmed commit, as `spiagent run`
// wires them.
func crossEnv(t *testing.T) (*env, gpb.GNMIClient) {
	t.Helper()
	var m *confirm.Manager
	e := newEnv(t, func(c *Config) {
		m = confirm.New(c.Store, confirm.Options{Log: c.Log})
		c.Confirm = m
	})
	g, err := gnmi.New(gnmi.Config{Store: e.st, State: e.tel, Lab: true, Confirm: m})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gNMI Serve: %v", err)
		}
		m.Shutdown(context.Background())
	})
	return e, gpb.NewGNMIClient(conn)
}

func gnmiLifetime(n uint64, ext *gnmi_ext.Commit) *gpb.SetRequest {
	p := &gpb.Path{Elem: []*gpb.PathElem{{Name: "crypto"}, {Name: "isakmp"}, {Name: "policies"},
		{Name: "policy", Key: map[string]string{"priority": "1"}}, {Name: "config"}, {Name: "lifetime"}}}
	req := &gpb.SetRequest{Update: []*gpb.Update{{Path: p, Val: &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: n}}}}}
	if ext != nil {
		req.Extension = []*gnmi_ext.Extension{{Ext: &gnmi_ext.Extension_Commit{Commit: ext}}}
	}
	return req
}

func ncLifetime(n int) string {
	return fmt.Sprintf(`<edit-config><target><running/></target><config><crypto xmlns="%s"><isakmp><policies><policy><priority>1</priority><config><lifetime>%d</lifetime></config></policy></policies></isakmp></crypto></config></edit-config>`, cryptoNS, n)
}

func lifetimeOf(e *env) uint32 {
	return e.st.Running().Root.GetCrypto().GetIsakmp().GetPolicies().GetPolicy(1).GetConfig().GetLifetime()
}

// TestConfirmedCommitAcrossProtocols: one pending confirmed commit for the
// datastore, whichever protocol made it; nobody else changes running while
// it waits, so its rollback undoes nobody else's change.
func TestConfirmedCommitAcrossProtocols(t *testing.T) {
	e, g := crossEnv(t)
	ctx := context.Background()
	t.Run("gNMI pending holds off NETCONF", func(t *testing.T) {
		start := &gnmi_ext.Commit{Id: "g1", Action: &gnmi_ext.Commit_Commit{Commit: &gnmi_ext.CommitRequest{RollbackDuration: durationpb.New(time.Hour)}}}
		if _, err := g.Set(ctx, gnmiLifetime(500, start)); err != nil {
			t.Fatal(err)
		}
		c := e.dial(rwUser, rwPass, true)
		r := wantErr(t, c.rpc(ncLifetime(600)), "protocol", "in-use", "")
		if !strings.Contains(r["error-message"], `commit "g1" is pending confirmation`) {
			t.Errorf("error %v does not name the gNMI commit", r)
		}
		isOK(t, c.rpc(editCandidate(newTS, "")))
		wantErr(t, c.rpc(`<commit/>`), "protocol", "in-use", "")
		wantErr(t, c.rpc(`<cancel-commit/>`), "protocol", "in-use", "")
		isOK(t, c.rpc(`<discard-changes/>`))
		if got := lifetimeOf(e); got != 500 || hasTS(e, "ts-new") {
			t.Fatalf("NETCONF changed running while a gNMI commit was pending (lifetime %d)", got)
		}
		cancelReq := &gpb.SetRequest{Extension: []*gnmi_ext.Extension{{Ext: &gnmi_ext.Extension_Commit{Commit: &gnmi_ext.Commit{Id: "g1", Action: &gnmi_ext.Commit_Cancel{Cancel: &gnmi_ext.CommitCancel{}}}}}}}
		if _, err := g.Set(ctx, cancelReq); err != nil {
			t.Fatal(err)
		}
		if got := lifetimeOf(e); got != 180 {
			t.Errorf("lifetime %d after the gNMI cancel, want 180", got)
		}
	})
	t.Run("NETCONF pending holds off gNMI; the owner's 60 commits roll back", func(t *testing.T) {
		c := e.dial(rwUser, rwPass, true)
		isOK(t, c.rpc(strings.Replace(ncLifetime(500), "<running/>", "<candidate/>", 1)))
		isOK(t, c.rpc(`<commit><confirmed/><confirm-timeout>3600</confirm-timeout></commit>`))
		if got := lifetimeOf(e); got != 500 {
			t.Fatalf("confirmed commit not applied: lifetime %d", got)
		}
		_, err := g.Set(ctx, gnmiLifetime(900, nil))
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "NETCONF session") {
			t.Fatalf("gNMI Set during a NETCONF confirmed commit: %v", err)
		}
		confirmReq := &gpb.SetRequest{Extension: []*gnmi_ext.Extension{{Ext: &gnmi_ext.Extension_Commit{Commit: &gnmi_ext.Commit{Id: "x", Action: &gnmi_ext.Commit_Confirm{Confirm: &gnmi_ext.CommitConfirm{}}}}}}}
		if _, err := g.Set(ctx, confirmReq); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("gNMI confirm of a NETCONF commit: %v", err)
		}
		// More commits than the store's history keeps, all by the owner.
		for i := range store.HistoryLen + 10 {
			isOK(t, c.rpc(ncLifetime(1000+i)))
		}
		isOK(t, c.rpc(`<cancel-commit/>`))
		if got := lifetimeOf(e); got != 180 {
			t.Errorf("lifetime %d after cancel-commit, want the 180 from before the confirmed commit", got)
		}
		if _, err := g.Set(ctx, gnmiLifetime(300, nil)); err != nil {
			t.Errorf("gNMI Set after the cancel: %v", err)
		}
	})
}

package gnmi

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
)

func commitExt(id string, action any) []*gnmi_ext.Extension {
	c := &gnmi_ext.Commit{Id: id}
	switch a := action.(type) {
	case *gnmi_ext.Commit_Commit:
		c.Action = a
	case *gnmi_ext.Commit_Confirm:
		c.Action = a
	case *gnmi_ext.Commit_Cancel:
		c.Action = a
	case *gnmi_ext.Commit_SetRollbackDuration:
		c.Action = a
	}
	return []*gnmi_ext.Extension{{Ext: &gnmi_ext.Extension_Commit{Commit: c}}}
}

func commitAction(d time.Duration) *gnmi_ext.Commit_Commit {
	return &gnmi_ext.Commit_Commit{Commit: &gnmi_ext.CommitRequest{RollbackDuration: durationpb.New(d)}}
}

const lifetimePath = "/crypto/isakmp/policies/policy[priority=1]/config/lifetime"

func setLifetime(t *testing.T, n uint64, ext []*gnmi_ext.Extension) *gpb.SetRequest {
	return &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, lifetimePath), Val: uintVal(n)}}, Extension: ext}
}

func lifetime(t *testing.T, e *env) uint32 {
	return e.st.Running().Root.GetCrypto().GetIsakmp().GetPolicies().GetPolicy(1).GetConfig().GetLifetime()
}

func waitLifetime(t *testing.T, e *env, want uint32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for lifetime(t, e) != want {
		if time.Now().After(deadline) {
			t.Fatalf("lifetime = %d, want %d", lifetime(t, e), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// shorten re-arms commit id's rollback timer with d. Tests start confirmed
// commits with a long timer and shorten it once they have checked what
// must hold while the commit is pending, so that a loaded machine cannot
// roll back before the checks.
func shorten(t *testing.T, c gpb.GNMIClient, id string, d time.Duration) {
	t.Helper()
	ext := &gnmi_ext.Commit_SetRollbackDuration{SetRollbackDuration: &gnmi_ext.CommitSetRollbackDuration{RollbackDuration: durationpb.New(d)}}
	if _, err := c.Set(rw(), &gpb.SetRequest{Extension: commitExt(id, ext)}); err != nil {
		t.Fatal(err)
	}
}

func TestCommitConfirmed(t *testing.T) {
	t.Run("rolled back unless confirmed", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		c := e.client()
		if _, err := c.Set(rw(), setLifetime(t, 500, commitExt("c1", commitAction(time.Hour)))); err != nil {
			t.Fatal(err)
		}
		if got := lifetime(t, e); got != 500 {
			t.Fatalf("lifetime %d after confirmed-commit Set", got)
		}
		// While pending, other changes are refused.
		_, err := c.Set(rw(), setLifetime(t, 600, nil))
		checkErr(t, err, codes.FailedPrecondition, `commit "c1" is pending confirmation`)
		_, err = c.Set(rw(), setLifetime(t, 600, commitExt("c2", commitAction(time.Minute))))
		checkErr(t, err, codes.FailedPrecondition, `commit "c1" is pending confirmation`)
		shorten(t, c, "c1", 200*time.Millisecond)
		waitLifetime(t, e, 180)
		if h := e.st.History(); !strings.Contains(h[len(h)-1].Comment, "rollback") {
			t.Errorf("last commit %+v is not the rollback", h[len(h)-1])
		}
		// The line is written just after the rollback commit lands.
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(e.log.String(), "confirmed commit rolled back") {
			if time.Now().After(deadline) {
				t.Fatal("rollback not logged")
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The slot is free again.
		if _, err := c.Set(rw(), setLifetime(t, 700, nil)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("confirmed in time stays", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		c := e.client()
		if _, err := c.Set(rw(), setLifetime(t, 500, commitExt("c1", commitAction(3*time.Second)))); err != nil {
			t.Fatal(err)
		}
		_, err := c.Set(rw(), &gpb.SetRequest{Extension: commitExt("other", &gnmi_ext.Commit_Confirm{Confirm: &gnmi_ext.CommitConfirm{}})})
		checkErr(t, err, codes.FailedPrecondition, `no pending commit with id "other"`)
		if _, err := c.Set(rw(), &gpb.SetRequest{Extension: commitExt("c1", &gnmi_ext.Commit_Confirm{Confirm: &gnmi_ext.CommitConfirm{}})}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3500 * time.Millisecond)
		if got := lifetime(t, e); got != 500 {
			t.Errorf("confirmed commit rolled back: lifetime %d", got)
		}
	})
	t.Run("cancel rolls back at once; extend the timer", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		c := e.client()
		if _, err := c.Set(rw(), setLifetime(t, 500, commitExt("c1", commitAction(2*time.Second)))); err != nil {
			t.Fatal(err)
		}
		shorten(t, c, "c1", time.Hour)
		time.Sleep(2500 * time.Millisecond)
		if got := lifetime(t, e); got != 500 {
			t.Fatalf("extended commit rolled back early: %d", got)
		}
		if _, err := c.Set(rw(), &gpb.SetRequest{Extension: commitExt("c1", &gnmi_ext.Commit_Cancel{Cancel: &gnmi_ext.CommitCancel{}})}); err != nil {
			t.Fatal(err)
		}
		if got := lifetime(t, e); got != 180 {
			t.Errorf("cancel did not roll back: %d", got)
		}
	})
	// The first config pushed onto a fresh datastore (commit 0, in no
	// history) with commit confirmed goes away unless confirmed.
	t.Run("first config on a fresh datastore", func(t *testing.T) {
		e := newEnv(t, envOpts{fresh: true})
		c := e.client()
		seed, err := os.ReadFile("../../examples/lab/router-a.json")
		if err != nil {
			t.Fatal(err)
		}
		req := &gpb.SetRequest{Replace: []*gpb.Update{{Path: &gpb.Path{}, Val: ietfVal(string(seed))}}, Extension: commitExt("first", commitAction(time.Hour))}
		if _, err := c.Set(rw(), req); err != nil {
			t.Fatal(err)
		}
		if e.st.Running().Root.GetCrypto() == nil {
			t.Fatal("confirmed commit not applied")
		}
		shorten(t, c, "first", 200*time.Millisecond)
		deadline := time.Now().Add(5 * time.Second)
		for e.st.Running().Root.GetCrypto() != nil {
			if time.Now().After(deadline) {
				t.Fatal("the unconfirmed first config was not rolled back")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if strings.Contains(e.log.String(), "level=ERROR") {
			t.Errorf("errors logged:\n%s", e.log.String())
		}
	})
	t.Run("bad extensions", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		c := e.client()
		before := e.st.Running().ID
		tests := []struct {
			desc    string
			req     *gpb.SetRequest
			wantErr string
		}{
			{"no id", setLifetime(t, 1000, commitExt("", commitAction(time.Second))), "an id is required"},
			{"no action", setLifetime(t, 1000, commitExt("x", nil)), "no action"},
			{"no duration", setLifetime(t, 1000, commitExt("x", &gnmi_ext.Commit_Commit{Commit: &gnmi_ext.CommitRequest{}})), "rollback_duration is required"},
			{"negative duration", setLifetime(t, 1000, commitExt("x", commitAction(-time.Second))), "out of range"},
			{"confirm with ops", setLifetime(t, 1000, commitExt("x", &gnmi_ext.Commit_Confirm{Confirm: &gnmi_ext.CommitConfirm{}})), "take no operations"},
		}
		for _, tc := range tests {
			_, err := c.Set(rw(), tc.req)
			checkErr(t, err, codes.InvalidArgument, tc.wantErr)
		}
		if e.st.Running().ID != before {
			t.Error("a refused confirmed commit changed the config")
		}
	})
}

func TestClearRPC(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client()
	rpcPath := &gpb.Path{Origin: "spiagent-crypto", Elem: []*gpb.PathElem{{Name: "clear-crypto-sa"}}}
	tests := []struct {
		desc     string
		req      *gpb.SetRequest
		user     func() (string, string)
		wantCode codes.Code
		wantErr  string
		want     *ClearRequest
	}{
		{desc: "all SAs", req: &gpb.SetRequest{Update: []*gpb.Update{{Path: rpcPath, Val: jsonVal(`{}`)}}}, want: &ClearRequest{}},
		{desc: "by peer, JSON_IETF with input wrapper and module names",
			req:  &gpb.SetRequest{Update: []*gpb.Update{{Path: rpcPath, Val: ietfVal(`{"spiagent-crypto:input":{"spiagent-crypto:peer":"192.0.2.2","no-notify":true}}`)}}},
			want: &ClearRequest{Peer: "192.0.2.2", NoNotify: true}},
		{desc: "by map with isakmp, module-qualified name and no origin",
			req:  &gpb.SetRequest{Update: []*gpb.Update{{Path: &gpb.Path{Elem: []*gpb.PathElem{{Name: "spiagent-crypto:clear-crypto-sa"}}}, Val: jsonVal(`{"crypto-map":"testtag1","isakmp":true}`)}}},
			want: &ClearRequest{CryptoMap: "testtag1", ISAKMP: true}},
		{desc: "bad peer", req: &gpb.SetRequest{Update: []*gpb.Update{{Path: rpcPath, Val: jsonVal(`{"peer":"2001:db8::1"}`)}}},
			wantCode: codes.InvalidArgument, wantErr: `update /clear-crypto-sa: peer: "2001:db8::1" is not an IPv4 address`},
		{desc: "unknown input", req: &gpb.SetRequest{Update: []*gpb.Update{{Path: rpcPath, Val: jsonVal(`{"all":true}`)}}},
			wantCode: codes.InvalidArgument, wantErr: `unknown input "all"`},
		{desc: "wrong type", req: &gpb.SetRequest{Update: []*gpb.Update{{Path: rpcPath, Val: jsonVal(`{"isakmp":"yes"}`)}}},
			wantCode: codes.InvalidArgument, wantErr: "isakmp: want true or false"},
		{desc: "not JSON", req: &gpb.SetRequest{Update: []*gpb.Update{{Path: rpcPath, Val: strVal("all")}}},
			wantCode: codes.InvalidArgument, wantErr: "must be a JSON object"},
		{desc: "mixed with config", req: &gpb.SetRequest{Update: []*gpb.Update{{Path: rpcPath, Val: jsonVal(`{}`)}, {Path: path(t, lifetimePath), Val: uintVal(300)}}},
			wantCode: codes.InvalidArgument, wantErr: "must be the only operation"},
		{desc: "delete of the RPC", req: &gpb.SetRequest{Delete: []*gpb.Path{rpcPath}},
			wantCode: codes.InvalidArgument, wantErr: "must be the only operation"},
		{desc: "sub-path", req: &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, "/clear-crypto-sa/input/peer"), Val: jsonVal(`"192.0.2.2"`)}}},
			wantCode: codes.InvalidArgument, wantErr: "the RPC's path is /clear-crypto-sa"},
		{desc: "read-only user", req: &gpb.SetRequest{Update: []*gpb.Update{{Path: rpcPath, Val: jsonVal(`{}`)}}},
			user: func() (string, string) { return roUser, roPass }, wantCode: codes.PermissionDenied, wantErr: "needs read-write"},
	}
	before := len(e.st.History())
	beforeID := e.st.Running().ID
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			n := len(e.ops.Calls())
			ctx := rw()
			if tc.user != nil {
				ctx = as(tc.user())
			}
			var trailer metadata.MD
			resp, err := c.Set(ctx, tc.req, grpc.Trailer(&trailer))
			if checkErr(t, err, tc.wantCode, tc.wantErr) {
				if len(e.ops.Calls()) != n {
					t.Error("a refused request reached Operations")
				}
				return
			}
			calls := e.ops.Calls()
			if len(calls) != n+1 {
				t.Fatalf("%d calls, want one more than %d", len(calls), n)
			}
			if d := cmp.Diff(*tc.want, calls[n]); d != "" {
				t.Errorf("ClearRequest (-want +got):\n%s", d)
			}
			if got := trailer.Get(TrailerIPsecSAsClear); len(got) != 1 || got[0] != "2" {
				t.Errorf("trailer %v", trailer)
			}
			if len(resp.GetResponse()) != 1 || resp.GetResponse()[0].GetOp() != gpb.UpdateResult_UPDATE {
				t.Errorf("response %v", resp)
			}
		})
	}
	if len(e.st.History()) != before || e.st.Running().ID != beforeID {
		t.Error("the RPC made a config commit")
	}
	// An engine error is reported; no engine at all is Unavailable.
	e.ops.err = errors.New("engine busy")
	_, err := c.Set(rw(), &gpb.SetRequest{Update: []*gpb.Update{{Path: rpcPath, Val: jsonVal(`{}`)}}})
	checkErr(t, err, codes.Aborted, "engine busy")
	e2 := newEnv(t, envOpts{cfg: func(c *Config) { c.Ops = nil }})
	_, err = e2.client().Set(rw(), &gpb.SetRequest{Update: []*gpb.Update{{Path: rpcPath, Val: jsonVal(`{}`)}}})
	checkErr(t, err, codes.Unavailable, "no IPsec engine")
}

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestConfirmedCommitAcrossRestarts: a confirmed commit that the agent
// cannot confirm any more is rolled back, whether the agent stops cleanly
// (SIGTERM) or dies (SIGKILL: rolled back at the next start). The first
// config on a fresh datastore is the case that matters most.
func TestConfirmedCommitAcrossRestarts(t *testing.T) {
	bin := buildAgent(t)
	seed, err := os.ReadFile("../../examples/lab/router-a.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, how := range []string{"SIGTERM", "SIGKILL"} {
		t.Run(how, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			p := startAgent(t, bin, dir, "--insecure", "--lab")
			c := labClient(t, p.addr)
			ext := &gnmi_ext.Commit{Id: "first", Action: &gnmi_ext.Commit_Commit{Commit: &gnmi_ext.CommitRequest{RollbackDuration: durationpb.New(time.Hour)}}}
			req := &gpb.SetRequest{Replace: []*gpb.Update{{Path: &gpb.Path{}, Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: seed}}}},
				Extension: []*gnmi_ext.Extension{{Ext: &gnmi_ext.Extension_Commit{Commit: ext}}}}
			if _, err := c.Set(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			if !hasCrypto(t, c) {
				t.Fatal("confirmed commit not applied")
			}
			if how == "SIGTERM" {
				p.stop(t)
			} else {
				p.cmd.Process.Kill()
				<-p.done
			}
			p = startAgent(t, bin, dir, "--insecure", "--lab")
			defer p.stop(t)
			if hasCrypto(t, labClient(t, p.addr)) {
				t.Errorf("the unconfirmed first config survived a %s:\n%s", how, p.log)
			}
		})
	}
}

func labClient(t *testing.T, addr string) gpb.GNMIClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return gpb.NewGNMIClient(conn)
}

// hasCrypto reports whether the running config has any crypto config.
func hasCrypto(t *testing.T, c gpb.GNMIClient) bool {
	t.Helper()
	resp, err := c.Get(context.Background(), &gpb.GetRequest{Path: []*gpb.Path{{}}, Type: gpb.GetRequest_CONFIG, Encoding: gpb.Encoding_JSON_IETF})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			if strings.Contains(string(u.GetVal().GetJsonIetfVal()), "crypto") {
				return true
			}
		}
	}
	return false
}

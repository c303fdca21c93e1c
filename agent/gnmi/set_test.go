package gnmi

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/spiagent/spiagent/agent/dslock"
)

// getText reads one path (JSON encoding) as updatesText, "" if NotFound.
func getText(t testing.TB, c gpb.GNMIClient, p string) string {
	t.Helper()
	resp, err := c.Get(ro(), &gpb.GetRequest{Path: []*gpb.Path{path(t, p)}, Encoding: gpb.Encoding_JSON, Type: gpb.GetRequest_CONFIG})
	if err != nil {
		if strings.Contains(err.Error(), "NotFound") {
			return ""
		}
		t.Fatalf("Get %s: %v", p, err)
	}
	return updatesText(resp)
}

func TestSet(t *testing.T) {
	const pol = "/crypto/isakmp/policies/policy[priority=1]/config"
	tests := []struct {
		desc     string
		req      func(t *testing.T) *gpb.SetRequest
		wantCode codes.Code
		wantErr  string
		after    map[string]string // path -> getText after the Set
		results  []gpb.UpdateResult_Operation
	}{
		{desc: "update a leaf with json_val (gnmic default)",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, pol+"/lifetime"), Val: jsonVal("300")}}}
			},
			after:   map[string]string{pol + "/lifetime": pol + "/lifetime: json 300\n"},
			results: []gpb.UpdateResult_Operation{gpb.UpdateResult_UPDATE}},
		{desc: "update a leaf with a scalar and a prefix",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Prefix: path(t, pol), Update: []*gpb.Update{{Path: path(t, "lifetime"), Val: uintVal(400)}}}
			},
			after:   map[string]string{pol + "/lifetime": pol + "/lifetime: json 400\n"},
			results: []gpb.UpdateResult_Operation{gpb.UpdateResult_UPDATE}},
		{desc: "replace a container with json_ietf_val",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Replace: []*gpb.Update{{Path: path(t, pol), Val: ietfVal(`{"spiagent-crypto:priority":1,"encryption":"aes-256","hash":"sha256","group":"group14"}`)}}}
			},
			after:   map[string]string{pol: pol + `: json {"encryption":"aes-256","group":"group14","hash":"sha256","priority":1}` + "\n"},
			results: []gpb.UpdateResult_Operation{gpb.UpdateResult_REPLACE}},
		{desc: "delete, replace and update in one transaction, in spec order",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{
					Update:  []*gpb.Update{{Path: path(t, "/crypto/interfaces/interface[name=lan0]/config/description"), Val: jsonVal(`"inside"`)}},
					Replace: []*gpb.Update{{Path: path(t, "/crypto/isakmp/policies/policy[priority=20]"), Val: jsonVal(`{"priority":20,"config":{"priority":20,"lifetime":600}}`)}},
					Delete:  []*gpb.Path{path(t, "/crypto/isakmp/policies/policy[priority=1]"), path(t, "/crypto/isakmp/policies/policy[priority=99]")},
				}
			},
			after: map[string]string{
				"/crypto/isakmp/policies/policy[priority=1]":                 "",
				"/crypto/isakmp/policies/policy[priority=20]/config":         `/crypto/isakmp/policies/policy[priority=20]/config: json {"lifetime":600,"priority":20}` + "\n",
				"/crypto/interfaces/interface[name=lan0]/config/description": "/crypto/interfaces/interface[name=lan0]/config/description: json \"inside\"\n",
			},
			results: []gpb.UpdateResult_Operation{gpb.UpdateResult_DELETE, gpb.UpdateResult_DELETE, gpb.UpdateResult_REPLACE, gpb.UpdateResult_UPDATE}},
		{desc: "union_replace of two halves at one path",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{UnionReplace: []*gpb.Update{
					{Path: path(t, pol), Val: jsonVal(`{"priority":1,"lifetime":900}`)},
					{Path: path(t, pol), Val: jsonVal(`{"hash":"md5"}`)},
				}}
			},
			after:   map[string]string{pol: pol + `: json {"hash":"md5","lifetime":900,"priority":1}` + "\n"},
			results: []gpb.UpdateResult_Operation{gpb.UpdateResult_UNION_REPLACE, gpb.UpdateResult_UNION_REPLACE}},
		{desc: "out of range value names path and reason; nothing changes",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{
					Update: []*gpb.Update{
						{Path: path(t, "/crypto/interfaces/interface[name=lan0]/config/description"), Val: jsonVal(`"changed"`)},
						{Path: path(t, pol+"/lifetime"), Val: jsonVal("59")},
					}}
			},
			wantCode: codes.InvalidArgument, wantErr: "lifetime",
			after: map[string]string{"/crypto/interfaces/interface[name=lan0]/config/description": "/crypto/interfaces/interface[name=lan0]/config/description: json \"to host1 (seed FastEthernet0/1)\"\n"}},
		{desc: "wrong type",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, pol+"/lifetime"), Val: jsonVal(`"long"`)}}}
			},
			wantCode: codes.InvalidArgument, wantErr: "update " + pol + "/lifetime:"},
		{desc: "semantic validation: missing transform set",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Replace: []*gpb.Update{{Path: path(t, "/crypto/crypto-maps/crypto-map[name=testtag1]/entries/entry[sequence=10]/config/transform-set"), Val: jsonVal(`["nope"]`)}}}
			},
			wantCode: codes.InvalidArgument, wantErr: "invalid config: /crypto/crypto-maps/crypto-map[name=testtag1]/entries/entry[sequence=10]/config/transform-set"},
		{desc: "write to a state path",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, "/crypto/ipsec/sas/sa[destination-address=192.0.2.2][protocol=esp][spi=1]/state/packets"), Val: uintVal(1)}}}
			},
			wantCode: codes.InvalidArgument, wantErr: "update /crypto/ipsec/sas/sa[destination-address=192.0.2.2][protocol=esp][spi=1]/state/packets: state (config false) data is read-only"},
		{desc: "state inside a config value",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Replace: []*gpb.Update{{Path: path(t, "/crypto/isakmp/policies/policy[priority=1]"), Val: jsonVal(`{"priority":1,"config":{"priority":1},"state":{"priority":1}}`)}}}
			},
			wantCode: codes.InvalidArgument, wantErr: "replace /crypto/isakmp/policies/policy[priority=1]:"},
		{desc: "unknown path",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, "/crypto/isakmp/config/bogus"), Val: jsonVal("1")}}}
			},
			wantCode: codes.InvalidArgument, wantErr: `update /crypto/isakmp/config/bogus: no schema node "bogus"`},
		{desc: "wildcard",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Delete: []*gpb.Path{path(t, "/crypto/interfaces/interface[name=*]")}}
			},
			wantCode: codes.InvalidArgument, wantErr: "wildcards are not allowed"},
		{desc: "unsupported value encoding",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, pol+"/lifetime"), Val: &gpb.TypedValue{Value: &gpb.TypedValue_AsciiVal{AsciiVal: "300"}}}}}
			},
			wantCode: codes.InvalidArgument, wantErr: "not supported"},
		{desc: "no value",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, pol+"/lifetime")}}}
			},
			wantCode: codes.InvalidArgument, wantErr: "no value"},
		{desc: "bad key is not echoed in the error",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, "/crypto/isakmp/keys/key[address=192.0.2.2]/config/key"), Val: jsonVal(`"` + strings.Repeat("S3CRET", 30) + `"`)}}}
			},
			wantCode: codes.InvalidArgument, wantErr: "/crypto/isakmp/keys/key[address=192.0.2.2]/config/key"},
		{desc: "bad origin",
			req: func(t *testing.T) *gpb.SetRequest {
				return &gpb.SetRequest{Update: []*gpb.Update{{Path: &gpb.Path{Origin: "openconfig", Elem: path(t, pol).Elem}, Val: jsonVal("{}")}}}
			},
			wantCode: codes.InvalidArgument, wantErr: `unknown origin "openconfig"`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			c := e.client()
			before := e.st.Running().ID
			resp, err := c.Set(rw(), tc.req(t))
			if tc.wantCode != codes.OK {
				checkErr(t, err, tc.wantCode, tc.wantErr)
				if strings.Contains(err.Error(), "S3CRET") {
					t.Errorf("error echoes the key: %v", err)
				}
				if got := e.st.Running().ID; got != before {
					t.Errorf("failed Set committed: running %d, was %d", got, before)
				}
			} else {
				checkErr(t, err, codes.OK, "")
				var ops []gpb.UpdateResult_Operation
				for _, r := range resp.GetResponse() {
					ops = append(ops, r.GetOp())
				}
				if d := cmp.Diff(tc.results, ops); d != "" {
					t.Errorf("UpdateResults (-want +got):\n%s", d)
				}
				if resp.GetTimestamp() == 0 {
					t.Error("no timestamp")
				}
				if e.st.Running().ID != before+1 {
					t.Errorf("Set made %d commits, want 1", e.st.Running().ID-before)
				}
			}
			for p, want := range tc.after {
				if d := cmp.Diff(want, getText(t, c, p)); d != "" {
					t.Errorf("after Set, %s (-want +got):\n%s", p, d)
				}
			}
		})
	}
}

func TestSetResultsEchoPaths(t *testing.T) {
	e := newEnv(t, envOpts{})
	req := &gpb.SetRequest{
		Prefix: path(t, "/crypto/isakmp"),
		Update: []*gpb.Update{{Path: path(t, "config/dpd-interval"), Val: uintVal(30)}},
	}
	resp, err := e.client().Set(rw(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := []*gpb.UpdateResult{{Path: path(t, "config/dpd-interval"), Op: gpb.UpdateResult_UPDATE}}
	if d := cmp.Diff(want, resp.GetResponse(), protocmp.Transform()); d != "" {
		t.Errorf("results (-want +got):\n%s", d)
	}
	if d := cmp.Diff(req.Prefix, resp.GetPrefix(), protocmp.Transform()); d != "" {
		t.Errorf("prefix (-want +got):\n%s", d)
	}
}

func TestConcurrentSets(t *testing.T) {
	e := newEnv(t, envOpts{})
	const workers, each = 6, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := e.client()
			for i := 0; i < each; i++ {
				prio := 100 + w*each + i
				_, err := c.Set(rw(), &gpb.SetRequest{Update: []*gpb.Update{{
					Path: path(t, fmt.Sprintf("/crypto/isakmp/policies/policy[priority=%d]/config", prio)),
					Val:  jsonVal(fmt.Sprintf(`{"priority":%d,"lifetime":%d}`, prio, 1000+prio)),
				}}})
				if err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	pols := e.st.Running().Root.GetCrypto().GetIsakmp().GetPolicies().Policy
	if len(pols) != 1+workers*each {
		t.Fatalf("%d policies, want %d", len(pols), 1+workers*each)
	}
	for prio, p := range pols {
		if prio >= 100 && p.GetConfig().GetLifetime() != uint32(1000+prio) {
			t.Errorf("policy %d lifetime %d", prio, p.GetConfig().GetLifetime())
		}
	}
	if got := len(e.st.History()); got < workers*each {
		t.Errorf("history has %d commits, want at least %d (one per Set)", got, workers*each)
	}
	_ = ygot.String
}

// TestSetHonoursRunningLock: while a NETCONF session holds the shared lock
// on running, Set is refused naming the holder, and nothing changes.
func TestSetHonoursRunningLock(t *testing.T) {
	var shared dslock.Lock
	e := newEnv(t, envOpts{cfg: func(c *Config) { c.RunningLock = &shared }})
	c := e.client()
	const leaf = "/crypto/isakmp/policies/policy[priority=1]/config/lifetime"
	req := &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, leaf), Val: uintVal(600)}}}
	if ok, _ := shared.TryLock("NETCONF session 7"); !ok {
		t.Fatal("lock not free")
	}
	_, err := c.Set(rw(), req)
	checkErr(t, err, codes.FailedPrecondition, "locked by NETCONF session 7")
	if got := e.st.Running().Root.GetCrypto().GetIsakmp().GetPolicies().GetPolicy(1).GetConfig().GetLifetime(); got == 600 {
		t.Fatal("a Set under another interface's lock changed the running config")
	}
	shared.Unlock("NETCONF session 7")
	if _, err := c.Set(rw(), req); err != nil {
		t.Fatalf("Set after unlock: %v", err)
	}
}

package gnmi

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/gen"
)

// respText renders a SubscribeResponse: "sync", or one line per update
// ("path: value") and delete ("-path").
func respText(r *gpb.SubscribeResponse) []string {
	if r.GetSyncResponse() {
		return []string{"sync"}
	}
	var out []string
	n := r.GetUpdate()
	for _, d := range n.GetDelete() {
		p, _ := ygot.PathToString(d)
		out = append(out, "-"+p)
	}
	for _, u := range n.GetUpdate() {
		p, _ := ygot.PathToString(u.GetPath())
		out = append(out, p+": "+valText(u.GetVal()))
	}
	return out
}

// recvUntil reads responses until stop returns true for the collected
// lines, or fails after a timeout.
func recvUntil(t *testing.T, sc gpb.GNMI_SubscribeClient, stop func([]string) bool) []string {
	t.Helper()
	var got []string
	done := make(chan error, 1)
	go func() {
		for {
			r, err := sc.Recv()
			if err != nil {
				done <- err
				return
			}
			got = append(got, respText(r)...)
			if stop(got) {
				done <- nil
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Recv: %v (got so far %q)", err, got)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out; got %q", got)
	}
	return got
}

func hasLine(s string) func([]string) bool {
	return func(lines []string) bool {
		for _, l := range lines {
			if l == s {
				return true
			}
		}
		return false
	}
}

func subscribe(t *testing.T, c gpb.GNMIClient, ctx context.Context, l *gpb.SubscriptionList) gpb.GNMI_SubscribeClient {
	t.Helper()
	sc, err := c.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: l}}); err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestSubscribeOnce(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client()
	tests := []struct {
		desc string
		list *gpb.SubscriptionList
		want []string
	}{
		{"leaf JSON",
			&gpb.SubscriptionList{Mode: gpb.SubscriptionList_ONCE, Subscription: []*gpb.Subscription{{Path: path(t, "/crypto/isakmp/policies/policy/config/lifetime")}}},
			[]string{"/crypto/isakmp/policies/policy[priority=1]/config/lifetime: json 180", "sync"}},
		{"JSON_IETF, redacted key",
			&gpb.SubscriptionList{Mode: gpb.SubscriptionList_ONCE, Encoding: gpb.Encoding_JSON_IETF, Subscription: []*gpb.Subscription{{Path: path(t, "/crypto/isakmp/keys")}}},
			[]string{
				"/crypto/isakmp/keys/key[address=192.0.2.2]/address: ietf \"192.0.2.2\"",
				"/crypto/isakmp/keys/key[address=192.0.2.2]/config/address: ietf \"192.0.2.2\"",
				"/crypto/isakmp/keys/key[address=192.0.2.2]/config/key: ietf \"<redacted>\"",
				"sync"}},
		{"gnmi_cli style: empty prefix, element paths, PROTO",
			&gpb.SubscriptionList{Prefix: &gpb.Path{}, Mode: gpb.SubscriptionList_ONCE, Encoding: gpb.Encoding_PROTO,
				Subscription: []*gpb.Subscription{{Path: &gpb.Path{Element: []string{"crypto", "interfaces", "interface[name=wan0]", "config", "ipv4-address"}}}}},
			[]string{"/crypto/interfaces/interface[name=wan0]/config/ipv4-address: string_val:\"192.0.2.1\"", "sync"}},
		{"updates_only",
			&gpb.SubscriptionList{Mode: gpb.SubscriptionList_ONCE, UpdatesOnly: true, Subscription: []*gpb.Subscription{{Path: path(t, "/crypto")}}},
			[]string{"sync"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			sc := subscribe(t, c, ro(), tc.list)
			var got []string
			for {
				r, err := sc.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, respText(r)...)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestSubscribeErrors(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client()
	sub := func(p string, mode gpb.SubscriptionMode) []*gpb.Subscription {
		return []*gpb.Subscription{{Path: path(t, p), Mode: mode}}
	}
	tests := []struct {
		desc     string
		req      *gpb.SubscribeRequest
		wantCode codes.Code
		wantErr  string
	}{
		{"poll first", &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Poll{Poll: &gpb.Poll{}}}, codes.InvalidArgument, "must carry a SubscriptionList"},
		{"no subscriptions", &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{}}}, codes.InvalidArgument, "no subscriptions"},
		{"bad path", &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{Subscription: sub("/crypto/nope", 0)}}}, codes.InvalidArgument, `path /crypto/nope: no schema node "nope"`},
		{"bad encoding", &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{Encoding: gpb.Encoding_ASCII, Subscription: sub("/crypto", 0)}}}, codes.Unimplemented, "ASCII"},
		{"sample too fast", &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{Subscription: []*gpb.Subscription{{Path: path(t, "/crypto"), Mode: gpb.SubscriptionMode_SAMPLE, SampleInterval: 1000}}}}}, codes.InvalidArgument, "below the minimum"},
		{"bad origin", &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{Prefix: &gpb.Path{Origin: "oc"}, Subscription: sub("/crypto", 0)}}}, codes.InvalidArgument, `unknown origin "oc"`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			sc, err := c.Subscribe(ro())
			if err != nil {
				t.Fatal(err)
			}
			if err := sc.Send(tc.req); err != nil {
				t.Fatal(err)
			}
			_, err = sc.Recv()
			checkErr(t, err, tc.wantCode, tc.wantErr)
		})
	}
}

func TestSubscribePoll(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client()
	ctx, cancel := context.WithCancel(ro())
	defer cancel()
	sc := subscribe(t, c, ctx, &gpb.SubscriptionList{Mode: gpb.SubscriptionList_POLL, Subscription: []*gpb.Subscription{{Path: path(t, "/crypto/isakmp/policies/policy/config/lifetime")}}})
	recvUntil(t, sc, hasLine("sync"))
	if _, err := e.client().Set(rw(), &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, "/crypto/isakmp/policies/policy[priority=1]/config/lifetime"), Val: uintVal(777)}}}); err != nil {
		t.Fatal(err)
	}
	if err := sc.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Poll{Poll: &gpb.Poll{}}}); err != nil {
		t.Fatal(err)
	}
	got := recvUntil(t, sc, hasLine("sync"))
	want := []string{"/crypto/isakmp/policies/policy[priority=1]/config/lifetime: json 777", "sync"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("poll (-want +got):\n%s", d)
	}
}

func ipsecSA(spi uint32, packets uint64) *gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa {
	return &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa{State: &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State{
		DestinationAddress: ygot.String("192.0.2.2"), Protocol: gen.SpiagentTypes_IpsecProtocol_esp,
		Spi: ygot.Uint32(spi), Packets: ygot.Uint64(packets), Peer: ygot.String("192.0.2.2"),
	}}
}

func putSA(t *testing.T, tel *telemetry.Tree, spi uint32, packets uint64) {
	t.Helper()
	if err := tel.Update(func(tx *telemetry.Tx) error { return tx.PutIPsecSA(ipsecSA(spi, packets)) }); err != nil {
		t.Fatal(err)
	}
}

func saPath(spi uint32) string {
	return fmt.Sprintf("/crypto/ipsec/sas/sa[destination-address=192.0.2.2][protocol=esp][spi=%d]", spi)
}

func TestSubscribeOnChange(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client()
	ctx, cancel := context.WithCancel(ro())
	defer cancel()
	sc := subscribe(t, c, ctx, &gpb.SubscriptionList{Mode: gpb.SubscriptionList_STREAM, Subscription: []*gpb.Subscription{
		{Path: path(t, "/crypto/ipsec/sas/sa[spi=*]/state/packets"), Mode: gpb.SubscriptionMode_ON_CHANGE},
		{Path: path(t, "/crypto/isakmp/policies"), Mode: gpb.SubscriptionMode_ON_CHANGE},
		{Path: path(t, "/crypto/isakmp/keys/key/config/key"), Mode: gpb.SubscriptionMode_ON_CHANGE},
	}})
	got := recvUntil(t, sc, hasLine("sync"))
	if d := cmp.Diff([]string{
		"/crypto/isakmp/policies/policy[priority=1]/config/lifetime: json 180",
		"/crypto/isakmp/policies/policy[priority=1]/config/authentication: json \"pre-share\"",
		"/crypto/isakmp/policies/policy[priority=1]/config/priority: json 1",
		"/crypto/isakmp/policies/policy[priority=1]/priority: json 1",
		"/crypto/isakmp/keys/key[address=192.0.2.2]/config/key: json \"<redacted>\"",
		"sync",
	}, got, sortLines); d != "" {
		t.Errorf("initial (-want +got):\n%s", d)
	}

	// State: an SA appears, its counter moves, it goes away.
	putSA(t, e.tel, 0x10, 1)
	recvUntil(t, sc, hasLine(saPath(0x10)+"/state/packets: json 1"))
	putSA(t, e.tel, 0x10, 2)
	recvUntil(t, sc, hasLine(saPath(0x10)+"/state/packets: json 2"))
	if err := e.tel.Update(func(tx *telemetry.Tx) error {
		return tx.Delete(telemetry.IPsecSAPath("192.0.2.2", "esp", 0x10))
	}); err != nil {
		t.Fatal(err)
	}
	recvUntil(t, sc, hasLine("-"+saPath(0x10)))

	// Config: a policy is added, then deleted: one delete of the entry.
	set := func(r *gpb.SetRequest) {
		if _, err := e.client().Set(rw(), r); err != nil {
			t.Fatal(err)
		}
	}
	set(&gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, "/crypto/isakmp/policies/policy[priority=5]/config"), Val: jsonVal(`{"priority":5,"lifetime":120}`)}}})
	recvUntil(t, sc, hasLine("/crypto/isakmp/policies/policy[priority=5]/config/lifetime: json 120"))
	set(&gpb.SetRequest{Delete: []*gpb.Path{path(t, "/crypto/isakmp/policies/policy[priority=5]")}})
	got = recvUntil(t, sc, hasLine("-/crypto/isakmp/policies/policy[priority=5]"))
	for _, l := range got {
		if strings.HasPrefix(l, "-") && l != "-/crypto/isakmp/policies/policy[priority=5]" {
			t.Errorf("leaf delete %s sent besides the entry delete", l)
		}
	}
	// The key changes: subscribers see only "<redacted>".
	set(&gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, "/crypto/isakmp/keys/key[address=192.0.2.2]/config/key"), Val: jsonVal(`"N3WK3Y"`)}}})
	got = recvUntil(t, sc, hasLine("/crypto/isakmp/keys/key[address=192.0.2.2]/config/key: json \"<redacted>\""))
	if strings.Contains(strings.Join(got, "\n"), "N3WK3Y") {
		t.Errorf("key leaked: %q", got)
	}
}

var sortLines = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestSubscribeSample(t *testing.T) {
	e := newEnv(t, envOpts{})
	putSA(t, e.tel, 0x20, 5)
	c := e.client()
	ctx, cancel := context.WithCancel(ro())
	defer cancel()
	const interval = 50 * time.Millisecond
	sc := subscribe(t, c, ctx, &gpb.SubscriptionList{Mode: gpb.SubscriptionList_STREAM, Encoding: gpb.Encoding_PROTO, Subscription: []*gpb.Subscription{
		{Path: path(t, "/crypto/ipsec/sas/sa/state/packets"), Mode: gpb.SubscriptionMode_SAMPLE, SampleInterval: uint64(interval), SuppressRedundant: true, HeartbeatInterval: uint64(20 * interval)},
	}})
	line := func(spi uint32, n int) string { return fmt.Sprintf("%s/state/packets: uint_val:%d", saPath(spi), n) }
	got := recvUntil(t, sc, hasLine("sync"))
	if d := cmp.Diff([]string{line(0x20, 5), "sync"}, got); d != "" {
		t.Errorf("initial (-want +got):\n%s", d)
	}
	// suppress_redundant: an unchanged counter is not resent before the
	// heartbeat; a changed one is sent at the next sample.
	start := time.Now()
	putSA(t, e.tel, 0x20, 9)
	got = recvUntil(t, sc, hasLine(line(0x20, 9)))
	if len(got) != 1 {
		t.Errorf("got %q, want only the changed counter", got)
	}
	// A vanished SA is a delete at the next sample.
	if err := e.tel.Update(func(tx *telemetry.Tx) error { return tx.Delete(telemetry.IPsecSAPath("192.0.2.2", "esp", 0x20)) }); err != nil {
		t.Fatal(err)
	}
	recvUntil(t, sc, hasLine("-"+saPath(0x20)+"/state/packets"))
	putSA(t, e.tel, 0x21, 1)
	recvUntil(t, sc, hasLine(line(0x21, 1)))
	// The heartbeat resends the unchanged value.
	got = recvUntil(t, sc, hasLine(line(0x21, 1)))
	if el := time.Since(start); el < 15*interval {
		t.Errorf("unchanged counter resent after %v, before the heartbeat", el)
	}
	_ = got
}

func TestSubscribeTargetDefined(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *Config) { c.TargetSample = 100 * time.Millisecond }})
	putSA(t, e.tel, 0x30, 1)
	ctx, cancel := context.WithCancel(ro())
	defer cancel()
	sc := subscribe(t, e.client(), ctx, &gpb.SubscriptionList{Mode: gpb.SubscriptionList_STREAM, UpdatesOnly: true, Subscription: []*gpb.Subscription{
		{Path: path(t, "/crypto/ipsec/sas"), Mode: gpb.SubscriptionMode_TARGET_DEFINED},
	}})
	if got := recvUntil(t, sc, hasLine("sync")); len(got) != 1 {
		t.Errorf("updates_only sent %q before sync", got)
	}
	// A new SA is sent at once (lifecycle: ON_CHANGE) without its counter;
	// the counter arrives with the sample.
	tChange := time.Now()
	if err := e.tel.Update(func(tx *telemetry.Tx) error {
		sa := ipsecSA(0x31, 4)
		sa.State.Transform = ygot.String("esp-aes esp-sha256-hmac")
		return tx.PutIPsecSA(sa)
	}); err != nil {
		t.Fatal(err)
	}
	got := recvUntil(t, sc, hasLine(saPath(0x31)+"/state/transform: json \"esp-aes esp-sha256-hmac\""))
	for _, l := range got {
		if strings.Contains(l, "packets") {
			t.Errorf("counter sent on change: %s", l)
		}
	}
	recvUntil(t, sc, hasLine(saPath(0x31)+"/state/packets: json 4"))
	if time.Since(tChange) > 5*time.Second {
		t.Error("counter sample late")
	}
}

// TestSlowSubscriber: a subscriber that stops reading is ended with
// ResourceExhausted; another subscriber and the store carry on.
func TestSlowSubscriber(t *testing.T) {
	e := newEnv(t, envOpts{queue: 4})
	// A small fixed window makes the stalled stream's flow control bite
	// early.
	slowConn := e.conn(grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	slow := gpb.NewGNMIClient(slowConn)
	ctx, cancel := context.WithCancel(ro())
	defer cancel()
	list := &gpb.SubscriptionList{Mode: gpb.SubscriptionList_STREAM, Subscription: []*gpb.Subscription{{Path: path(t, "/crypto/ipsec/sas"), Mode: gpb.SubscriptionMode_ON_CHANGE}}}
	ssc := subscribe(t, slow, ctx, list)
	recvUntil(t, ssc, hasLine("sync"))
	fsc := subscribe(t, e.client(), ctx, list)
	recvUntil(t, fsc, hasLine("sync"))

	// Big batches: 200 SAs per update, 60 updates. The slow client reads
	// nothing.
	fastGot := make(chan int, 1)
	go func() {
		n := 0
		for {
			r, err := fsc.Recv()
			if err != nil {
				fastGot <- -1
				return
			}
			for _, u := range r.GetUpdate().GetUpdate() {
				if strings.HasSuffix(u.GetPath().GetElem()[len(u.GetPath().GetElem())-1].GetName(), "packets") {
					n++
				}
			}
			if n == 200*60 {
				fastGot <- n
				return
			}
		}
	}()
	for round := 0; round < 60; round++ {
		start := time.Now()
		if err := e.tel.Update(func(tx *telemetry.Tx) error {
			for i := 0; i < 200; i++ {
				sa := ipsecSA(uint32(1000+i), uint64(round+1))
				sa.State.Transform = ygot.String(strings.Repeat("x", 200))
				if err := tx.PutIPsecSA(sa); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Fatalf("a state update took %v: the writer was blocked", d)
		}
	}
	// The store is not blocked either.
	if _, err := e.client().Set(rw(), &gpb.SetRequest{Update: []*gpb.Update{{Path: path(t, "/crypto/isakmp/config/dpd-interval"), Val: uintVal(30)}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-fastGot:
		if n != 200*60 {
			t.Fatalf("fast subscriber failed after %d", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("fast subscriber did not get every update")
	}
	// The slow one, reading again, drains what was in flight and then
	// gets its end.
	deadline := time.After(30 * time.Second)
	for {
		errc := make(chan error, 1)
		go func() { _, err := ssc.Recv(); errc <- err }()
		select {
		case err := <-errc:
			if err == nil {
				continue
			}
			if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "fell behind") {
				t.Fatalf("slow subscriber ended with %v, want ResourceExhausted", err)
			}
			if !strings.Contains(e.log.String(), "gNMI subscriber fell behind") {
				t.Error("no log line for the ended subscriber")
			}
			return
		case <-deadline:
			t.Fatal("slow subscriber was never ended")
		}
	}
}

// TestSubscribeHeartbeatAndTarget: ON_CHANGE with a heartbeat resends the
// current values; the prefix's target is echoed; a second request on a
// STREAM subscription is refused.
func TestSubscribeHeartbeatAndTarget(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithCancel(ro())
	defer cancel()
	sc := subscribe(t, e.client(), ctx, &gpb.SubscriptionList{Prefix: &gpb.Path{Target: "routerA"}, Mode: gpb.SubscriptionList_STREAM,
		Subscription: []*gpb.Subscription{{Path: path(t, "/crypto/isakmp/policies/policy/config/lifetime"), Mode: gpb.SubscriptionMode_ON_CHANGE, HeartbeatInterval: uint64(100 * time.Millisecond)}}})
	line := "/crypto/isakmp/policies/policy[priority=1]/config/lifetime: json 180"
	var targets []string
	count := 0
	deadline := time.Now().Add(10 * time.Second)
	for count < 3 && time.Now().Before(deadline) {
		r, err := sc.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if n := r.GetUpdate(); n != nil {
			targets = append(targets, n.GetPrefix().GetTarget())
		}
		for _, l := range respText(r) {
			if l == line {
				count++
			}
		}
	}
	if count < 3 {
		t.Fatalf("heartbeat sent the value %d times (initial included), want 3", count)
	}
	for _, tg := range targets {
		if tg != "routerA" {
			t.Errorf("notification target %q, want routerA", tg)
		}
	}
	if err := sc.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Poll{Poll: &gpb.Poll{}}}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := sc.Recv()
		if err == nil {
			continue
		}
		checkErr(t, err, codes.InvalidArgument, "accepts no further requests")
		break
	}
}

// TestShutdownEndsStreams: stopping the server ends open subscriptions.
func TestShutdownEndsStreams(t *testing.T) {
	e := newEnv(t, envOpts{})
	srv, err := New(Config{Store: e.st, State: e.tel, Users: e.srv.cfg.Users, TLS: e.srv.cfg.TLS, Log: e.srv.cfg.Log})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	e2 := *e
	e2.addr = lis.Addr().String()
	sc := subscribe(t, e2.client(), ro(), &gpb.SubscriptionList{Mode: gpb.SubscriptionList_STREAM,
		Subscription: []*gpb.Subscription{{Path: path(t, "/crypto/ipsec/sas"), Mode: gpb.SubscriptionMode_ON_CHANGE}}})
	recvUntil(t, sc, hasLine("sync"))
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	_, err = sc.Recv()
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable {
		t.Errorf("stream ended with %v, want Unavailable", err)
	}
}

package seedlab

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/spiagent/spiagent/lab/netlab"
)

// secondEntry adds crypto map entry 20 (its own ACL 160: host1 to
// routerB's LAN address) to a lab config.
func secondEntry(lifetime int) func(map[string]any) {
	return func(cfg map[string]any) {
		c := cfg["spiagent-crypto:crypto"].(map[string]any)
		acls := c["access-lists"].(map[string]any)
		acls["access-list"] = append(acls["access-list"].([]any), map[string]any{
			"name": "160", "config": map[string]any{"name": "160"},
			"entries": map[string]any{"entry": []any{map[string]any{"sequence": 10, "config": map[string]any{
				"sequence": 10, "action": "permit", "protocol": "icmp", "source": "198.51.100.0/24", "destination": "203.0.113.1/32"}}}},
		})
		maps := c["crypto-maps"].(map[string]any)["crypto-map"].([]any)
		m := maps[0].(map[string]any)
		ents := m["entries"].(map[string]any)
		peer := ents["entry"].([]any)[0].(map[string]any)["config"].(map[string]any)["peer"]
		ents["entry"] = append(ents["entry"].([]any), map[string]any{"sequence": 20, "config": map[string]any{
			"sequence": 20, "peer": peer, "transform-set": []any{"auth2"}, "match-address": "160", "sa-lifetime-seconds": lifetime}})
	}
}

func outSPIs(ctx context.Context, t *testing.T, r *Router) []uint32 {
	t.Helper()
	s, _ := ipsecState(ctx, t, r)
	slices.Sort(s)
	return s
}

// TestCommitTouchesOnlyWhatChanged: changing crypto map entry 20 leaves
// entry 10's SAs (and traffic) alone; changing entry 10 deletes its SAs
// with DELETE notifications (the peer drops them too) and traffic
// renegotiates; an agent refusal rolls the commit back.
func TestCommitTouchesOnlyWhatChanged(t *testing.T) {
	l := newLab(t, "e2c")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for _, r := range []*Router{l.A, l.B} {
		if err := r.PushConfig(ctx, secondEntry(3600)); err != nil {
			t.Fatal(err)
		}
	}
	flow, err := l.StartFlow()
	if err != nil {
		t.Fatal(err)
	}
	defer flow.Close()
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = flow.Run(fctx, netlab.Host2Addr, 20, 20*90) }()
	if err := WaitRecovered(ctx, flow, time.Now().Add(-time.Second), 5, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	before := outSPIs(ctx, t, l.A)
	if len(before) == 0 {
		t.Fatal("routerA has no outbound SA")
	}

	// 1. Entry 20 changes: entry 10's SAs stay, traffic is not disturbed.
	mark := time.Now()
	if err := l.A.set(ctx, &gpb.SetRequest{Update: []*gpb.Update{{
		Path: pathKeys("crypto/crypto-maps/crypto-map[name=testtag1]/entries/entry[sequence=20]/config/sa-lifetime-seconds"),
		Val:  &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: 1800}}}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if after := outSPIs(ctx, t, l.A); !slices.Equal(before, after) {
		t.Errorf("changing entry 20 replaced entry 10's SAs: %v -> %v", before, after)
	}
	// Packets sent in the last second may still be in flight on a loaded
	// machine: count only older ones.
	if lost := flow.LostBetween(mark, time.Now().Add(-time.Second)); lost != 0 {
		t.Errorf("%d packets lost while an unrelated entry changed", lost)
	}

	// The applied config is in the state containers, the key never is.
	if got := getJSON(ctx, t, l.A, "crypto/crypto-maps/crypto-map[name=testtag1]/entries/entry[sequence=20]/state"); !strings.Contains(got, "1800") {
		t.Errorf("entry 20's state after the commit: %s, want sa-lifetime-seconds 1800", got)
	}
	if got := getJSON(ctx, t, l.A, "crypto/isakmp/keys/key[address=192.0.2.2]/state"); !strings.Contains(got, "key-configured") || strings.Contains(got, "1234") {
		t.Errorf("key state %s: want key-configured and no key", got)
	}
	if got := getJSON(ctx, t, l.A, "crypto/interfaces/interface[name=wan0]/state"); !strings.Contains(got, `address-applied":true`) {
		t.Errorf("wan0 state %s: want address-applied true (the agent put 192.0.2.1 on it)", got)
	}

	// 2. A refused commit (crypto map on an interface without an address)
	// changes nothing: not the running config, not the SAs.
	err = l.A.set(ctx, &gpb.SetRequest{Update: []*gpb.Update{{
		Path: pathKeys("crypto/interfaces/interface[name=lan0]/config/crypto-map"),
		Val:  &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: "testtag1"}}}},
		Delete: []*gpb.Path{pathKeys("crypto/interfaces/interface[name=lan0]/config/ipv4-address")}})
	if err == nil || !strings.Contains(err.Error(), "address") {
		t.Errorf("commit binding a crypto map to an interface without an address: err = %v, want a refusal naming the address", err)
	}
	if after := outSPIs(ctx, t, l.A); !slices.Equal(before, after) {
		t.Errorf("a refused commit changed the SAs: %v -> %v", before, after)
	}
	if got := getJSON(ctx, t, l.A, "crypto/interfaces/interface[name=lan0]/config"); !strings.Contains(got, "198.51.100.1") || strings.Contains(got, "testtag1") {
		t.Errorf("running config changed by a refused commit: %s", got)
	}

	// 3. Entry 10 changes (its SA lifetime): its SAs are deleted with a
	// DELETE, so routerB drops its side too, and traffic renegotiates.
	mark = time.Now()
	if err := l.A.set(ctx, &gpb.SetRequest{Update: []*gpb.Update{{
		Path: pathKeys("crypto/crypto-maps/crypto-map[name=testtag1]/entries/entry[sequence=10]/config/sa-lifetime-seconds"),
		Val:  &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: 1200}}}}}); err != nil {
		t.Fatal(err)
	}
	if err := WaitRecovered(ctx, flow, mark, 5, 10*time.Second); err != nil {
		t.Fatalf("traffic after changing entry 10: %v", err)
	}
	after := outSPIs(ctx, t, l.A)
	for _, s := range before {
		if slices.Contains(after, s) {
			t.Errorf("entry 10's old outbound SPI %#x survived its change (now %v)", s, after)
		}
	}
	bIn := inSPIsOf(ctx, t, l.B)
	for _, s := range before {
		if slices.Contains(bIn, s) {
			t.Errorf("routerB still has inbound SPI %#x: the DELETE did not reach it", s)
		}
	}
}

func inSPIsOf(ctx context.Context, t *testing.T, r *Router) []uint32 {
	t.Helper()
	var out []uint32
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["direction"] == "inbound" && x["protocol"] == "esp" {
				var n json.Number = json.Number(jsonNum(x["spi"]))
				if v, err := n.Int64(); err == nil {
					out = append(out, uint32(v))
				}
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	var v any
	if err := json.Unmarshal([]byte(getJSON(ctx, t, r, "crypto/ipsec")), &v); err != nil {
		t.Fatal(err)
	}
	walk(v)
	return out
}

// pathKeys parses "a/b[k=v]/c" (no escaping needed in these tests).
func pathKeys(s string) *gpb.Path {
	p := &gpb.Path{}
	for _, part := range strings.Split(s, "/") {
		e := &gpb.PathElem{}
		if i := strings.Index(part, "["); i >= 0 {
			e.Name = part[:i]
			e.Key = map[string]string{}
			for _, kv := range strings.Split(strings.Trim(part[i:], "[]"), "][") {
				k, v, _ := strings.Cut(kv, "=")
				e.Key[k] = v
			}
		} else {
			e.Name = part
		}
		p.Elem = append(p.Elem, e)
	}
	return p
}

func getJSON(ctx context.Context, t *testing.T, r *Router, path string) string {
	t.Helper()
	c, err := r.client()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{pathKeys(path)}, Encoding: gpb.Encoding_JSON_IETF})
	if err != nil {
		t.Fatalf("Get %s: %v", path, err)
	}
	var b strings.Builder
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			b.Write(u.GetVal().GetJsonIetfVal())
		}
	}
	return b.String()
}

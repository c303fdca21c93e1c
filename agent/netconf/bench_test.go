package netconf

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/spiagent/spiagent/internal/testconfig"
	"github.com/spiagent/spiagent/store"
)

// latencies reports p50 and p99 of the samples as custom metrics.
func latencies(b *testing.B, name string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, name+"-p50-ms")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds())/1000, name+"-p99-ms")
}

// BenchmarkEditCommit10k: edit-config of one leaf into the candidate, then
// commit, with 10,000 crypto-map entries and 10,000 keys; over SSH on
// loopback, base:1.1.
func BenchmarkEditCommit10k(b *testing.B) {
	e := newEnvWith(b, testconfig.BigJSON(10000), nil)
	c := e.dial(rwUser, rwPass, true)
	c.rpc(getRunning) // warm the running tree cache
	var edit, commit []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		seq := i%10000 + 1
		cfg := fmt.Sprintf(`<crypto xmlns="%s"><crypto-maps><crypto-map><name>big</name><entries><entry><sequence>%d</sequence><config><sa-lifetime-seconds>%d</sa-lifetime-seconds></config></entry></entries></crypto-map></crypto-maps></crypto>`, cryptoNS, seq, 3600+i%1000)
		t0 := time.Now()
		isOK(b, c.rpc(editCandidate(cfg, "")))
		t1 := time.Now()
		isOK(b, c.rpc(`<commit/>`))
		edit, commit = append(edit, t1.Sub(t0)), append(commit, time.Since(t1))
	}
	b.StopTimer()
	latencies(b, "edit", edit)
	latencies(b, "commit", commit)
}

// BenchmarkEditRunning10k: edit-config of one leaf straight into running
// (:writable-running), 10k entries.
func BenchmarkEditRunning10k(b *testing.B) {
	e := newEnvWith(b, testconfig.BigJSON(10000), nil)
	c := e.dial(rwUser, rwPass, true)
	c.rpc(getRunning) // warm the running tree cache
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cfg := fmt.Sprintf(`<crypto xmlns="%s"><crypto-maps><crypto-map><name>big</name><entries><entry><sequence>%d</sequence><config><sa-lifetime-seconds>%d</sa-lifetime-seconds></config></entry></entries></crypto-map></crypto-maps></crypto>`, cryptoNS, i%10000+1, 3600+i%1000)
		t0 := time.Now()
		isOK(b, c.rpc(`<edit-config><target><running/></target><config>`+cfg+`</config></edit-config>`))
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	latencies(b, "edit-running", lat)
}

// BenchmarkGetConfig10k: get-config of the whole running config (10k
// crypto-map entries, 10k redacted keys).
func BenchmarkGetConfig10k(b *testing.B) {
	e := newEnvWith(b, testconfig.BigJSON(10000), nil)
	c := e.dial(roUser, roPass, true)
	var size int
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		raw, err := c.rawBytes(fmt.Sprintf(`<rpc message-id="%d" xmlns="%s">%s</rpc>`, i, baseNS, getRunning))
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		size = len(raw)
		if !strings.Contains(string(raw), "<sequence>10000</sequence>") {
			b.Fatal("reply lacks entry 10000")
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(size)/1e6, "reply-MB")
	latencies(b, "get-config", lat)
}

// BenchmarkGetConfigAfterCommit10k: get-config of the whole running config
// right after a commit made elsewhere (a one-leaf store commit, as gNMI
// Set makes them), so that nothing of the previous reply can be reused.
func BenchmarkGetConfigAfterCommit10k(b *testing.B) {
	e := newEnvWith(b, testconfig.BigJSON(10000), nil)
	c := e.dial(roUser, roPass, true)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := &gpb.Path{Elem: []*gpb.PathElem{{Name: "crypto"}, {Name: "crypto-maps"}, {Name: "crypto-map", Key: map[string]string{"name": "big"}},
			{Name: "entries"}, {Name: "entry", Key: map[string]string{"sequence": fmt.Sprint(i%10000 + 1)}}, {Name: "config"}, {Name: "sa-lifetime-seconds"}}}
		if _, err := e.st.Commit(context.Background(), store.Tx{User: "gnmi", Ops: []store.Op{{Kind: store.OpUpdate, Path: p, Val: ietfVal(fmt.Sprint(3600 + i%1000))}}}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		raw, err := c.rawBytes(fmt.Sprintf(`<rpc message-id="%d" xmlns="%s">%s</rpc>`, i, baseNS, getRunning))
		if err != nil || !strings.Contains(string(raw), "<sequence>10000</sequence>") {
			b.Fatalf("get-config: %v", err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	latencies(b, "get-config", lat)
}

// TestBigConfig runs one edit, commit and get-config at 10k entries (the
// benchmarks' workload) within the normal test run.
func TestBigConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("10k entries")
	}
	e := newEnvWith(t, testconfig.BigJSON(10000), nil)
	c := e.dial(rwUser, rwPass, true)
	cfg := `<crypto xmlns="` + cryptoNS + `"><crypto-maps><crypto-map><name>big</name><entries><entry><sequence>5000</sequence><config><sa-lifetime-seconds>1234</sa-lifetime-seconds></config></entry></entries></crypto-map></crypto-maps></crypto>`
	isOK(t, c.rpc(editCandidate(cfg, "")))
	isOK(t, c.rpc(`<commit/>`))
	ent := e.st.Running().Root.GetCrypto().GetCryptoMaps().GetCryptoMap("big").GetEntries().GetEntry(5000)
	if ent.GetConfig().GetSaLifetimeSeconds() != 1234 {
		t.Fatalf("entry 5000: %+v", ent.GetConfig())
	}
	r := c.rpc(getRunning)
	ents := findAll(find(r, "data", "crypto", "crypto-maps", "crypto-map", "entries"), "entry")
	if len(ents) != 10000 || find(ents[9999], "sequence").text() != "10000" {
		t.Fatalf("%d entries", len(ents))
	}
	if keys := findAll(find(r, "data", "crypto", "isakmp", "keys"), "key"); len(keys) != 10000 || find(keys[0], "config", "key").text() != "<redacted>" {
		t.Fatalf("%d keys", len(keys))
	}
}

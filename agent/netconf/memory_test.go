package netconf

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/spiagent/spiagent/internal/testconfig"
	"github.com/spiagent/spiagent/store"
)

// bigConfigRPC is a <validate> of the benchmarks' config (n entries) as
// inline XML.
func bigConfigRPC(t testing.TB, n int) []byte {
	t.Helper()
	root, err := store.LoadJSON(testconfig.BigJSON(n))
	if err != nil {
		t.Fatal(err)
	}
	b := []byte(`<rpc message-id="1" xmlns="` + baseNS + `"><validate><source><config>`)
	b = renderData(b, reflect.ValueOf(root), baseNS, false)
	return append(b, `</config></source></validate></rpc>`...)
}

// heapAfter returns the live heap after a collection.
func heapAfter() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestDecodeMemory: a message's parsed form (its <config> decoded straight
// into generated structs) holds at most decodeRatio bytes per byte
// received, plus decodeSlack; a real configuration needs far less.
func TestDecodeMemory(t *testing.T) {
	msg := bigConfigRPC(t, 10000)
	before := heapAfter()
	x, err := parseRPC(msg)
	if err != nil {
		t.Fatal(err)
	}
	held := heapAfter() - before
	runtime.KeepAlive(msg)
	cfg := x.Kids[0].Kids[0].Kids[0]
	if cfg.cfgErr != nil || cfg.cfg == nil || len(cfg.cfg.root.GetCrypto().GetCryptoMaps().GetCryptoMap("big").GetEntries().Entry) != 10000 {
		t.Fatalf("decode: %v", cfg.cfgErr)
	}
	bound := uint64(decodeRatio*len(msg) + decodeSlack)
	t.Logf("%d bytes of XML hold %d bytes decoded (%.2f per byte; bound %d)", len(msg), held, float64(held)/float64(len(msg)), bound)
	if held > bound {
		t.Errorf("decoded %d bytes held %d, over the bound %d", len(msg), held, bound)
	}
	runtime.KeepAlive(x)
}

// TestDecodeMemoryAdversarial: messages shaped to cost the most memory per
// byte (tiny elements, list entries with nothing but a key, leaf-list
// values, long texts) either parse within the bound or are refused with
// errTooBig; what a parse holds never exceeds the bound.
func TestDecodeMemoryAdversarial(t *testing.T) {
	const n = 40000
	rep := func(s string, f func(i int) string) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString(f(i))
		}
		return s + b.String()
	}
	addr := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255) }
	cfg := func(body string) string {
		return `<rpc message-id="1" xmlns="` + baseNS + `"><validate><source><config><crypto xmlns="` + cryptoNS + `">` + body + `</crypto></config></source></validate></rpc>`
	}
	for name, msg := range map[string]string{
		"tiny elements in a filter": `<rpc message-id="1" xmlns="` + baseNS + `"><get><filter>` + rep("", func(int) string { return "<a/>" }) + `</filter></get></rpc>`,
		"attributes":                `<rpc message-id="1" xmlns="` + baseNS + `"><get><filter>` + rep("", func(i int) string { return fmt.Sprintf(`<a b="" c="" d="%d"/>`, i) }) + `</filter></get></rpc>`,
		"key-only list entries":     cfg(`<isakmp><keys>` + rep("", func(i int) string { return `<key><address>` + addr(i) + `</address></key>` }) + `</keys></isakmp>`),
		"key-only ACLs":             cfg(`<access-lists>` + rep("", func(i int) string { return fmt.Sprintf(`<access-list><name>%x</name></access-list>`, i) }) + `</access-lists>`),
		"leaf-list values":          cfg(`<crypto-maps><crypto-map><name>m</name><entries><entry><sequence>1</sequence><config>` + rep("", func(i int) string { return `<peer>` + addr(i) + `</peer>` }) + `</config></entry></entries></crypto-map></crypto-maps>`),
		"text":                      `<rpc message-id="1" xmlns="` + baseNS + `"><get><filter><crypto xmlns="` + cryptoNS + `"><transform-sets><transform-set><name>` + strings.Repeat("x", 4<<20) + `</name></transform-set></transform-sets></crypto></filter></get></rpc>`,
	} {
		t.Run(name, func(t *testing.T) {
			b := []byte(msg)
			before := heapAfter()
			x, err := parseRPC(b)
			held := max(int64(heapAfter())-int64(before), 0)
			bound := int64(decodeRatio*len(b) + decodeSlack)
			switch {
			case errors.Is(err, errTooBig):
				t.Logf("%d bytes: refused (too big)", len(b))
			case err != nil:
				t.Fatal(err)
			default:
				t.Logf("%d bytes hold %d (%.2f per byte)", len(b), held, float64(held)/float64(len(b)))
			}
			if held > bound {
				t.Errorf("%d bytes hold %d, over the bound %d", len(b), held, bound)
			}
			runtime.KeepAlive(x)
			runtime.KeepAlive(b)
		})
	}
}

// TestReadOnlyMemory: what a read-only session can make the server hold.
// A validate of a config as big as the message limit allows is checked
// and nothing of it stays once answered; a message whose parse would need
// more than its allowance gets too-big and the session goes on; a config
// with thousands of bad values gets at most maxErrors rpc-errors and a
// count of the rest.
func TestReadOnlyMemory(t *testing.T) {
	big := bigConfigRPC(t, 3000)
	e := newEnv(t, func(c *Config) { c.MaxMessage = len(big) + 1024 })
	c := e.dial(roUser, roPass, true)
	c.rpc(getRunning)
	before := heapAfter()
	b, err := c.rawBytes(string(big))
	if err != nil || !strings.Contains(string(b), "<ok/>") {
		t.Fatalf("validate of a 3000-entry config (%d bytes): %v %.300s", len(big), err, b)
	}
	if grown := int64(heapAfter()) - int64(before); grown > decodeSlack {
		t.Errorf("the session holds %d bytes more after answering", grown)
	}
	var tiny strings.Builder
	tiny.WriteString(`<rpc message-id="2" xmlns="` + baseNS + `"><get><filter>`)
	for tiny.Len() < len(big)-64 {
		tiny.WriteString("<a/>")
	}
	tiny.WriteString(`</filter></get></rpc>`)
	r := c.raw(tiny.String())
	wantErr(t, r, "rpc", "too-big", "")
	if id, _ := r.attr("", "message-id"); id != "2" {
		t.Errorf("message-id %q not echoed", id)
	}
	var bad strings.Builder
	bad.WriteString(`<validate><source><config><crypto xmlns="` + cryptoNS + `"><isakmp><policies>`)
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&bad, `<policy><priority>%d</priority><config><priority>%d</priority><lifetime>5</lifetime></config></policy>`, i, i)
	}
	bad.WriteString(`</policies></isakmp></crypto></config></source></validate>`)
	// The decoder stops at the first bad value; the whole-tree check of a
	// datastore lists them all, capped.
	wantErr(t, c.rpc(bad.String()), "application", "invalid-value", "spc:lifetime")
	ps := make([]store.Problem, 5000)
	for i := range ps {
		ps[i] = store.Problem{Path: fmt.Sprintf("/crypto/isakmp/policies/policy[priority=%d]/config/lifetime", i+1), Reason: "bad"}
	}
	if errs := problemErrors(ps); len(errs) != maxErrors+1 || !strings.Contains(errs[maxErrors].Message, "4900 more") {
		t.Errorf("%d rpc-errors for 5000 problems, last %v", len(errs), errs[len(errs)-1])
	}
	if find(c.rpc(getRunning), "data", "crypto") == nil {
		t.Fatal("session unusable")
	}
}

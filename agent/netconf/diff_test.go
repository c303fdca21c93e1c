package netconf

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/spiagent/spiagent/store"
)

// TestCommitDiffMatchesStore commits a series of edits through the
// candidate (each turned into store operations by store.OpsBetween) and checks after
// each that the store holds exactly the candidate that was committed.
func TestCommitDiffMatchesStore(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(rwUser, rwPass, true)
	x := func(s string) string {
		return `<crypto xmlns="` + cryptoNS + `" xmlns:nc="` + baseNS + `">` + s + `</crypto>`
	}
	for _, tc := range []struct{ desc, cfg string }{
		{"new list entry", newTS[len(`<crypto xmlns="`+cryptoNS+`">`) : len(newTS)-len(`</crypto>`)]},
		{"leaf-list grows and changes", `<isakmp><keys><key><address>192.0.2.9</address><config><address>192.0.2.9</address><key>s3cret</key></config></key></keys></isakmp><crypto-maps><crypto-map><name>testtag1</name><entries><entry><sequence>10</sequence><config><peer>192.0.2.9</peer><transform-set nc:operation="delete">auth2</transform-set><transform-set>ts-new</transform-set></config></entry></entries></crypto-map></crypto-maps>`},
		{"leaf delete and leaf change", `<isakmp><policies><policy><priority>1</priority><config><lifetime nc:operation="delete"/><encryption>aes-128</encryption></config></policy></policies></isakmp>`},
		{"entry delete", `<interfaces><interface nc:operation="delete"><name>lan0</name></interface></interfaces>`},
		{"entry replace", `<access-lists><access-list><name>150</name><entries><entry nc:operation="replace"><sequence>10</sequence><config><sequence>10</sequence><action>permit</action><protocol>tcp</protocol><source>198.51.100.0/24</source><destination>203.0.113.0/24</destination><destination-port-min>443</destination-port-min><destination-port-max>443</destination-port-max></config></entry></entries></access-list></access-lists>`},
		{"leaf-list value removed", `<crypto-maps><crypto-map><name>testtag1</name><entries><entry><sequence>10</sequence><config><peer nc:operation="delete">192.0.2.9</peer></config></entry></entries></crypto-map></crypto-maps>`},
		{"leaf-list emptied", `<crypto-maps><crypto-map><name>testtag1</name><entries><entry><sequence>10</sequence><config><peer nc:operation="delete">192.0.2.2</peer></config></entry></entries></crypto-map></crypto-maps>`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			isOK(t, c.rpc(editCandidate(x(tc.cfg), "")))
			e.srv.mu.Lock()
			want := e.srv.candidate
			e.srv.mu.Unlock()
			isOK(t, c.rpc(`<commit/>`))
			b, err := store.EmitJSONWithSecrets(e.st.Running().Root, true)
			if err != nil {
				t.Fatal(err)
			}
			got, err := store.LoadJSON(b)
			if err != nil {
				t.Fatal(err)
			}
			gb := renderData(nil, reflect.ValueOf(got), "", false)
			wb := renderData(nil, reflect.ValueOf(want), "", false)
			if !bytes.Equal(gb, wb) {
				t.Fatalf("store after commit:\n%s\nwant the candidate:\n%s", gb, wb)
			}
		})
	}
}

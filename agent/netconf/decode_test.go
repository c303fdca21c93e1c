package netconf

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeConfig feeds received XML to the parser and the schema-driven
// decoder: no panics, and whatever decodes renders as JSON.
func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(`<config xmlns="` + baseNS + `">` + newTS + `</config>`))
	f.Add([]byte(`<config><crypto xmlns="` + cryptoNS + `"><isakmp><policies><policy operation="delete"><priority>1</priority></policy></policies></isakmp></crypto></config>`))
	f.Add([]byte(`<config><crypto xmlns="` + cryptoNS + `"><access-lists><access-list><name>1</name><entries><entry><sequence>1</sequence><config><protocol>6</protocol></config></entry></entries></access-list></access-lists></crypto></config>`))
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY a "b">]><config/>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := parseXML(b)
		if err != nil {
			return
		}
		n, rerr := decodeConfig(x, true)
		if rerr != nil {
			if rerr.Tag == "" || rerr.Message == "" {
				t.Fatalf("empty rpc-error %+v", rerr)
			}
			return
		}
		if _, err := json.Marshal(toJSON(n, true)); err != nil {
			t.Fatalf("decoded config does not render: %v", err)
		}
		ed := &editor{errOpt: continueOnError}
		ed.apply(own(&node{e: rootEntry()}), n, opMerge, "")
	})
}

func TestParseXMLRefusesDTD(t *testing.T) {
	if _, err := parseXML([]byte(`<!DOCTYPE x [<!ENTITY a "b">]><config>&a;</config>`)); err == nil {
		t.Fatal("DTD accepted")
	}
	deep := ""
	for i := 0; i < maxDepth+1; i++ {
		deep += "<a>"
	}
	if _, err := parseXML([]byte(deep)); err == nil {
		t.Fatal("over-deep document accepted")
	}
}

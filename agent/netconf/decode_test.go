package netconf

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"testing"

	"github.com/spiagent/spiagent/ytree"
)

// FuzzDecodeConfig feeds received XML to the parser and the schema-driven
// decoder: no panics, and whatever decodes renders as JSON and applies as
// an edit.
func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(`<config xmlns="` + baseNS + `">` + newTS + `</config>`))
	f.Add([]byte(`<config><crypto xmlns="` + cryptoNS + `"><isakmp><policies><policy operation="delete"><priority>1</priority></policy></policies></isakmp></crypto></config>`))
	f.Add([]byte(`<config><crypto xmlns="` + cryptoNS + `"><access-lists><access-list><name>1</name><entries><entry><sequence>1</sequence><config><protocol>6</protocol></config></entry></entries></access-list></access-lists></crypto></config>`))
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY a "b">]><config/>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, rerr, err := decodeConfigDoc(b, true)
		if err != nil {
			return
		}
		if rerr != nil {
			if rerr.Tag == "" || rerr.Message == "" {
				t.Fatalf("empty rpc-error %+v", rerr)
			}
			return
		}
		if j := ytree.AppendJSON(nil, ytree.RootNode(c.root), ytree.JSONOptions{IETF: true}); !json.Valid(j) {
			t.Fatalf("decoded config does not render: %s", j)
		}
		applyEdit(nil, c, opMerge, continueOnError)
	})
}

// decodeConfigDoc decodes a document whose root element holds data (a
// <config>), as parseRPC decodes the <config> of an edit-config (edit) or
// of a copy-config.
func decodeConfigDoc(b []byte, edit bool) (*cfgTree, *rpcError, error) {
	p := newParser(b, true)
	for {
		tok, err := p.token()
		if err != nil {
			return nil, nil, err
		}
		if _, ok := tok.(xml.StartElement); !ok {
			continue
		}
		c, rerr, err := p.decodeConfig(edit)
		if err != nil {
			return nil, nil, err
		}
		for {
			tok, err := p.token()
			if err == io.EOF {
				return c, rerr, nil
			}
			if err != nil {
				return nil, nil, err
			}
			if _, ok := tok.(xml.StartElement); ok {
				return nil, nil, errors.New("more than one top-level element")
			}
		}
	}
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

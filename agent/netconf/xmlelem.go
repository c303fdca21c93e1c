package netconf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxDepth bounds the nesting of a received document.
const maxDepth = 64

// elem is one element of a received XML document, namespaces resolved.
type elem struct {
	Name xml.Name
	Attr []xml.Attr
	Kids []*elem
	Text string
}

// attr returns the value of the attribute space:local.
func (e *elem) attr(space, local string) (string, bool) {
	for _, a := range e.Attr {
		if a.Name.Local == local && (a.Name.Space == space || (space == "" && a.Name.Space == "")) {
			return a.Value, true
		}
	}
	return "", false
}

// kid returns the first child named local in namespace ns.
func (e *elem) kid(ns, local string) *elem {
	for _, k := range e.Kids {
		if k.Name.Local == local && k.Name.Space == ns {
			return k
		}
	}
	return nil
}

// text is the element's character data without surrounding white space.
func (e *elem) text() string { return strings.TrimSpace(e.Text) }

// parseXML parses one document. DTDs are refused.
func parseXML(b []byte) (*elem, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var root *elem
	var stack []*elem
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= maxDepth {
				return nil, fmt.Errorf("XML nested deeper than %d", maxDepth)
			}
			e := &elem{Name: t.Name, Attr: t.Copy().Attr}
			if len(stack) > 0 {
				top := stack[len(stack)-1]
				top.Kids = append(top.Kids, e)
			} else if root != nil {
				return nil, errors.New("more than one top-level element")
			} else {
				root = e
			}
			stack = append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].Text += string(t)
			} else if len(bytes.TrimSpace(t)) > 0 {
				return nil, errors.New("text outside the document element")
			}
		case xml.Directive:
			return nil, errors.New("DTDs are not allowed")
		}
	}
	if root == nil {
		return nil, errors.New("no document element")
	}
	return root, nil
}

// escape appends s with XML special characters escaped.
func escape(b *bytes.Buffer, s string) {
	_ = xml.EscapeText(b, []byte(s))
}

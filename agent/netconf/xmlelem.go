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
// The <config> of edit-config, copy-config and validate is not kept as
// elements: parseRPC decodes it straight into a data tree (cfg).
type elem struct {
	Name xml.Name
	Attr []xml.Attr
	Kids []*elem
	Text string

	match  bool      // an XPath predicate: a content-match node even if empty
	cfg    *cfgTree  // a decoded <config>
	cfgErr *rpcError // why it did not decode
	buf    []byte    // text being read
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

// Memory a received message may cost once parsed: decodeRatio bytes per
// byte received, plus decodeSlack. Elements and decoded data are charged
// as they are made (the costs below are what they take on the heap, with
// the allocator's rounding); a message that would need more is refused
// with too-big. Real configurations need about 2 bytes per byte (the
// benchmarks' 10k-entry config: see TestDecodeMemory).
const (
	decodeRatio = 4
	decodeSlack = 1 << 20

	elemCost   = 160 // an elem, its slot among its parent's kids, its name
	attrCost   = 64  // one attribute
	structCost = 16  // a decoded struct beyond its size (allocation)
	entryCost  = 48  // a list map entry beyond its key
	leafCost   = 16  // a leaf's pointer (and string header)
)

// errTooBig is a message that would take more memory than it may.
var errTooBig = errors.New("netconf: the message needs more memory to decode than its size allows")

// parser reads one document, counting depth and charging memory.
type parser struct {
	d       *xml.Decoder
	depth   int
	limited bool
	left    int64 // memory the parse may still take (when limited)
}

func newParser(b []byte, limited bool) *parser {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	return &parser{d: d, limited: limited, left: int64(decodeRatio)*int64(len(b)) + decodeSlack}
}

// charge takes n bytes from the parse's allowance.
func (p *parser) charge(n int) error {
	if !p.limited {
		return nil
	}
	p.left -= int64(n)
	if p.left < 0 {
		return errTooBig
	}
	return nil
}

// token returns the next token: DTDs refused, depth bounded.
func (p *parser) token() (xml.Token, error) {
	tok, err := p.d.Token()
	if err != nil {
		return nil, err
	}
	switch tok.(type) {
	case xml.StartElement:
		if p.depth >= maxDepth {
			return nil, fmt.Errorf("XML nested deeper than %d", maxDepth)
		}
		p.depth++
	case xml.EndElement:
		p.depth--
	case xml.Directive:
		return nil, errors.New("DTDs are not allowed")
	}
	return tok, nil
}

// skip reads up to the end of the element whose content starts at depth
// (its start tag read).
func (p *parser) skip(depth int) error {
	for p.depth >= depth {
		if _, err := p.token(); err != nil {
			return unexpectedEOF(err)
		}
	}
	return nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseXML parses one document into elements. DTDs are refused. It has no
// memory limit: the server parses what it receives with parseRPC.
func parseXML(b []byte) (*elem, error) { return newParser(b, false).document(false) }

// parseRPC parses a received message: as parseXML, within the memory its
// size allows (errTooBig), and with the <config> of edit-config,
// copy-config and validate decoded into a data tree on the way (see
// decodeConfig), never held as elements.
func parseRPC(b []byte) (*elem, error) { return newParser(b, true).document(true) }

func (p *parser) document(configs bool) (*elem, error) {
	var root *elem
	var stack []*elem
	for {
		tok, err := p.token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			cost := elemCost + len(t.Name.Local)
			for _, a := range t.Attr {
				cost += attrCost + len(a.Name.Local) + len(a.Value)
			}
			if err := p.charge(cost); err != nil {
				return nil, err
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
			if edit, ok := configPosition(stack, t.Name); ok && configs {
				if e.cfg, e.cfgErr, err = p.decodeConfig(edit); err != nil {
					return nil, err
				}
				continue // decodeConfig read the end tag
			}
			stack = append(stack, e)
		case xml.EndElement:
			top := stack[len(stack)-1]
			top.Text, top.buf = string(top.buf), nil
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				if err := p.charge(len(t)); err != nil {
					return nil, err
				}
				top := stack[len(stack)-1]
				top.buf = append(top.buf, t...)
			} else if len(bytes.TrimSpace(t)) > 0 {
				return nil, errors.New("text outside the document element")
			}
		}
	}
	if root == nil {
		return nil, errors.New("no document element")
	}
	return root, nil
}

// configPosition reports whether an element called name under the open
// elements stack is a <config> holding data: that of <edit-config> (edit:
// operation attributes allowed) or the inline source of <copy-config> and
// <validate>.
func configPosition(stack []*elem, name xml.Name) (edit, ok bool) {
	if name.Space != baseNS || name.Local != "config" || len(stack) < 2 {
		return false, false
	}
	base := func(i int, local ...string) bool {
		if stack[i].Name.Space != baseNS {
			return false
		}
		for _, l := range local {
			if stack[i].Name.Local == l {
				return true
			}
		}
		return false
	}
	switch {
	case !base(0, "rpc"):
		return false, false
	case len(stack) == 2 && base(1, "edit-config"):
		return true, true
	case len(stack) == 3 && base(1, "copy-config", "validate") && base(2, "source"):
		return false, true
	}
	return false, false
}

package netconf

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// XPath filters (:xpath) are supported for simple location paths only:
// absolute paths of child steps, each a name (with or without a prefix) and
// predicates comparing a child leaf with a literal, joined with "|":
//
//	/spc:crypto/spc:isakmp/spc:policies/spc:policy[spc:priority='1']/spc:config
//
// Such a path is the subtree filter with a containment node per step, a
// content-match node per predicate and a selection node at the end, and is
// evaluated as one. Anything else (axes, "//", wildcards, functions,
// positions) is refused with invalid-value.

const capXPath = "urn:ietf:params:netconf:capability:xpath:1.0"

// xpathFilter turns a select expression into an equivalent subtree filter.
func xpathFilter(sel string) (*elem, error) {
	f := &elem{Name: xml.Name{Local: "filter"}}
	parts, err := splitOutside(sel, '|')
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		top, err := xpathPath(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		f.Kids = append(f.Kids, top)
	}
	return f, nil
}

func xpathPath(p string) (*elem, error) {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return nil, fmt.Errorf("%q: only absolute location paths without // are supported", p)
	}
	steps, err := splitOutside(p[1:], '/')
	if err != nil {
		return nil, err
	}
	var top, cur *elem
	for _, s := range steps {
		e, err := xpathStep(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", p, err)
		}
		if top == nil {
			top = e
		} else {
			cur.Kids = append(cur.Kids, e)
		}
		cur = e
	}
	if top == nil {
		return nil, fmt.Errorf("%q: empty path", p)
	}
	return top, nil
}

// xpathStep parses name[pred][pred]... into a filter element.
func xpathStep(s string) (*elem, error) {
	name, rest, _ := strings.Cut(s, "[")
	local, err := xpathName(name)
	if err != nil {
		return nil, err
	}
	e := &elem{Name: xml.Name{Local: local}}
	if rest == "" {
		return e, nil
	}
	preds, err := splitOutside("["+rest, 0)
	if err != nil {
		return nil, err
	}
	for _, pr := range preds {
		if !strings.HasPrefix(pr, "[") || !strings.HasSuffix(pr, "]") {
			return nil, fmt.Errorf("step %q: bad predicate %q", s, pr)
		}
		k, v, ok := strings.Cut(pr[1:len(pr)-1], "=")
		if !ok {
			return nil, fmt.Errorf("step %q: predicate %s is not leaf = 'literal'", s, pr)
		}
		kl, err := xpathName(k)
		if err != nil {
			return nil, err
		}
		v = strings.TrimSpace(v)
		if len(v) < 2 || (v[0] != '\'' && v[0] != '"') || v[len(v)-1] != v[0] {
			return nil, fmt.Errorf("step %q: predicate value %s is not a quoted literal", s, v)
		}
		e.Kids = append(e.Kids, &elem{Name: xml.Name{Local: kl}, Text: v[1 : len(v)-1], match: true})
	}
	return e, nil
}

// xpathName checks a (prefixed) node name and returns its local part.
func xpathName(n string) (string, error) {
	n = strings.TrimSpace(n)
	if i := strings.IndexByte(n, ':'); i >= 0 {
		n = n[i+1:]
	}
	if n == "" {
		return "", fmt.Errorf("empty step")
	}
	for _, c := range n {
		if !(c == '-' || c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return "", fmt.Errorf("%q is not a node name (wildcards, axes and functions are not supported)", n)
		}
	}
	return n, nil
}

// splitOutside splits s at sep outside brackets and quotes; with sep 0 it
// splits into bracketed groups.
func splitOutside(s string, sep byte) ([]string, error) {
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '[':
			if sep == 0 && depth == 0 && i > start {
				out = append(out, s[start:i])
				start = i
			}
			depth++
		case c == ']':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("unbalanced ] in %q", s)
			}
		case c == sep && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if depth != 0 || quote != 0 {
		return nil, fmt.Errorf("unbalanced brackets or quotes in %q", s)
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out, nil
}

package gnmi

import (
	"fmt"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/ytree"
)

// origins accepted on paths: none, or the module's name.
func validOrigin(o string) bool { return o == "" || o == ytree.Module }

// fullPath joins a request's prefix and path into one list of elements:
// origins checked, gnmi_cli's deprecated `element` strings converted, and
// module qualifiers ("spiagent-crypto:crypto") removed. The error names the
// path as the client sent it.
func fullPath(prefix, p *gpb.Path) ([]*gpb.PathElem, error) {
	po, o := prefix.GetOrigin(), p.GetOrigin()
	if !validOrigin(po) || !validOrigin(o) {
		return nil, fmt.Errorf("path %s: unknown origin %q (use none or %q)", showPath(prefix, p), firstNonEmpty(o, po), ytree.Module)
	}
	pre, err := elemsOf(prefix)
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", showPath(nil, prefix), err)
	}
	rest, err := elemsOf(p)
	if err != nil {
		return nil, fmt.Errorf("path %s: %w", showPath(prefix, p), err)
	}
	out := make([]*gpb.PathElem, 0, len(pre)+len(rest))
	for _, e := range append(pre, rest...) {
		name, err := ytree.StripModule(e.GetName())
		if err != nil {
			return nil, fmt.Errorf("path %s: %w", showPath(prefix, p), err)
		}
		for k, v := range e.GetKey() {
			if k == "" || v == "" {
				return nil, fmt.Errorf("path %s: empty key name or value in %s", showPath(prefix, p), e.GetName())
			}
		}
		out = append(out, &gpb.PathElem{Name: name, Key: e.GetKey()})
	}
	return out, nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// elemsOf returns a path's elements, from elem or else from the deprecated
// element strings (which may carry keys: "sa[conn-id=1]").
func elemsOf(p *gpb.Path) ([]*gpb.PathElem, error) {
	if p == nil {
		return nil, nil
	}
	if len(p.GetElem()) > 0 || len(p.GetElement()) == 0 {
		return p.GetElem(), nil //nolint:staticcheck
	}
	sp, err := ygot.StringToStructuredPath("/" + strings.Join(p.GetElement(), "/")) //nolint:staticcheck
	if err != nil {
		return nil, err
	}
	return sp.GetElem(), nil
}

// showPath renders prefix+path for messages, even when malformed.
func showPath(prefix, p *gpb.Path) string {
	var elems []*gpb.PathElem
	for _, x := range []*gpb.Path{prefix, p} {
		if x == nil {
			continue
		}
		if len(x.GetElem()) == 0 {
			for _, s := range x.GetElement() { //nolint:staticcheck
				elems = append(elems, &gpb.PathElem{Name: s})
			}
			continue
		}
		elems = append(elems, x.GetElem()...)
	}
	origin := firstNonEmpty(p.GetOrigin(), prefix.GetOrigin())
	s := ytree.PathString(elems)
	if origin != "" {
		return origin + ":" + s
	}
	return s
}

// hasWildcard reports whether a path has "*" or "..." elements or "*" keys.
func hasWildcard(p []*gpb.PathElem) bool {
	for _, e := range p {
		if e.GetName() == "*" || e.GetName() == "..." {
			return true
		}
		for _, v := range e.GetKey() {
			if v == "*" {
				return true
			}
		}
	}
	return false
}

func hasAnyDepth(p []*gpb.PathElem) bool {
	for _, e := range p {
		if e.GetName() == "..." {
			return true
		}
	}
	return false
}

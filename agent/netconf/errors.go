package netconf

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/spiagent/spiagent/store"
	"github.com/spiagent/spiagent/ytree"
)

// rpcError is one <rpc-error> (RFC 6241 §4.3, Appendix A).
type rpcError struct {
	Type     string // transport, rpc, protocol, application
	Tag      string
	Severity string // error (default) or warning
	Path     string // XPath with the module prefix "spc"
	Message  string
	Info     [][2]string // error-info children: name, text
}

func (e *rpcError) Error() string {
	s := fmt.Sprintf("%s/%s", e.Type, e.Tag)
	if e.Path != "" {
		s += " at " + e.Path
	}
	return s + ": " + e.Message
}

// rpcErrors is the list of errors of one reply.
type rpcErrors []*rpcError

func (es rpcErrors) Error() string {
	var parts []string
	for _, e := range es {
		parts = append(parts, e.Error())
	}
	return strings.Join(parts, "; ")
}

func newErr(typ, tag, format string, args ...any) *rpcError {
	return &rpcError{Type: typ, Tag: tag, Message: fmt.Sprintf(format, args...)}
}

func (e *rpcError) at(path string) *rpcError { e.Path = path; return e }

// info adds an error-info child; its text (an element or attribute name,
// a session-id) is clipped like any value a client sent.
func (e *rpcError) info(name, text string) *rpcError {
	e.Info = append(e.Info, [2]string{name, ytree.Clip(text)})
	return e
}

// clipMsgLen is how much of a message built around a client's text (an
// XML parser's error, a value a library refused) a reply echoes.
const clipMsgLen = 512

// clipMsg bounds such a message (cut at a rune boundary, then "...").
func clipMsg(s string) string {
	if len(s) <= clipMsgLen {
		return s
	}
	n := clipMsgLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// xpathPrefix is the prefix error-path uses for the data module.
const xpathPrefix = "spc"

func (e *rpcError) write(b *bytes.Buffer) {
	sev := e.Severity
	if sev == "" {
		sev = "error"
	}
	b.WriteString("<rpc-error><error-type>")
	b.WriteString(e.Type)
	b.WriteString("</error-type><error-tag>")
	b.WriteString(e.Tag)
	b.WriteString("</error-tag><error-severity>")
	b.WriteString(sev)
	b.WriteString("</error-severity>")
	if e.Path != "" {
		fmt.Fprintf(b, `<error-path xmlns:%s="%s">`, xpathPrefix, moduleNamespaces[cryptoModule])
		escape(b, e.Path)
		b.WriteString("</error-path>")
	}
	b.WriteString(`<error-message xml:lang="en">`)
	escape(b, e.Message)
	b.WriteString("</error-message>")
	if len(e.Info) > 0 {
		b.WriteString("<error-info>")
		for _, kv := range e.Info {
			fmt.Fprintf(b, "<%s>", kv[0])
			escape(b, kv[1])
			fmt.Fprintf(b, "</%s>", kv[0])
		}
		b.WriteString("</error-info>")
	}
	b.WriteString("</rpc-error>")
}

// xpathOf turns a store path ("/crypto/x/y[name=a]/config/z") into an
// XPath with module prefixes ("/spc:crypto/spc:x/spc:y[spc:name='a']/...").
func xpathOf(p string) string {
	var b strings.Builder
	for _, seg := range splitPath(p) {
		name, keys, _ := strings.Cut(seg, "[")
		b.WriteString("/" + xpathPrefix + ":" + name)
		if keys == "" {
			continue
		}
		for _, kv := range strings.Split(strings.TrimSuffix(keys, "]"), "][") {
			k, v, _ := strings.Cut(kv, "=")
			q := "'"
			if strings.Contains(v, "'") {
				q = `"`
			}
			b.WriteString("[" + xpathPrefix + ":" + k + "=" + q + v + q + "]")
		}
	}
	return b.String()
}

// splitPath splits a path at the slashes outside brackets.
func splitPath(p string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '[':
			depth++
		case ']':
			depth--
		case '/':
			if depth == 0 {
				if i > start {
					out = append(out, p[start:i])
				}
				start = i + 1
			}
		}
	}
	if start < len(p) {
		out = append(out, p[start:])
	}
	return out
}

// problemErrors maps the store's validation problems to rpc-errors (at
// most maxErrors).
func problemErrors(ps []store.Problem) rpcErrors {
	var out rpcErrors
	for i, p := range ps {
		if i == maxErrors {
			return append(out, moreErrors(len(ps)-i))
		}
		out = append(out, newErr("application", "operation-failed", "%s", p.Reason).at(xpathOf(p.Path)))
	}
	return out
}

// maxErrors bounds the rpc-errors of one reply: a config with a million
// bad values gets the first of them and a count of the others, not a
// reply many times its size.
const maxErrors = 100

// moreErrors is the last rpc-error of a reply that lists maxErrors.
func moreErrors(n int) *rpcError {
	return newErr("application", "operation-failed", "and %d more errors, not listed", n)
}

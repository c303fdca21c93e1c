package netconf

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/spiagent/spiagent/agent/dslock"
	"github.com/spiagent/spiagent/store"
)

const getRunning = `<get-config><source><running/></source></get-config>`

func TestHelloCapabilities(t *testing.T) {
	e := newEnv(t, nil)
	framings(t, func(t *testing.T, b11 bool) {
		c := e.dial(rwUser, rwPass, b11)
		for _, want := range []string{
			"urn:ietf:params:netconf:base:1.0", "urn:ietf:params:netconf:base:1.1",
			"urn:ietf:params:netconf:capability:candidate:1.0", "urn:ietf:params:netconf:capability:validate:1.1",
			"urn:ietf:params:netconf:capability:rollback-on-error:1.0", "urn:ietf:params:netconf:capability:writable-running:1.0",
			"urn:spiagent:yang:spiagent-crypto?module=spiagent-crypto&revision=2026-11-27",
		} {
			if !slices.Contains(c.caps, want) {
				t.Errorf("capability %s missing from %v", want, c.caps)
			}
		}
		if !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(c.sessionID) {
			t.Errorf("session-id %q", c.sessionID)
		}
		r := c.rpc(getRunning)
		if find(r, "data", "crypto") == nil {
			t.Fatalf("get-config: %s", dump(r))
		}
		isOK(t, c.rpc(`<close-session/>`))
	})
}

// TestNamespaceTable checks moduleNamespaces against yang/.
func TestNamespaceTable(t *testing.T) {
	for mod, ns := range moduleNamespaces {
		b, err := os.ReadFile(filepath.Join("../../yang", mod+".yang"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `namespace "`+ns+`";`) {
			t.Errorf("module %s: namespace %s not in its YANG", mod, ns)
		}
		if mod == cryptoModule && !strings.Contains(string(b), "revision "+cryptoRevision) {
			t.Errorf("module %s: revision %s not in its YANG", mod, cryptoRevision)
		}
	}
}

func TestGetConfigRedactsKeys(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(roUser, roPass, true)
	r := c.rpc(getRunning)
	cr := find(r, "data", "crypto")
	if cr == nil || cr.Name.Space != cryptoNS {
		t.Fatalf("no crypto in namespace %s: %s", cryptoNS, dump(r))
	}
	key := find(cr, "isakmp", "keys", "key", "config", "key")
	if key == nil || key.text() != "<redacted>" {
		t.Fatalf("pre-shared key not redacted: %s", dump(r))
	}
	if got := find(cr, "isakmp", "policies", "policy", "config", "lifetime"); got == nil || got.text() != "180" {
		t.Fatalf("policy lifetime: %s", dump(r))
	}
	// List keys come first in a list entry (RFC 7950 §7.8.5).
	pol := find(cr, "isakmp", "policies", "policy")
	if pol.Kids[0].Name.Local != "priority" {
		t.Errorf("first child of policy is %s", pol.Kids[0].Name.Local)
	}
	// The candidate starts as a copy of running.
	r2 := c.rpc(`<get-config><source><candidate/></source></get-config>`)
	if dump(r2) != dump(r) {
		t.Errorf("candidate differs from running:\n%s\n%s", dump(r2), dump(r))
	}
}

func TestSubtreeFilter(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(rwUser, rwPass, false)
	// A second policy, to tell content matches apart.
	isOK(t, c.rpc(`<edit-config><target><running/></target><config><crypto xmlns="`+cryptoNS+`"><isakmp><policies>
		<policy><priority>20</priority><config><priority>20</priority><authentication>pre-share</authentication><encryption>aes-256</encryption></config></policy>
		</policies></isakmp></crypto></config></edit-config>`))
	for _, tc := range []struct {
		desc, filter string
		check        func(t *testing.T, data *elem)
	}{
		{"containment", `<crypto xmlns="` + cryptoNS + `"><transform-sets/></crypto>`, func(t *testing.T, d *elem) {
			cr := find(d, "crypto")
			if len(cr.Kids) != 1 || cr.Kids[0].Name.Local != "transform-sets" {
				t.Fatalf("want only transform-sets: %s", dump(d))
			}
		}},
		{"content match on key", `<crypto xmlns="` + cryptoNS + `"><isakmp><policies><policy><priority>20</priority></policy></policies></isakmp></crypto>`, func(t *testing.T, d *elem) {
			ps := findAll(find(d, "crypto", "isakmp", "policies"), "policy")
			if len(ps) != 1 || find(ps[0], "config", "encryption").text() != "aes-256" {
				t.Fatalf("want policy 20 whole: %s", dump(d))
			}
		}},
		{"content match and selection", `<crypto xmlns="` + cryptoNS + `"><isakmp><policies><policy><priority>1</priority><config><lifetime/></config></policy></policies></isakmp></crypto>`, func(t *testing.T, d *elem) {
			p := find(d, "crypto", "isakmp", "policies", "policy")
			if p == nil || find(p, "priority").text() != "1" || len(find(p, "config").Kids) != 1 || find(p, "config", "lifetime").text() != "180" {
				t.Fatalf("want policy 1 lifetime only: %s", dump(d))
			}
		}},
		{"content match on a non-key leaf", `<crypto xmlns="` + cryptoNS + `"><isakmp><policies><policy><config><encryption>aes-256</encryption></config></policy></policies></isakmp></crypto>`, func(t *testing.T, d *elem) {
			ps := findAll(find(d, "crypto", "isakmp", "policies"), "policy")
			if len(ps) != 1 || find(ps[0], "priority").text() != "20" {
				t.Fatalf("want policy 20 with its key: %s", dump(d))
			}
		}},
		{"no match", `<crypto xmlns="` + cryptoNS + `"><isakmp><policies><policy><priority>99</priority></policy></policies></isakmp></crypto>`, func(t *testing.T, d *elem) {
			if len(d.Kids) != 0 {
				t.Fatalf("want empty data: %s", dump(d))
			}
		}},
		{"other namespace", `<crypto xmlns="urn:example:other"/>`, func(t *testing.T, d *elem) {
			if len(d.Kids) != 0 {
				t.Fatalf("want empty data: %s", dump(d))
			}
		}},
		{"empty filter", ``, func(t *testing.T, d *elem) {
			if len(d.Kids) != 0 {
				t.Fatalf("want empty data: %s", dump(d))
			}
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := c.rpc(`<get-config><source><running/></source><filter type="subtree">` + tc.filter + `</filter></get-config>`)
			d := find(r, "data")
			if d == nil {
				t.Fatalf("no data: %s", dump(r))
			}
			tc.check(t, d)
		})
	}
	r := c.rpc(`<get-config><source><running/></source><filter type="regex" select="/crypto"/></get-config>`)
	wantErr(t, r, "protocol", "bad-attribute", "")
}

const newTS = `<crypto xmlns="` + cryptoNS + `"><transform-sets><transform-set><name>ts-new</name><config><name>ts-new</name><esp-encryption>esp-aes</esp-encryption><esp-integrity>esp-sha-hmac</esp-integrity></config></transform-set></transform-sets></crypto>`

func editCandidate(cfg string, opts string) string {
	return `<edit-config><target><candidate/></target>` + opts + `<config>` + cfg + `</config></edit-config>`
}

func hasTS(e *env, name string) bool {
	ts := e.st.Running().Root.GetCrypto().GetTransformSets()
	return ts != nil && ts.GetTransformSet(name) != nil
}

func TestEditValidateCommit(t *testing.T) {
	framings(t, func(t *testing.T, b11 bool) {
		e := newEnv(t, nil)
		c := e.dial(rwUser, rwPass, b11)
		isOK(t, c.rpc(editCandidate(newTS, "")))
		if hasTS(e, "ts-new") {
			t.Fatal("edit of the candidate changed running")
		}
		r := c.rpc(`<get-config><source><candidate/></source><filter><crypto xmlns="` + cryptoNS + `"><transform-sets><transform-set><name>ts-new</name></transform-set></transform-sets></crypto></filter></get-config>`)
		if got := find(r, "data", "crypto", "transform-sets", "transform-set", "config", "esp-encryption"); got == nil || got.text() != "esp-aes" {
			t.Fatalf("candidate: %s", dump(r))
		}
		isOK(t, c.rpc(`<validate><source><candidate/></source></validate>`))
		before := e.st.Running().ID
		isOK(t, c.rpc(`<commit/>`))
		if !hasTS(e, "ts-new") {
			t.Fatal("commit did not reach the store")
		}
		if n := e.st.Running().ID - before; n != 1 {
			t.Errorf("commit made %d store commits, want 1", n)
		}
		// The pre-shared key survived the round trip through the candidate.
		if k := e.st.Running().Root.GetCrypto().GetIsakmp().GetKeys().GetKey("192.0.2.2"); k == nil || k.GetConfig().GetKey() == "" || k.GetConfig().GetKey() == "<redacted>" {
			t.Fatalf("pre-shared key lost: %+v", k)
		}
		// discard-changes drops candidate edits.
		isOK(t, c.rpc(editCandidate(`<crypto xmlns="`+cryptoNS+`"><transform-sets><transform-set operation="delete"><name>ts-new</name></transform-set></transform-sets></crypto>`, "")))
		isOK(t, c.rpc(`<discard-changes/>`))
		isOK(t, c.rpc(`<commit/>`))
		if !hasTS(e, "ts-new") {
			t.Fatal("discarded delete was committed")
		}
	})
}

func TestEditOperations(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(rwUser, rwPass, true)
	tsOp := func(op, extra string) string {
		return `<crypto xmlns="` + cryptoNS + `"><transform-sets><transform-set operation="` + op + `"><name>auth2</name>` + extra + `</transform-set></transform-sets></crypto>`
	}
	cand := func() *elem {
		return c.rpc(`<get-config><source><candidate/></source><filter><crypto xmlns="` + cryptoNS + `"><transform-sets/></crypto></filter></get-config>`)
	}
	r := c.rpc(editCandidate(tsOp("create", ""), ""))
	wantErr(t, r, "application", "data-exists", "/spc:crypto/spc:transform-sets/spc:transform-set[spc:name='auth2']")
	isOK(t, c.rpc(editCandidate(tsOp("replace", `<config><name>auth2</name><esp-encryption>esp-3des</esp-encryption></config>`), "")))
	ts := find(cand(), "data", "crypto", "transform-sets", "transform-set", "config")
	if find(ts, "esp-encryption").text() != "esp-3des" || find(ts, "ah") != nil {
		t.Fatalf("replace: %s", dump(ts))
	}
	isOK(t, c.rpc(editCandidate(tsOp("delete", ""), "")))
	if find(cand(), "data", "crypto", "transform-sets", "transform-set") != nil {
		t.Fatal("delete left the entry")
	}
	wantErr(t, c.rpc(editCandidate(tsOp("delete", ""), "")), "application", "data-missing", "transform-set[spc:name='auth2']")
	isOK(t, c.rpc(editCandidate(tsOp("remove", ""), "")))
	isOK(t, c.rpc(`<discard-changes/>`))

	// Leaf merge and leaf delete.
	lifetime := func() string {
		r := c.rpc(`<get-config><source><candidate/></source><filter><crypto xmlns="` + cryptoNS + `"><isakmp><policies><policy><priority>1</priority><config><lifetime/></config></policy></policies></isakmp></crypto></filter></get-config>`)
		if l := find(r, "data", "crypto", "isakmp", "policies", "policy", "config", "lifetime"); l != nil {
			return l.text()
		}
		return ""
	}
	pol := func(leaf string) string {
		return `<crypto xmlns="` + cryptoNS + `"><isakmp><policies><policy><priority>1</priority><config>` + leaf + `</config></policy></policies></isakmp></crypto>`
	}
	isOK(t, c.rpc(editCandidate(pol(`<lifetime>600</lifetime>`), "")))
	if got := lifetime(); got != "600" {
		t.Fatalf("lifetime after merge = %q", got)
	}
	isOK(t, c.rpc(editCandidate(pol(`<lifetime xmlns:nc="`+baseNS+`" nc:operation="delete"/>`), "")))
	if got := lifetime(); got != "" {
		t.Fatalf("lifetime after delete = %q", got)
	}
	isOK(t, c.rpc(`<discard-changes/>`))

	// error-option: rollback-on-error undoes the first edit; stop-on-error keeps it.
	two := `<crypto xmlns="` + cryptoNS + `"><isakmp><policies><policy><priority>1</priority><config><lifetime>700</lifetime></config></policy></policies></isakmp>` +
		`<transform-sets><transform-set operation="create"><name>auth2</name></transform-set></transform-sets></crypto>`
	wantErr(t, c.rpc(editCandidate(two, `<error-option>rollback-on-error</error-option>`)), "application", "data-exists", "auth2")
	if got := lifetime(); got != "180" {
		t.Fatalf("rollback-on-error left lifetime %q", got)
	}
	wantErr(t, c.rpc(editCandidate(two, `<error-option>stop-on-error</error-option>`)), "application", "data-exists", "auth2")
	if got := lifetime(); got != "700" {
		t.Fatalf("stop-on-error: lifetime %q, want the first edit applied", got)
	}
	isOK(t, c.rpc(`<discard-changes/>`))

	// default-operation none: nothing is created without an operation.
	isOK(t, c.rpc(editCandidate(pol(`<lifetime>900</lifetime>`), `<default-operation>none</default-operation>`)))
	if got := lifetime(); got != "180" {
		t.Fatalf("default-operation none changed lifetime to %q", got)
	}
	// test-only validates and changes nothing.
	isOK(t, c.rpc(editCandidate(pol(`<lifetime>900</lifetime>`), `<test-option>test-only</test-option>`)))
	if got := lifetime(); got != "180" {
		t.Fatalf("test-only changed lifetime to %q", got)
	}
	// default-operation replace: the candidate becomes the config given.
	isOK(t, c.rpc(editCandidate(newTS, `<default-operation>replace</default-operation>`)))
	r = c.rpc(`<get-config><source><candidate/></source></get-config>`)
	if cr := find(r, "data", "crypto"); len(cr.Kids) != 1 || find(cr, "transform-sets", "transform-set", "name").text() != "ts-new" {
		t.Fatalf("replace: %s", dump(r))
	}
}

func TestWritableRunning(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(rwUser, rwPass, false)
	isOK(t, c.rpc(`<edit-config><target><running/></target><config>`+newTS+`</config></edit-config>`))
	if !hasTS(e, "ts-new") {
		t.Fatal("edit of running did not reach the store")
	}
	// A running edit the store refuses changes nothing.
	before := e.st.Running().ID
	bad := `<crypto xmlns="` + cryptoNS + `"><crypto-maps><crypto-map><name>testtag1</name><entries><entry><sequence>10</sequence><config><sequence>10</sequence><transform-set>nope</transform-set></config></entry></entries></crypto-map></crypto-maps></crypto>`
	r := c.rpc(`<edit-config><target><running/></target><config>` + bad + `</config></edit-config>`)
	wantErr(t, r, "application", "operation-failed", "/spc:crypto/spc:crypto-maps/spc:crypto-map[spc:name='testtag1']")
	if e.st.Running().ID != before {
		t.Fatal("failed running edit committed")
	}
}

func TestCommitValidationFailure(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(rwUser, rwPass, true)
	bad := `<crypto xmlns="` + cryptoNS + `"><crypto-maps><crypto-map><name>testtag1</name><entries><entry><sequence>10</sequence><config><sequence>10</sequence><transform-set>nope</transform-set></config></entry></entries></crypto-map></crypto-maps></crypto>`
	isOK(t, c.rpc(editCandidate(bad, "")))
	before := e.st.Running().ID
	r := c.rpc(`<validate><source><candidate/></source></validate>`)
	m := wantErr(t, r, "application", "operation-failed", "/spc:crypto/spc:crypto-maps/spc:crypto-map[spc:name='testtag1']/spc:entries/spc:entry[spc:sequence='10']")
	if !strings.Contains(m["error-message"], "nope") {
		t.Errorf("message %q does not name the missing transform set", m["error-message"])
	}
	wantErr(t, c.rpc(`<commit/>`), "application", "operation-failed", "spc:entry[spc:sequence='10']")
	if e.st.Running().ID != before {
		t.Fatal("failed commit changed running")
	}
	// validate of inline config.
	isOK(t, c.rpc(`<validate><source><config>`+newTS+`</config></source></validate>`))
}

func TestRPCErrors(t *testing.T) {
	e := newEnv(t, nil)
	framings(t, func(t *testing.T, b11 bool) {
		c := e.dial(rwUser, rwPass, b11)
		// Malformed XML: the message-id is still echoed.
		r := c.raw(`<rpc message-id="m1" xmlns="` + baseNS + `"><get-config><source><running/></source></get-config`)
		tag := "operation-failed"
		if b11 {
			tag = "malformed-message"
		}
		wantErr(t, r, "rpc", tag, "")
		if id, _ := r.attr("", "message-id"); id != "m1" {
			t.Errorf("message-id %q not echoed", id)
		}
		for _, tc := range []struct {
			desc, op, typ, tag, path, info string
		}{
			{"unknown element in config", editCandidate(`<crypto xmlns="`+cryptoNS+`"><isakmp><bogus>1</bogus></isakmp></crypto>`, ""),
				"application", "unknown-element", "/spc:crypto/spc:isakmp/spc:bogus", "bogus"},
			{"unknown namespace", editCandidate(`<crypto xmlns="urn:example:x"/>`, ""), "application", "unknown-element", "/spc:crypto", "crypto"},
			{"bad value", editCandidate(`<crypto xmlns="`+cryptoNS+`"><isakmp><policies><policy><priority>1</priority><config><lifetime>abc</lifetime></config></policy></policies></isakmp></crypto>`, ""),
				"application", "invalid-value", "/spc:crypto/spc:isakmp/spc:policies/spc:policy[spc:priority='1']/spc:config/spc:lifetime", "lifetime"},
			{"out of range", editCandidate(`<crypto xmlns="`+cryptoNS+`"><isakmp><policies><policy><priority>0</priority></policy></policies></isakmp></crypto>`, ""),
				"application", "invalid-value", "spc:priority", "priority"},
			{"bad enum", editCandidate(`<crypto xmlns="`+cryptoNS+`"><isakmp><policies><policy><priority>1</priority><config><encryption>rot13</encryption></config></policy></policies></isakmp></crypto>`, ""),
				"application", "invalid-value", "spc:encryption", "encryption"},
			{"missing key", editCandidate(`<crypto xmlns="`+cryptoNS+`"><isakmp><policies><policy><config><lifetime>5</lifetime></config></policy></policies></isakmp></crypto>`, ""),
				"protocol", "missing-element", "/spc:crypto/spc:isakmp/spc:policies/spc:policy", "priority"},
			{"state data", editCandidate(`<crypto xmlns="`+cryptoNS+`"><isakmp><sas/></isakmp></crypto>`, ""), "application", "invalid-value", "spc:sas", "sas"},
			{"bad operation attribute", editCandidate(`<crypto xmlns="`+cryptoNS+`" xmlns:nc="`+baseNS+`" nc:operation="frob"/>`, ""), "protocol", "bad-attribute", "", "crypto"},
			{"unknown operation", `<frobnicate/>`, "rpc", "unknown-element", "", "frobnicate"},
			{"unknown parameter", `<get-config><source><running/></source><bogus/></get-config>`, "protocol", "unknown-element", "", "bogus"},
			{"bad datastore", `<get-config><source><startup/></source></get-config>`, "protocol", "invalid-value", "", "startup"},
			{"unsupported op", `<get-schema/>`, "protocol", "operation-not-supported", "", ""},
		} {
			t.Run(tc.desc, func(t *testing.T) {
				m := wantErr(t, c.rpc(tc.op), tc.typ, tc.tag, tc.path)
				if tc.info != "" && m["info:bad-element"] != tc.info {
					t.Errorf("bad-element = %q, want %q", m["info:bad-element"], tc.info)
				}
			})
		}
		r = c.raw(`<rpc xmlns="` + baseNS + `"><get/></rpc>`)
		wantErr(t, r, "rpc", "missing-attribute", "")
		// The session survives all of that.
		if find(c.rpc(getRunning), "data", "crypto") == nil {
			t.Fatal("session unusable after errors")
		}
	})
}

func TestLocks(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial(rwUser, rwPass, true)
	b := e.dial(rwUser, rwPass, false)
	isOK(t, a.rpc(`<lock><target><candidate/></target></lock>`))
	m := wantErr(t, b.rpc(`<lock><target><candidate/></target></lock>`), "protocol", "lock-denied", "")
	if m["info:session-id"] != a.sessionID {
		t.Errorf("lock-denied session-id %q, want %q", m["info:session-id"], a.sessionID)
	}
	m = wantErr(t, b.rpc(editCandidate(newTS, "")), "protocol", "in-use", "")
	if m["info:session-id"] != a.sessionID {
		t.Errorf("in-use session-id %q, want %q", m["info:session-id"], a.sessionID)
	}
	wantErr(t, b.rpc(`<commit/>`), "protocol", "in-use", "")
	wantErr(t, b.rpc(`<unlock><target><candidate/></target></unlock>`), "protocol", "operation-failed", "")
	isOK(t, a.rpc(editCandidate(newTS, "")))
	// Running locked by b blocks a's commit.
	isOK(t, b.rpc(`<lock><target><running/></target></lock>`))
	wantErr(t, a.rpc(`<commit/>`), "protocol", "in-use", "")
	isOK(t, b.rpc(`<unlock><target><running/></target></unlock>`))
	isOK(t, a.rpc(`<commit/>`))
	if !hasTS(e, "ts-new") {
		t.Fatal("commit under lock lost")
	}
	// The lock goes with the session; uncommitted changes too.
	isOK(t, a.rpc(editCandidate(`<crypto xmlns="`+cryptoNS+`"><transform-sets><transform-set operation="delete"><name>ts-new</name></transform-set></transform-sets></crypto>`, "")))
	isOK(t, a.rpc(`<close-session/>`))
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := b.rpc(`<lock><target><candidate/></target></lock>`)
		if r.kid(baseNS, "ok") != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock not released after close-session: %s", dump(r))
		}
		time.Sleep(20 * time.Millisecond)
	}
	isOK(t, b.rpc(`<commit/>`))
	if !hasTS(e, "ts-new") {
		t.Fatal("the closed session's uncommitted delete survived")
	}
	// A dirty candidate cannot be locked.
	isOK(t, b.rpc(`<unlock><target><candidate/></target></unlock>`))
	isOK(t, b.rpc(editCandidate(`<crypto xmlns="`+cryptoNS+`"><transform-sets><transform-set operation="delete"><name>ts-new</name></transform-set></transform-sets></crypto>`, "")))
	wantErr(t, b.rpc(`<lock><target><candidate/></target></lock>`), "protocol", "lock-denied", "")
}

func TestKillSession(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial(rwUser, rwPass, true)
	b := e.dial(rwUser, rwPass, true)
	isOK(t, b.rpc(`<lock><target><running/></target></lock>`))
	wantErr(t, a.rpc(`<kill-session><session-id>`+a.sessionID+`</session-id></kill-session>`), "protocol", "invalid-value", "")
	wantErr(t, a.rpc(`<kill-session><session-id>9999</session-id></kill-session>`), "protocol", "invalid-value", "")
	isOK(t, a.rpc(`<kill-session><session-id>`+b.sessionID+`</session-id></kill-session>`))
	if _, err := b.rawBytes(`<rpc message-id="x" xmlns="` + baseNS + `"><get/></rpc>`); err == nil {
		t.Fatal("killed session still answers")
	}
	isOK(t, a.rpc(`<lock><target><running/></target></lock>`))
}

func TestReadOnlyUser(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(roUser, roPass, true)
	for _, op := range []string{editCandidate(newTS, ""), `<commit/>`, `<lock><target><running/></target></lock>`, `<clear-crypto-sa xmlns="` + cryptoNS + `"/>`} {
		wantErr(t, c.rpc(op), "protocol", "access-denied", "")
	}
	if find(c.rpc(`<get/>`), "data", "crypto") == nil {
		t.Fatal("read-only get failed")
	}
	if _, err := e.tryDial(roUser, "wrong", true); err == nil {
		t.Fatal("bad password accepted")
	}
}

func TestClearCryptoSA(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(rwUser, rwPass, true)
	r := c.rpc(`<clear-crypto-sa xmlns="` + cryptoNS + `"><peer>192.0.2.2</peer><no-notify>true</no-notify></clear-crypto-sa>`)
	if got := find(r, "ipsec-sas-cleared"); got == nil || got.text() != "2" || got.Name.Space != cryptoNS {
		t.Fatalf("reply: %s", dump(r))
	}
	if len(e.ops.calls) != 1 || e.ops.calls[0].Peer != "192.0.2.2" || !e.ops.calls[0].NoNotify || e.ops.calls[0].ISAKMP {
		t.Fatalf("calls: %+v", e.ops.calls)
	}
	wantErr(t, c.rpc(`<clear-crypto-sa xmlns="`+cryptoNS+`"><peer>not-an-ip</peer></clear-crypto-sa>`), "protocol", "invalid-value", "")
}

func TestSessionLimits(t *testing.T) {
	t.Run("max sessions", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MaxSessions = 1 })
		a := e.dial(rwUser, rwPass, true)
		if _, err := e.tryDial(rwUser, rwPass, true); err == nil {
			t.Fatal("second session accepted")
		}
		isOK(t, a.rpc(`<close-session/>`))
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := e.tryDial(rwUser, rwPass, true)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no session after the first closed: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.IdleTimeout = 1500 * time.Millisecond })
		c := e.dial(rwUser, rwPass, true)
		// Activity resets the timer.
		time.Sleep(600 * time.Millisecond)
		isOK(t, c.rpc(`<lock><target><running/></target></lock>`))
		time.Sleep(600 * time.Millisecond)
		isOK(t, c.rpc(`<unlock><target><running/></target></unlock>`))
		time.Sleep(3200 * time.Millisecond)
		if _, err := c.rawBytes(`<rpc message-id="1" xmlns="` + baseNS + `"><get/></rpc>`); err == nil {
			t.Fatal("idle session still open")
		}
	})
	t.Run("message size", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MaxMessage = 4096 })
		c := e.dial(rwUser, rwPass, true)
		b, _ := c.rawBytes(`<rpc message-id="1" xmlns="` + baseNS + `"><get>` + strings.Repeat(" ", 8192) + `</get></rpc>`)
		if !strings.Contains(string(b), "too-big") {
			t.Fatalf("want too-big, got %q", b)
		}
		if _, err := c.rawBytes(`<rpc message-id="2" xmlns="` + baseNS + `"><get/></rpc>`); err == nil {
			t.Fatal("session survived an oversized message")
		}
	})
}

func TestHostKeyPersisted(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k", HostKeyFile)
	k1, gen1, err := LoadHostKey(p)
	if err != nil || !gen1 {
		t.Fatalf("first load: %v generated=%v", err, gen1)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	k2, gen2, err := LoadHostKey(p)
	if err != nil || gen2 || string(k1.PublicKey().Marshal()) != string(k2.PublicKey().Marshal()) {
		t.Fatalf("reload: %v generated=%v same=%v", err, gen2, string(k1.PublicKey().Marshal()) == string(k2.PublicKey().Marshal()))
	}
}

var _ = store.OpReplace

// TestShutdownWithIdleConnection: Serve returns on cancel even with an
// authenticated SSH connection that never asked for the subsystem.
func TestShutdownWithIdleConnection(t *testing.T) {
	e := newEnv(t, nil)
	conn, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{
		User: rwUser, Auth: []ssh.AuthMethod{ssh.Password(rwPass)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stopped := make(chan error, 1)
	go func() { stopped <- e.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return with an idle SSH connection open")
	}
}

// TestRunningLockShared: a <lock> on running takes the lock shared with
// gNMI (so gNMI Set is held off), is refused while another interface holds
// it, and is released with the session.
func TestRunningLockShared(t *testing.T) {
	var shared dslock.Lock
	e := newEnv(t, func(c *Config) { c.RunningLock = &shared })
	a := e.dial(rwUser, rwPass, true)
	isOK(t, a.rpc(`<lock><target><running/></target></lock>`))
	if h := shared.Holder(); h != "NETCONF session "+a.sessionID {
		t.Fatalf("shared lock holder %q, want NETCONF session %s", h, a.sessionID)
	}
	isOK(t, a.rpc(`<unlock><target><running/></target></unlock>`))
	if h := shared.Holder(); h != "" {
		t.Fatalf("shared lock still held by %q after unlock", h)
	}
	if ok, _ := shared.TryLock("another interface"); !ok {
		t.Fatal("shared lock not free")
	}
	m := wantErr(t, a.rpc(`<lock><target><running/></target></lock>`), "protocol", "lock-denied", "")
	if !strings.Contains(m["error-message"], "another interface") {
		t.Errorf("lock-denied message %q does not name the holder", m["error-message"])
	}
	shared.Unlock("another interface")
	isOK(t, a.rpc(`<lock><target><running/></target></lock>`))
	isOK(t, a.rpc(`<close-session/>`))
	deadline := time.Now().Add(5 * time.Second)
	for shared.Holder() != "" {
		if time.Now().After(deadline) {
			t.Fatalf("shared lock held by %q after the session closed", shared.Holder())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

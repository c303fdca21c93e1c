package netconf

import (
	"strings"
	"testing"

	"github.com/spiagent/spiagent/ytree"
)

// The seed's pre-shared key for 192.0.2.2 (examples/lab/router-a.json).
const (
	rightKey = "1234"
	wrongKey = "0000"
	keyPath  = "/spc:crypto/spc:isakmp/spc:keys/spc:key/spc:config/spc:key"
)

func keyFilter(guess string) string {
	return `<filter type="subtree"><crypto xmlns="` + cryptoNS + `"><isakmp><keys><key><config><key>` + guess + `</key></config></key></keys></isakmp></crypto></filter>`
}

func keyXPath(guess string) string {
	return `<filter type="xpath" xmlns:spc="` + cryptoNS + `" select="/spc:crypto/spc:isakmp/spc:keys/spc:key/spc:config[spc:key='` + guess + `']"/>`
}

// wantSecretRefusal checks the refusal of a filter that selects by a
// secret: invalid-value naming the leaf and why.
func wantSecretRefusal(t *testing.T, r *elem) {
	t.Helper()
	m := wantErr(t, r, "protocol", "invalid-value", keyPath)
	if !strings.Contains(m["error-message"], "secret leaves cannot be used to select data") {
		t.Errorf("message %q does not say why", m["error-message"])
	}
}

// TestSecretFilterOracle: a subtree content-match node or an XPath
// predicate on the pre-shared key is refused, for every role, datastore
// and read operation, with the same answer whether the guess is right or
// wrong, and whether any key exists at all: the answer depends on the
// filter and the schema only.
func TestSecretFilterOracle(t *testing.T) {
	e := newEnv(t, nil)
	ro := e.dial(roUser, roPass, true)
	rw := e.dial(rwUser, rwPass, false)
	reads := map[string]func(filter string) string{
		"get-config running":   func(f string) string { return `<get-config><source><running/></source>` + f + `</get-config>` },
		"get-config candidate": func(f string) string { return `<get-config><source><candidate/></source>` + f + `</get-config>` },
		"get":                  func(f string) string { return `<get>` + f + `</get>` },
	}
	answers := map[string]bool{}
	for role, c := range map[string]*client{"read-only": ro, "read-write": rw} {
		for name, read := range reads {
			for kind, filter := range map[string]func(string) string{"subtree": keyFilter, "xpath": keyXPath} {
				right, wrong := c.rpc(read(filter(rightKey))), c.rpc(read(filter(wrongKey)))
				wantSecretRefusal(t, right)
				wantSecretRefusal(t, wrong)
				if dump(right) != dump(wrong) {
					t.Errorf("%s %s %s: the right guess answers\n%s\nthe wrong one\n%s", role, name, kind, dump(right), dump(wrong))
				}
				answers[dump(right)] = true
			}
		}
	}
	// Thousands of guesses in one filter: refused as one.
	var many strings.Builder
	for i := 0; i < 2000; i++ {
		many.WriteString(`<key><config><key>` + strings.Repeat("9", 4) + `</key></config></key>`)
	}
	wantSecretRefusal(t, ro.rpc(`<get-config><source><running/></source><filter><crypto xmlns="`+cryptoNS+`"><isakmp><keys>`+many.String()+`</keys></isakmp></crypto></filter></get-config>`))
	// With no key configured at all the answer is the same.
	isOK(t, rw.rpc(`<edit-config><target><running/></target><default-operation>replace</default-operation><config>`+newTS+`</config></edit-config>`))
	if e.st.Running().Root.GetCrypto().GetIsakmp().GetKeys() != nil {
		t.Fatal("keys still configured")
	}
	r := ro.rpc(reads["get-config running"](keyFilter(rightKey)))
	wantSecretRefusal(t, r)
	if !answers[dump(r)] {
		t.Errorf("without keys the refusal differs: %s", dump(r))
	}
}

// TestSecretSelection: the key leaf may still be selected (it reads
// redacted) and the other leaves of its entry still select by content.
func TestSecretSelection(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(roUser, roPass, true)
	r := c.rpc(`<get-config><source><running/></source><filter><crypto xmlns="` + cryptoNS + `"><isakmp><keys><key><config><address>192.0.2.2</address><key/></config></key></keys></isakmp></crypto></filter></get-config>`)
	k := find(r, "data", "crypto", "isakmp", "keys", "key", "config", "key")
	if k == nil || k.text() != ytree.Redacted {
		t.Fatalf("selected key: %s", dump(r))
	}
	r = c.rpc(`<get-config><source><running/></source>` + keyXPath("") + `</get-config>`)
	wantErr(t, r, "protocol", "invalid-value", "")
}

// TestSecretEditsIgnoreValue: an edit that names the key with a value
// never compares that value with the key held: delete and remove delete
// whatever the value, create fails on an existing key whatever the value;
// the right and the wrong guess get the same answer and do the same.
func TestSecretEditsIgnoreValue(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(rwUser, rwPass, true)
	keyEdit := func(op, guess string) string {
		return editCandidate(`<crypto xmlns="`+cryptoNS+`"><isakmp><keys><key><address>192.0.2.2</address><config><key operation="`+op+`">`+guess+`</key></config></key></keys></isakmp></crypto>`, "")
	}
	candKey := func() *elem {
		r := c.rpc(`<get-config><source><candidate/></source><filter><crypto xmlns="` + cryptoNS + `"><isakmp><keys/></isakmp></crypto></filter></get-config>`)
		return find(r, "data", "crypto", "isakmp", "keys", "key", "config", "key")
	}
	for _, op := range []string{"delete", "remove"} {
		var answers [2]string
		for i, guess := range []string{rightKey, wrongKey} {
			answers[i] = dump(c.rpc(keyEdit(op, guess)))
			if candKey() != nil {
				t.Errorf("%s with guess %d left the key", op, i)
			}
			isOK(t, c.rpc(`<discard-changes/>`))
		}
		if answers[0] != answers[1] || !strings.Contains(answers[0], "<ok>") {
			t.Errorf("%s: right guess %s, wrong guess %s", op, answers[0], answers[1])
		}
	}
	right, wrong := c.rpc(keyEdit("create", rightKey)), c.rpc(keyEdit("create", wrongKey))
	wantErr(t, right, "application", "data-exists", keyPath[:len(keyPath)-len("/spc:config/spc:key")])
	if dump(right) != dump(wrong) {
		t.Errorf("create: right guess %s, wrong guess %s", dump(right), dump(wrong))
	}
}

// TestSecretRewriteIsAChange: writing the key with the value it has is a
// change like any other write of it: the commit happens and its
// notification lists the key, so that committing a guess (even as a
// confirmed commit then cancelled) does not tell whether it was right.
func TestSecretRewriteIsAChange(t *testing.T) {
	e := newEnv(t, nil)
	sub := e.dial(roUser, roPass, true)
	isOK(t, sub.rpc(`<create-subscription xmlns="`+notifNS+`"/>`))
	c := e.dial(rwUser, rwPass, true)
	var edits [2]string
	for i, guess := range []string{rightKey, wrongKey} {
		before := e.st.Running().ID
		isOK(t, c.rpc(editCandidate(`<crypto xmlns="`+cryptoNS+`"><isakmp><keys><key><address>192.0.2.2</address><config><key>`+guess+`</key></config></key></keys></isakmp></crypto>`, "")))
		isOK(t, c.rpc(`<commit><confirmed/></commit>`))
		if got := e.st.Running().ID; got != before+1 {
			t.Errorf("guess %d: %d commits, want 1", i, got-before)
		}
		n := readNotification(t, sub)
		edits[i] = dump(find(n, "netconf-config-change", "edit"))
		isOK(t, c.rpc(`<cancel-commit/>`))
		readNotification(t, sub) // the rollback
	}
	if edits[0] != edits[1] || !strings.Contains(edits[0], "spc:key") {
		t.Errorf("right guess notified %s, wrong guess %s", edits[0], edits[1])
	}
	if k := e.st.Running().Root.GetCrypto().GetIsakmp().GetKeys().GetKey("192.0.2.2").GetConfig().GetKey(); k != rightKey {
		t.Error("cancel-commit did not restore the key")
	}
}

// TestSecretsAreNotKeys: no secret leaf orders anything: none is a list
// key (entries are sorted by key) or a leaf-list (whose values identify
// themselves, and so would be compared).
func TestSecretsAreNotKeys(t *testing.T) {
	secrets := 0
	for t0, order := range xmlOrders {
		for _, f := range order {
			if !f.Secret {
				continue
			}
			secrets++
			if f.Kind != ytree.KindLeaf {
				t.Errorf("%s/%s: a secret leaf-list", t0.Schema.Name, f.Name)
			}
			for _, k := range t0.KeyFields() {
				if k == f {
					t.Errorf("%s/%s: a secret list key", t0.Schema.Name, f.Name)
				}
			}
		}
	}
	if secrets == 0 {
		t.Fatal("no secret leaf in the schema")
	}
}

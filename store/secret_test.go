package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/ytree"
)

// TestSecretNeverLeaks puts a recognizable key through every path that
// reports or renders values and checks it never comes out.
func TestSecretNeverLeaks(t *testing.T) {
	const secret = "Sup3r-S3cret-PSK"
	var logBuf bytes.Buffer
	dir := t.TempDir()
	s, err := Open(dir, WithLogger(slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	events, cancel := s.Subscribe(10)
	defer cancel()
	if _, err := s.Commit(ctx, Tx{Ops: []Op{{Kind: OpReplace, Path: mustPath(t, "/"), Val: ietfV(string(readExample(t, "seed/router-a.json")))}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, Tx{Ops: []Op{upd(t, keyA+"/config/key", strV(secret))}}); err != nil {
		t.Fatal(err)
	}
	if got := s.Running().Root.Crypto.Isakmp.Keys.Key["10.2.2.2"].Config.GetKey(); got != secret {
		t.Fatalf("the key is not stored: %q", got)
	}
	var texts []string
	add := func(what string, v any) { texts = append(texts, fmt.Sprintf("%s: %v", what, v)) }

	// errors
	long := secret + strings.Repeat("x", 130)
	_, err = s.Commit(ctx, Tx{Ops: []Op{upd(t, keyA+"/config/key", strV(long))}})
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), redacted) {
		t.Errorf("too long key: %v, want a ValidationError with %s", err, redacted)
	}
	add("too long", err)
	_, err = s.Commit(ctx, Tx{Ops: []Op{upd(t, keyA+"/config/key", ietfV(`{"v":"`+secret+`"}`))}})
	if err == nil {
		t.Error("a JSON object as key value was accepted")
	}
	add("wrong type", err)
	_, err = s.Commit(ctx, Tx{Ops: []Op{rep(t, keyA, ietfV(`{"address":"10.2.2.2","config":{"address":"10.2.2.2","key":"`+secret+`","bogus":1}}`))}})
	if err == nil {
		t.Error("unknown field accepted")
	}
	add("json with secret", err)
	_, err = s.Commit(ctx, Tx{Ops: []Op{rep(t, keyA, ietfV(`{"address":"10.2.2.2","config":{"address":"10.2.2.2","key":"`+secret+`","address":7}}`))}})
	add("json with secret 2", err)
	_, err = LoadJSON([]byte(`{"spiagent-crypto:crypto":{"isakmp":{"keys":{"key":[{"address":"10.1.1.1","config":{"address":"10.1.1.1","key":"` + secret + `","nope":true}}]}}}}`))
	if err == nil {
		t.Error("LoadJSON accepted an unknown field")
	}
	add("LoadJSON", err)
	bad := s.Running().Root
	bad = ytree.Redact(bad) // a copy we may change
	add("Validate", Validate(bad, crypto()))

	// reads
	red := ytree.Redact(s.Running().Root)
	if got := red.Crypto.Isakmp.Keys.Key["10.2.2.2"].Config.GetKey(); got != redacted {
		t.Errorf("Redact: key is %q", got)
	}
	if s.Running().Root.Crypto.Isakmp.Keys.Key["10.2.2.2"].Config.GetKey() != secret {
		t.Error("Redact modified the running config")
	}
	if red.Crypto.TransformSets != s.Running().Root.Crypto.TransformSets {
		t.Error("Redact copied a subtree without secrets")
	}
	for _, ietf := range []bool{true, false} {
		b, err := EmitJSON(s.Running().Root, ietf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(redacted)) {
			t.Errorf("EmitJSON(ietf=%v) has no %s: %s", ietf, redacted, b)
		}
		add("EmitJSON", string(b))
	}
	ev := <-events
	ev = <-events
	add("event diff", ev.Diff)
	for _, c := range ev.Diff {
		add("event value", c.New)
		add("event old", c.Old)
	}
	h := s.History()
	add("history", h)
	var full Diff
	s.SetApplier(ApplierFunc(func(_ context.Context, _, _ *Snapshot, d Diff) error { full = d; return nil }))
	if _, err := s.Commit(ctx, Tx{Ops: []Op{upd(t, keyA+"/config/key", strV(secret+"2"))}}); err != nil {
		t.Fatal(err)
	}
	add("Diff.String", full.String())
	add("Change.String", full[0].String())
	add("log", logBuf.String())
	if full[0].New.GetStringVal() != secret+"2" {
		t.Error("the applier must get the real key")
	}
	for _, txt := range texts {
		if strings.Contains(txt, secret) || strings.Contains(txt, "S3cret") {
			t.Errorf("secret leaked in %s", txt)
		}
	}
	if !ytree.IsSecretPath(mustPath(t, keyA+"/config/key").GetElem()) || ytree.IsSecretPath(mustPath(t, keyA+"/config/address").GetElem()) || ytree.IsSecretPath(mustPath(t, keyA).GetElem()) {
		t.Error("IsSecret is wrong")
	}
	_ = ygot.String
}

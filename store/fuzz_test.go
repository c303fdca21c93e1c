package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadJSON: no input makes LoadJSON (or Validate and EmitJSON of what it
// loads) panic; what loads re-emits and reloads to the same JSON.
func FuzzLoadJSON(f *testing.F) {
	for _, n := range []string{"seed/router-a.json"} {
		b, err := os.ReadFile(filepath.Join("..", "examples", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"spiagent-crypto:crypto":{"access-lists":{"access-list":[{"name":"a","entries":{"entry":[{"sequence":1,"config":{"protocol":6}}]}}]}}}`))
	f.Add([]byte(`{"spiagent-crypto:crypto":{"ipsec":{"sas":{"sa":[{"destination-address":"1.2.3.4","protocol":"esp","spi":5}]}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := LoadJSON(b)
		if err != nil {
			return
		}
		Validate(d, crypto())
		out, err := EmitJSONWithSecrets(d, true)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := LoadJSON(out)
		if err != nil {
			t.Fatalf("cannot reload what was emitted: %v\n%s", err, out)
		}
		out2, _ := EmitJSONWithSecrets(d2, true)
		if string(out) != string(out2) {
			t.Fatalf("emit/load not stable:\n%s\n%s", out, out2)
		}
	})
}

// FuzzReadJournal: any bytes after a valid journal header either parse,
// or are reported torn or corrupt; never a panic.
func FuzzReadJournal(f *testing.F) {
	rec, err := encodeRecord(CommitInfo{ID: 1, Summary: "x"}, []Op{upd(f, polA+"/config/lifetime", uintV(300))})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(journalHeader(0), rec...))
	f.Add(append(append(journalHeader(0), rec...), rec[:5]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		js, err := readJournal(b)
		if err != nil {
			return
		}
		if js.good+js.torn != int64(len(b)) {
			t.Fatalf("good %d + torn %d != %d", js.good, js.torn, len(b))
		}
		// replaying what parsed never panics
		tx := newTx(nil)
		for _, e := range js.entries {
			for _, op := range e.ops {
				apply(tx, op, true)
			}
		}
	})
}

// FuzzCommitJSON: any JSON value in an update of a policy entry either
// commits a valid config or is refused with a typed error; never a panic.
func FuzzCommitJSON(f *testing.F) {
	f.Add([]byte(`{"config":{"lifetime":300}}`))
	f.Add([]byte(`{"priority":1,"config":{"priority":1,"hash":"md5"},"state":{}}`))
	f.Add([]byte(`[1,2]`))
	s, _ := seedStore(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := s.Commit(context.Background(), Tx{Ops: []Op{upd(t, polA, ietfV(string(b)))}})
		if err == nil {
			if p := Validate(s.Running().Root, crypto()); len(p) > 0 {
				t.Fatalf("committed an invalid config: %v", p)
			}
		}
	})
}

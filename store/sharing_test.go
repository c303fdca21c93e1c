package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestStructuralSharing: a one-leaf commit copies only the nodes on the
// path; everything else is shared with the previous snapshot, which keeps
// its values.
func TestStructuralSharing(t *testing.T) {
	s, _ := seedStore(t)
	ctx := context.Background()
	if _, err := s.Commit(ctx, Tx{Ops: []Op{{Kind: OpReplace, Path: mustPath(t, "/"), Val: ietfV(string(mustEmit(t, 300)))}}}); err != nil {
		t.Fatal(err)
	}
	old := s.Running()
	p := "/crypto/crypto-maps/crypto-map[name=VPN]/entries/entry[sequence=7]/config/sa-lifetime-seconds"
	if _, err := s.Commit(ctx, Tx{Ops: []Op{upd(t, p, uintV(7777))}}); err != nil {
		t.Fatal(err)
	}
	nw := s.Running()
	oc, nc := old.Root.Crypto, nw.Root.Crypto
	if oc == nc {
		t.Fatal("root not copied")
	}
	if oc.Isakmp != nc.Isakmp || oc.AccessLists != nc.AccessLists || oc.TransformSets != nc.TransformSets || oc.Interfaces != nc.Interfaces {
		t.Error("untouched subtrees were copied")
	}
	oe, ne := oc.CryptoMaps.CryptoMap["VPN"].Entries.Entry, nc.CryptoMaps.CryptoMap["VPN"].Entries.Entry
	for seq := range oe {
		if seq != 7 && oe[seq] != ne[seq] {
			t.Fatalf("entry %d was copied", seq)
		}
	}
	if oe[7] == ne[7] || oe[7].Config.GetSaLifetimeSeconds() != 3600 || ne[7].Config.GetSaLifetimeSeconds() != 7777 {
		t.Error("entry 7: old snapshot changed or new one not updated")
	}
}

func mustEmit(t *testing.T, n int) []byte {
	t.Helper()
	b, err := EmitJSONWithSecrets(bigConfig(n), true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPersistFailure: when the journal cannot be written after the applier
// accepted, the applier is told to undo, and nothing changes.
func TestPersistFailure(t *testing.T) {
	s, _ := seedStore(t)
	var calls []string
	s.SetApplier(ApplierFunc(func(_ context.Context, old, new *Snapshot, d Diff) error {
		calls = append(calls, fmt.Sprintf("%d->%d %s", old.ID, new.ID, d[0].Kind))
		return nil
	}))
	before, hist := s.Running(), s.History()
	s.journal.f.Close() // the next write fails
	_, err := s.Commit(context.Background(), Tx{Ops: []Op{upd(t, cmEntA+"/config/peer", listV("10.2.2.2", "10.2.2.2"))}})
	if err == nil || !strings.Contains(err.Error(), "persist") {
		t.Fatalf("got %v, want a persist error", err)
	}
	var re *RefusedError
	if errors.As(err, &re) {
		t.Error("a persist failure is not a refusal")
	}
	want := []string{"1->2 modified", "2->1 modified"}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("applier calls %v, want %v", calls, want)
	}
	if s.Running() != before || len(s.History()) != len(hist) {
		t.Error("running config or history changed")
	}
	checkRefs(t, s)
}

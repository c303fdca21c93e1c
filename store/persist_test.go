package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func commitLifetime(t *testing.T, s *Store, v uint64) CommitInfo {
	t.Helper()
	info, err := s.Commit(context.Background(), Tx{Ops: []Op{upd(t, polA+"/config/lifetime", uintV(v))}, User: "u", Comment: fmt.Sprint("lifetime ", v)})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func reopen(t *testing.T, s *Store, dir string, opts ...Option) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, append(testOptions(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

func TestPersistAcrossReopen(t *testing.T) {
	for _, compact := range []bool{false, true} {
		t.Run(fmt.Sprint("compact=", compact), func(t *testing.T) {
			s, dir := seedStore(t)
			for v := uint64(100); v < 105; v++ {
				commitLifetime(t, s, v)
			}
			if compact {
				if err := s.Compact(); err != nil {
					t.Fatal(err)
				}
				commitLifetime(t, s, 200) // one record after the compaction
			}
			want, wantHist := mustJSON(t, s.Running().Root), s.History()
			wantID := s.Running().ID
			s2 := reopen(t, s, dir)
			if got := mustJSON(t, s2.Running().Root); got != want {
				t.Errorf("config after reopen differs:\n%s\nwant\n%s", got, want)
			}
			if s2.Running().ID != wantID {
				t.Errorf("id %d, want %d", s2.Running().ID, wantID)
			}
			if d := cmp.Diff(wantHist, s2.History()); d != "" {
				t.Errorf("history after reopen: %s", d)
			}
			info := commitLifetime(t, s2, 300)
			if info.ID != wantID+1 {
				t.Errorf("next id %d, want %d", info.ID, wantID+1)
			}
		})
	}
}

func TestFileModes(t *testing.T) {
	s, dir := seedStore(t)
	os.Chmod(dir, 0o755)
	os.WriteFile(filepath.Join(dir, snapshotName+".tmp123"), []byte("half"), 0o600)
	s = reopen(t, s, dir)
	if _, err := os.Stat(filepath.Join(dir, snapshotName+".tmp123")); err == nil {
		t.Error("stale temporary file not removed")
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", st.Mode().Perm())
	}
	for _, n := range []string{snapshotName, journalName} {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", n, st.Mode().Perm())
		}
	}
}

func TestAutoCompaction(t *testing.T) {
	s, dir := seedStore(t, WithCompaction(3, 1<<30))
	for v := uint64(100); v < 110; v++ {
		commitLifetime(t, s, v)
	}
	s.bg.Wait()
	commitLifetime(t, s, 200)
	s.bg.Wait()
	want, wantID := mustJSON(t, s.Running().Root), s.Running().ID
	jb, _ := os.ReadFile(filepath.Join(dir, journalName))
	js, err := readJournal(jb)
	if err != nil {
		t.Fatal(err)
	}
	if js.base == 0 || js.base+uint64(len(js.entries)) != wantID || len(js.entries) >= 3 {
		t.Errorf("journal not compacted: base %d, %d records, running %d", js.base, len(js.entries), wantID)
	}
	s2 := reopen(t, s, dir)
	if got := mustJSON(t, s2.Running().Root); got != want || s2.Running().ID != wantID {
		t.Error("config after compactions and reopen differs")
	}
}

// TestApplierRefusesSecond: the applier accepts one commit and refuses the
// next; the refused one changes nothing, not even the files.
func TestApplierRefusesSecond(t *testing.T) {
	s, dir := seedStore(t)
	n := 0
	s.SetApplier(ApplierFunc(func(_ context.Context, old, new *Snapshot, d Diff) error {
		n++
		if n == 2 {
			return errors.New("dataplane says no")
		}
		return nil
	}))
	commitLifetime(t, s, 300)
	before, hist, files := s.Running(), s.History(), fileBytes(t, dir)
	_, err := s.Commit(context.Background(), Tx{Ops: []Op{upd(t, polA+"/config/lifetime", uintV(400))}})
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "dataplane says no") {
		t.Fatalf("got %v, want *RefusedError", err)
	}
	if s.Running() != before || s.Running().Root.Crypto.Isakmp.Policies.Policy[1].Config.GetLifetime() != 300 {
		t.Error("running config changed")
	}
	if d := cmp.Diff(hist, s.History()); d != "" {
		t.Errorf("history changed: %s", d)
	}
	if d := cmp.Diff(files, fileBytes(t, dir)); d != "" {
		t.Errorf("files changed: %s", d)
	}
	checkRefs(t, s)
	s2 := reopen(t, s, dir)
	if got := s2.Running().Root.Crypto.Isakmp.Policies.Policy[1].Config.GetLifetime(); got != 300 {
		t.Errorf("after reopen lifetime %d, want 300", got)
	}
}

func TestCorruptFilesAtStartup(t *testing.T) {
	tests := []struct {
		desc    string
		damage  func(t *testing.T, dir string)
		wantErr string
	}{
		{"truncated data file", func(t *testing.T, dir string) {
			truncateFile(t, filepath.Join(dir, snapshotName), 0.5)
		}, "truncated or corrupt"},
		{"empty data file", func(t *testing.T, dir string) {
			truncateFile(t, filepath.Join(dir, snapshotName), 0)
		}, "truncated or corrupt"},
		{"flipped byte in the config", func(t *testing.T, dir string) {
			p := filepath.Join(dir, snapshotName)
			b, _ := os.ReadFile(p)
			i := bytes.Index(b, []byte(`"lifetime":300`))
			if i < 0 {
				t.Fatalf("lifetime not in %s", b)
			}
			b[i+len(`"lifetime":`)] = '2'
			os.WriteFile(p, b, 0o600)
		}, "checksum mismatch"},
		{"corrupt journal record in the middle", func(t *testing.T, dir string) {
			p := filepath.Join(dir, journalName)
			b, _ := os.ReadFile(p)
			b[journalHeaderLen+8+10] ^= 0xff // inside the first record's payload
			os.WriteFile(p, b, 0o600)
		}, "checksum mismatch (corrupt)"},
		{"bad journal header", func(t *testing.T, dir string) {
			p := filepath.Join(dir, journalName)
			b, _ := os.ReadFile(p)
			b[0] = 'X'
			os.WriteFile(p, b, 0o600)
		}, "bad journal header"},
		{"journal without data file", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, snapshotName))
		}, "has a journal but no running.json"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s, dir := seedStore(t)
			commitLifetime(t, s, 300)
			if err := s.Compact(); err != nil {
				t.Fatal(err)
			}
			commitLifetime(t, s, 400)
			commitLifetime(t, s, 500)
			s.Close()
			tc.damage(t, dir)
			files := fileBytes(t, dir)
			_, err := Open(dir, WithLogger(quietLogger()))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
			}
			if d := cmp.Diff(files, fileBytes(t, dir)); d != "" {
				t.Errorf("files changed by a failed Open: %s", d)
			}
		})
	}
}

func truncateFile(t *testing.T, p string, frac float64) {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, int64(float64(st.Size())*frac)); err != nil {
		t.Fatal(err)
	}
}

// TestTornJournalTail: a final record cut short by a crash is logged and
// dropped; the commits before it survive.
func TestTornJournalTail(t *testing.T) {
	for _, cut := range []int{1, 7, 30} {
		t.Run(fmt.Sprint("cut=", cut), func(t *testing.T) {
			s, dir := seedStore(t)
			commitLifetime(t, s, 300)
			want := mustJSON(t, s.Running().Root)
			commitLifetime(t, s, 400)
			s.Close()
			p := filepath.Join(dir, journalName)
			b, _ := os.ReadFile(p)
			// find the start of the last record
			off, last := journalHeaderLen, 0
			for off < len(b) {
				last = off
				off += 8 + int(binary.BigEndian.Uint32(b[off:]))
			}
			if err := os.WriteFile(p, b[:last+cut], 0o600); err != nil {
				t.Fatal(err)
			}
			var logBuf bytes.Buffer
			s2, err := Open(dir, WithLogger(slog.New(slog.NewTextHandler(&logBuf, nil))))
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if got := mustJSON(t, s2.Running().Root); got != want {
				t.Error("config is not the one before the torn commit")
			}
			if !strings.Contains(logBuf.String(), "torn final record") {
				t.Errorf("no log line about the torn record: %s", logBuf.String())
			}
			info := commitLifetime(t, s2, 500)
			s3 := reopen(t, s2, dir)
			if s3.Running().ID != info.ID || s3.Running().Root.Crypto.Isakmp.Policies.Policy[1].Config.GetLifetime() != 500 {
				t.Error("commit after a torn tail did not persist")
			}
		})
	}
}

func TestRollback(t *testing.T) {
	s, dir := seedStore(t)
	ctx := context.Background()
	c1 := s.Running() // seed, lifetime 180
	commitLifetime(t, s, 300)
	if _, err := s.Commit(ctx, Tx{Ops: []Op{
		del(t, "/crypto/interfaces/interface[name=FastEthernet0/1]"),
		upd(t, "/crypto/isakmp/policies/policy[priority=3]/config/group", strV("group14")),
		upd(t, keyA+"/config/key", strV("other")),
		upd(t, "/crypto/isakmp/keys/key[address=10.3.3.3]/config/key", strV("k3")),
		upd(t, cmEntA+"/config/peer", listV("10.2.2.2", "10.3.3.3")),
		upd(t, aclA+"/entries/entry[sequence=10]/config", ietfV(`{"protocol":17,"destination-port-min":500}`)),
		upd(t, aclA+"/entries/entry[sequence=20]/config", ietfV(`{"action":"deny","protocol":"tcp"}`)),
		rep(t, tsA+"/config", ietfV(`{"name":"auth2","esp-encryption":"esp-gcm","esp-key-bits":256}`)),
	}}); err != nil {
		t.Fatal(err)
	}
	info, err := s.Rollback(ctx, c1.ID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustJSON(t, s.Running().Root), mustJSON(t, c1.Root); got != want {
		t.Errorf("after rollback:\n%s\nwant\n%s", got, want)
	}
	h := s.History()
	if last := h[len(h)-1]; last.ID != info.ID || last.User != "alice" || !strings.Contains(last.Comment, fmt.Sprint("rollback to commit ", c1.ID)) {
		t.Errorf("history entry %+v", last)
	}
	if _, err := s.Rollback(ctx, 999, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("rollback to unknown id: %v, want ErrNotFound", err)
	}
	s2 := reopen(t, s, dir)
	if got, want := mustJSON(t, s2.Running().Root), mustJSON(t, c1.Root); got != want {
		t.Error("rollback did not survive reopen")
	}
	// configs replayed from the journal can be rolled back to after reopen
	checkRefs(t, s2)
	if _, err := s2.Rollback(ctx, c1.ID+1, "bob"); err != nil {
		t.Fatal(err)
	}
	checkRefs(t, s2)
	if s2.Running().Root.Crypto.Isakmp.Policies.Policy[1].Config.GetLifetime() != 300 {
		t.Error("rollback after reopen went to the wrong config")
	}
}

func TestRollbackRefused(t *testing.T) {
	s, _ := seedStore(t)
	c1 := s.Running()
	commitLifetime(t, s, 300)
	s.SetApplier(ApplierFunc(func(context.Context, *Snapshot, *Snapshot, Diff) error { return errors.New("no") }))
	before := s.Running()
	if _, err := s.Rollback(context.Background(), c1.ID, "x"); err == nil {
		t.Fatal("rollback was not offered to the applier")
	}
	if s.Running() != before {
		t.Error("refused rollback changed the running config")
	}
}

func TestHistoryCapped(t *testing.T) {
	s, dir := seedStore(t)
	for i := 0; i < 60; i++ {
		commitLifetime(t, s, uint64(100+i))
	}
	h := s.History()
	if len(h) != HistoryLen || h[0].ID != 12 || h[len(h)-1].ID != 61 {
		t.Fatalf("history has %d entries, %d..%d", len(h), h[0].ID, h[len(h)-1].ID)
	}
	if h[len(h)-1].Comment != "lifetime 159" || h[len(h)-1].User != "u" || !strings.Contains(h[len(h)-1].Summary, "1 modified") {
		t.Errorf("last entry %+v", h[len(h)-1])
	}
	if _, err := s.Rollback(context.Background(), 5, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("rollback beyond history: %v", err)
	}
	if _, err := s.Rollback(context.Background(), 12, "x"); err != nil {
		t.Errorf("rollback to oldest kept: %v", err)
	}
	s2 := reopen(t, s, dir)
	if n := len(s2.History()); n != HistoryLen {
		t.Errorf("history after reopen has %d entries", n)
	}
}

func TestDirLocked(t *testing.T) {
	s, dir := seedStore(t)
	if _, err := Open(dir, WithLogger(quietLogger())); !errors.Is(err, errDirInUse) {
		t.Fatalf("second Open of a data dir in use: %v, want errDirInUse", err)
	}
	s2 := reopen(t, s, dir) // after Close it opens
	if s2.Running().ID != 1 {
		t.Error("wrong config after reopen")
	}
}

package confirm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/spiagent/spiagent/agent/validators"
	"github.com/spiagent/spiagent/store"
)

const lifetimePath = "crypto/isakmp/policies/policy[priority=1]/config/lifetime"

var (
	gnmiC1   = Token{Proto: GNMI, ID: "c1"}
	session3 = Token{Proto: NETCONF, ID: "session 3"}
	session4 = Token{Proto: NETCONF, ID: "session 4"}
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func elems(t testing.TB, p string) *gpb.Path {
	t.Helper()
	out := &gpb.Path{}
	for _, part := range strings.Split(p, "/") {
		name, key, _ := strings.Cut(part, "[")
		e := &gpb.PathElem{Name: name}
		if key != "" {
			k, v, _ := strings.Cut(strings.TrimSuffix(key, "]"), "=")
			e.Key = map[string]string{k: v}
		}
		out.Elem = append(out.Elem, e)
	}
	return out
}

func seedTx(t testing.TB) store.Tx {
	t.Helper()
	b, err := os.ReadFile("../../examples/lab/router-a.json")
	if err != nil {
		t.Fatal(err)
	}
	return store.Tx{User: "seed", Ops: []store.Op{{Kind: store.OpReplace, Path: &gpb.Path{},
		Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: b}}}}}
}

func lifetimeTx(t testing.TB, n uint64) store.Tx {
	return store.Tx{User: "op", Ops: []store.Op{{Kind: store.OpUpdate, Path: elems(t, lifetimePath),
		Val: &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: n}}}}}
}

type env struct {
	st  *store.Store
	m   *Manager
	log *syncBuf
	dir string
}

// newEnv opens a store in a temporary directory, seeded with the lab's
// router A unless fresh, and a Manager over it that records in the dir.
func newEnv(t *testing.T, fresh bool, opts ...store.Option) *env {
	t.Helper()
	e := &env{log: &syncBuf{}, dir: filepath.Join(t.TempDir(), "data")}
	log := slog.New(slog.NewTextHandler(e.log, nil))
	st, err := store.Open(e.dir, append([]store.Option{store.WithLogger(log), store.WithValidator(validators.NewCrypto())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if !fresh {
		if _, err := st.Commit(context.Background(), seedTx(t)); err != nil {
			t.Fatal(err)
		}
	}
	e.st = st
	e.m = New(st, Options{Log: log, Dir: e.dir, RetryAfter: 50 * time.Millisecond})
	return e
}

func (e *env) lifetime() uint32 {
	return e.st.Running().Root.GetCrypto().GetIsakmp().GetPolicies().GetPolicy(1).GetConfig().GetLifetime()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pendingFileExists(e *env) bool {
	_, err := os.Stat(filepath.Join(e.dir, pendingFile))
	return err == nil
}

// A first config pushed with commit-confirmed onto a fresh datastore (commit
// 0, which is in no history) goes away when it is not confirmed.
func TestFreshDatastoreRollsBack(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	if _, err := e.m.CommitConfirmed(ctx, seedTx(t), Token{}, gnmiC1, time.Hour); err != nil {
		t.Fatal(err)
	}
	if e.st.Running().Root.GetCrypto() == nil {
		t.Fatal("confirmed commit not applied")
	}
	if err := e.m.Extend(gnmiC1, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rollback to the empty config", func() bool { return e.st.Running().Root.GetCrypto() == nil })
	if strings.Contains(e.log.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", e.log)
	}
	if h := e.st.History(); !strings.Contains(h[len(h)-1].Comment, "rollback") {
		t.Errorf("last commit %+v is not the rollback", h[len(h)-1])
	}
	if _, ok := e.m.Current(); ok || pendingFileExists(e) {
		t.Error("still pending after the rollback")
	}
}

// More than HistoryLen commits by the owner during the window: the rollback
// target is kept by the manager, not the history.
func TestRollbackBeyondHistory(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	if _, err := e.m.CommitConfirmed(ctx, lifetimeTx(t, 500), Token{}, gnmiC1, time.Hour); err != nil {
		t.Fatal(err)
	}
	for i := range store.HistoryLen + 10 {
		if _, err := e.m.Commit(ctx, lifetimeTx(t, uint64(600+i)), gnmiC1); err != nil {
			t.Fatal(err)
		}
	}
	if p, _ := e.m.Current(); p.After != p.Before+store.HistoryLen+11 {
		t.Errorf("pending %+v does not count the owner's commits", p)
	}
	if _, err := e.m.Cancel(ctx, gnmiC1, "test"); err != nil {
		t.Fatal(err)
	}
	if got := e.lifetime(); got != 180 {
		t.Errorf("lifetime %d after cancel, want the seed's 180", got)
	}
}

func TestOnlyTheOwnerWrites(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	if _, err := e.m.CommitConfirmed(ctx, lifetimeTx(t, 500), Token{}, session3, time.Hour); err != nil {
		t.Fatal(err)
	}
	before := e.st.Running().ID
	for _, by := range []Token{{}, session4, gnmiC1, {Proto: NETCONF, ID: "session 3", Persist: true}} {
		_, err := e.m.Commit(ctx, lifetimeTx(t, 700), by)
		var pe *PendingError
		if !errors.As(err, &pe) || pe.Pending.Owner != session3 {
			t.Errorf("commit by %+v: %v, want a PendingError naming session 3", by, err)
		}
		if _, err := e.m.CommitConfirmed(ctx, lifetimeTx(t, 700), by, gnmiC1, time.Hour); !errors.As(err, &pe) {
			t.Errorf("confirmed commit by %+v: %v", by, err)
		}
		if _, err := e.m.Confirm(by); !errors.As(err, &pe) {
			t.Errorf("confirm by %+v: %v", by, err)
		}
		if _, err := e.m.Cancel(ctx, by, "test"); !errors.As(err, &pe) {
			t.Errorf("cancel by %+v: %v", by, err)
		}
	}
	if e.st.Running().ID != before {
		t.Fatal("a refused writer changed running")
	}
	if want := "the confirmed commit of NETCONF session 3 is pending confirmation"; !strings.Contains((&PendingError{Pending: Pending{Owner: session3}}).Error(), want) {
		t.Errorf("error text does not say %q", want)
	}
	if _, err := e.m.Commit(ctx, lifetimeTx(t, 800), session3); err != nil {
		t.Fatalf("the owner's commit: %v", err)
	}
	if _, err := e.m.Confirm(session3); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Confirm(session3); !errors.Is(err, ErrNoPending) {
		t.Errorf("second confirm: %v", err)
	}
	if _, err := e.m.Commit(ctx, lifetimeTx(t, 900), Token{}); err != nil {
		t.Errorf("commit after the confirm: %v", err)
	}
	if got := e.lifetime(); got != 900 {
		t.Errorf("lifetime %d", got)
	}
}

// A persist token is a capability: it never appears in an error.
func TestPersistTokenNotShown(t *testing.T) {
	e := newEnv(t, false)
	tok := Token{Proto: NETCONF, ID: "s3cr3t-token", Persist: true}
	if _, err := e.m.CommitConfirmed(context.Background(), lifetimeTx(t, 500), Token{}, tok, time.Hour); err != nil {
		t.Fatal(err)
	}
	_, err := e.m.Commit(context.Background(), lifetimeTx(t, 600), Token{})
	if err == nil || strings.Contains(err.Error(), tok.ID) || strings.Contains(e.log.String(), tok.ID) {
		t.Errorf("error %v or log shows the persist token:\n%s", err, e.log)
	}
}

// Extending keeps the first rollback target and restarts the timer.
func TestExtend(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	if _, err := e.m.CommitConfirmed(ctx, lifetimeTx(t, 500), Token{}, session3, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	persist := Token{Proto: NETCONF, ID: "tok", Persist: true}
	if _, err := e.m.CommitConfirmed(ctx, lifetimeTx(t, 600), session3, persist, time.Hour); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	if got := e.lifetime(); got != 600 {
		t.Fatalf("extended commit rolled back early: lifetime %d", got)
	}
	if err := e.m.Extend(persist, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rollback to the seed", func() bool { return e.lifetime() == 180 })
}

func TestShutdownRollsBack(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	if _, err := e.m.CommitConfirmed(ctx, lifetimeTx(t, 500), Token{}, gnmiC1, time.Hour); err != nil {
		t.Fatal(err)
	}
	e.m.Shutdown(ctx)
	if got := e.lifetime(); got != 180 {
		t.Errorf("lifetime %d after shutdown, want 180", got)
	}
	if pendingFileExists(e) {
		t.Error("record left after a clean rollback")
	}
	if _, err := e.m.CommitConfirmed(ctx, lifetimeTx(t, 500), Token{}, gnmiC1, time.Hour); err == nil {
		t.Error("confirmed commit accepted after shutdown")
	}
}

// An agent killed with a confirmed commit pending rolls it back when it
// starts again, from the record in the data directory.
func TestRecoverAfterCrash(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	if _, err := e.m.CommitConfirmed(ctx, lifetimeTx(t, 500), Token{}, gnmiC1, time.Hour); err != nil {
		t.Fatal(err)
	}
	if !pendingFileExists(e) {
		t.Fatal("pending commit not recorded")
	}
	fi, err := os.Stat(filepath.Join(e.dir, pendingFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("record: %v, mode %v", err, fi.Mode())
	}
	e.st.Close() // the crash: no Shutdown
	st, err := store.Open(e.dir, store.WithValidator(validators.NewCrypto()))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := st.Running().Root.GetCrypto().GetIsakmp().GetPolicies().GetPolicy(1).GetConfig().GetLifetime(); got != 500 {
		t.Fatalf("reopened store has lifetime %d, want the unconfirmed 500", got)
	}
	log := &syncBuf{}
	m := New(st, Options{Log: slog.New(slog.NewTextHandler(log, nil)), Dir: e.dir})
	if err := m.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if got := st.Running().Root.GetCrypto().GetIsakmp().GetPolicies().GetPolicy(1).GetConfig().GetLifetime(); got != 180 {
		t.Errorf("lifetime %d after recovery, want 180", got)
	}
	if !strings.Contains(log.String(), "was pending when the agent stopped") || pendingFileExists(e) {
		t.Errorf("recovery not logged or record kept:\n%s", log)
	}
	if err := m.Recover(ctx); err != nil {
		t.Errorf("second recover: %v", err)
	}
}

func TestRecoverDamagedRecord(t *testing.T) {
	e := newEnv(t, false)
	path := filepath.Join(e.dir, pendingFile)
	damaged := []byte(`{"owner":{"Proto":"gNMI","ID":"c1"},"before":3,"after":4,"config":{"spiagent-cr`)
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	before := e.st.Running().ID
	err := e.m.Recover(context.Background())
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "remove the file") {
		t.Fatalf("Recover: %v, want an error naming %s and the way out", err, path)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, damaged) {
		t.Error("damaged record was changed")
	}
	if e.st.Running().ID != before {
		t.Error("running changed")
	}
}

// A rollback the agent refuses stays pending and is retried until it goes
// through.
func TestRollbackRetried(t *testing.T) {
	var refuse atomic.Bool
	e := newEnv(t, false, store.WithApplier(store.ApplierFunc(func(context.Context, *store.Snapshot, *store.Snapshot, store.Diff) error {
		if refuse.Load() {
			return fmt.Errorf("engine busy")
		}
		return nil
	})))
	ctx := context.Background()
	if _, err := e.m.CommitConfirmed(ctx, lifetimeTx(t, 500), Token{}, gnmiC1, time.Hour); err != nil {
		t.Fatal(err)
	}
	refuse.Store(true)
	if _, err := e.m.Cancel(ctx, gnmiC1, "test"); err == nil {
		t.Fatal("cancel succeeded although the rollback was refused")
	}
	if _, ok := e.m.Current(); !ok || !pendingFileExists(e) || e.lifetime() != 500 {
		t.Fatal("a failed rollback did not stay pending")
	}
	waitFor(t, "a logged retry", func() bool { return strings.Count(e.log.String(), "rollback of confirmed commit failed") >= 2 })
	refuse.Store(false)
	waitFor(t, "the retried rollback", func() bool { return e.lifetime() == 180 })
	if _, ok := e.m.Current(); ok {
		t.Error("still pending after the retried rollback")
	}
}

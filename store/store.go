package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// HistoryLen is how many commits History keeps (and Rollback can reach).
const HistoryLen = 50

// Store is the datastore: the running config, its commits and their history.
type Store struct {
	dir     string
	log     *slog.Logger
	now     func() time.Time
	applier atomic.Pointer[Applier]

	running atomic.Pointer[Snapshot]

	mu      sync.Mutex // serializes commits, rollbacks and journal rotation
	lock    *os.File   // flock on dir/LOCK
	journal *journal
	points  map[uint64]*Snapshot // configs Rollback can return to
	phases  Phases               // timings of the last commit

	validators []Validator

	hmu     sync.Mutex
	history []CommitInfo

	smu  sync.Mutex
	subs map[*subscriber]struct{}

	compactRecords int
	compactBytes   int64
	compacting     atomic.Bool
	bg             sync.WaitGroup
	closed         bool
}

// Phases are the durations of the phases of the last commit.
type Phases struct {
	Apply, Diff, Validate, Applier, Persist, Publish time.Duration
	Changes                                          int
}

// Option configures Open.
type Option func(*Store)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// WithApplier sets the Applier (default: none, every commit accepted).
func WithApplier(a Applier) Option { return func(s *Store) { s.SetApplier(a) } }

// WithClock sets the clock used to time-stamp commits.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithCompaction sets when the journal is folded into a new snapshot file:
// after this many records or bytes (defaults 1000 and 16 MiB).
func WithCompaction(records int, bytes int64) Option {
	return func(s *Store) { s.compactRecords, s.compactBytes = records, bytes }
}

// Open opens (creating if needed, mode 0700) the data directory dir and loads
// the running config: the snapshot file, then the journal's commits after it.
// A data file that cannot be read or is corrupt is an error and is left as it
// is; so is a config that does not validate. A torn final journal record (a
// commit interrupted by a crash, never acknowledged) is logged and cut off.
// The directory is locked (flock on dir/LOCK) until Close: a second Open of
// it, in this process or another, fails.
func Open(dir string, opts ...Option) (*Store, error) {
	s := &Store{
		dir: dir, log: slog.Default(), now: time.Now,
		points: map[uint64]*Snapshot{}, subs: map[*subscriber]struct{}{},
		compactRecords: 1000, compactBytes: 16 << 20,
	}
	for _, o := range opts {
		o(s)
	}
	s.log = s.log.With("component", "store")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %v", err)
	}
	if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o077 != 0 {
		s.log.Warn("data directory was readable by others: setting mode 0700 (it holds pre-shared keys)", "dir", dir, "mode", st.Mode().Perm().String())
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("store: %v", err)
		}
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", dir, err)
	}
	s.lock = lock
	if err := s.open(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

var errDirInUse = errors.New("data directory is in use by another store (LOCK is held)")

func (s *Store) open() error {
	dir := s.dir
	s.removeTemps()
	snapPath := filepath.Join(dir, snapshotName)
	_, serr := os.Stat(snapPath)
	_, jerr := os.Stat(filepath.Join(dir, journalName))
	switch {
	case errors.Is(serr, fs.ErrNotExist) && errors.Is(jerr, fs.ErrNotExist):
		if err := s.create(); err != nil {
			return fmt.Errorf("store: create %s: %v", dir, err)
		}
		return nil
	case errors.Is(serr, fs.ErrNotExist):
		return fmt.Errorf("store: %s has a journal but no %s: refusing to start from nothing", dir, snapshotName)
	}
	return s.load()
}

// removeTemps deletes temporary files left by a crash during an atomic write
// (they may hold keys; the files they were to replace are intact).
func (s *Store) removeTemps() {
	for _, pat := range []string{snapshotName + ".tmp*", journalName + ".tmp*"} {
		m, _ := filepath.Glob(filepath.Join(s.dir, pat))
		for _, f := range m {
			s.log.Warn("removing a temporary file left by an interrupted write", "file", f)
			os.Remove(f)
		}
	}
}

func (s *Store) create() error {
	snap := &Snapshot{ID: 0, Time: s.now().UTC(), Root: &gen.Device{}}
	b, err := encodeSnapshot(snap, nil)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.dir, snapshotName, b); err != nil {
		return err
	}
	if err := writeFileAtomic(s.dir, journalName, journalHeader(0)); err != nil {
		return err
	}
	j, err := openJournalAppend(s.dir, journalHeaderLen, 0, nil)
	if err != nil {
		return err
	}
	s.journal = j
	s.running.Store(snap)
	s.points[0] = snap
	for _, v := range s.validators {
		v.Reset(snap.Root)
	}
	return nil
}

func (s *Store) load() error {
	snapPath := filepath.Join(s.dir, snapshotName)
	sf, root, err := readSnapshot(snapPath)
	if err != nil {
		return fmt.Errorf("store: data file %s: %v (the file was left untouched)", snapPath, err)
	}
	snap := &Snapshot{ID: sf.ID, Time: sf.Time, Root: root}
	s.points[snap.ID] = snap
	s.history = sf.History
	jpath := filepath.Join(s.dir, journalName)
	jb, err := os.ReadFile(jpath)
	if errors.Is(err, fs.ErrNotExist) {
		jb = journalHeader(sf.ID)
		if err := writeFileAtomic(s.dir, journalName, jb); err != nil {
			return fmt.Errorf("store: create journal: %v", err)
		}
	} else if err != nil {
		return fmt.Errorf("store: journal %s: %v", jpath, err)
	}
	js, err := readJournal(jb)
	if err != nil {
		return fmt.Errorf("store: journal %s: %v (the file was left untouched)", jpath, err)
	}
	if js.base > sf.ID {
		return fmt.Errorf("store: journal %s starts after snapshot %d (at %d): files do not belong together", jpath, sf.ID, js.base)
	}
	var pending []journalEntry
	for _, e := range js.entries {
		if e.info.ID <= sf.ID {
			pending = append(pending, journalEntry{info: CommitInfo{ID: e.info.ID}, raw: e.raw})
			continue
		}
		if e.info.ID != snap.ID+1 {
			return fmt.Errorf("store: journal %s: commit %d follows %d (the file was left untouched)", jpath, e.info.ID, snap.ID)
		}
		tx := newTx(snap.Root)
		for i, op := range e.ops {
			if err := apply(tx, op, true); err != nil && err != lenientSkip {
				return fmt.Errorf("store: journal %s: commit %d op %d at %s: %v (the file was left untouched)", jpath, e.info.ID, i, ytree.PathString(op.Path.GetElem()), err)
			}
		}
		snap = &Snapshot{ID: e.info.ID, Time: e.info.Time, Root: tx.Root()}
		s.points[snap.ID] = snap
		s.history = appendHistory(s.history, e.info)
		pending = append(pending, journalEntry{info: CommitInfo{ID: e.info.ID}, raw: e.raw})
	}
	if probs := s.Validate(snap.Root); len(probs) > 0 {
		return fmt.Errorf("store: data in %s is not a valid config: %w", s.dir, &ValidationError{Problems: probs})
	}
	if js.torn > 0 {
		s.log.Warn("journal: discarding a torn final record (a commit interrupted before it was acknowledged)",
			"file", jpath, "bytes", js.torn, "offset", js.good)
		if err := os.Truncate(jpath, js.good); err != nil {
			return fmt.Errorf("store: journal %s: cut torn record: %v", jpath, err)
		}
	}
	j, err := openJournalAppend(s.dir, js.good, js.base, pending)
	if err != nil {
		return fmt.Errorf("store: journal %s: %v", jpath, err)
	}
	s.journal = j
	for _, v := range s.validators {
		v.Reset(snap.Root)
	}
	s.prunePoints()
	s.running.Store(snap)
	s.log.Info("loaded running config", "dir", s.dir, "commit", snap.ID, "journal_records", len(js.entries))
	return nil
}

func appendHistory(h []CommitInfo, c CommitInfo) []CommitInfo {
	h = append(h, c)
	if len(h) > HistoryLen {
		h = append([]CommitInfo(nil), h[len(h)-HistoryLen:]...)
	}
	return h
}

// prunePoints keeps the configs of the commits in history (and the running one).
func (s *Store) prunePoints() {
	keep := map[uint64]bool{}
	for _, h := range s.history {
		keep[h.ID] = true
	}
	if r := s.running.Load(); r != nil {
		keep[r.ID] = true
	}
	for id := range s.points {
		if !keep[id] {
			delete(s.points, id)
		}
	}
}

// Close waits for a background compaction and closes the journal.
func (s *Store) Close() error {
	s.bg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.journal.close()
	s.lock.Close()
	return err
}

// Running returns the running config. It never blocks: commits swap an
// atomic pointer.
func (s *Store) Running() *Snapshot { return s.running.Load() }

// SetApplier sets the Applier offered every commit (nil: accept all).
func (s *Store) SetApplier(a Applier) {
	if a == nil {
		s.applier.Store(nil)
		return
	}
	s.applier.Store(&a)
}

// History returns the last commits (at most HistoryLen), oldest first.
func (s *Store) History() []CommitInfo {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	return append([]CommitInfo(nil), s.history...)
}

// LastPhases returns the phase timings of the last commit.
func (s *Store) LastPhases() Phases {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phases
}

// Commit applies tx to a copy of the running config, validates the result,
// offers the diff to the Applier, appends the commit to the journal (fsync),
// and then makes it the running config and publishes it. Any failure leaves
// the running config, the history and the data files as they were. A tx that
// changes nothing returns the running commit's id with Summary "no changes".
func (s *Store) Commit(ctx context.Context, tx Tx) (CommitInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commitLocked(ctx, tx)
}

func (s *Store) commitLocked(ctx context.Context, tx Tx) (CommitInfo, error) {
	if s.closed {
		return CommitInfo{}, errors.New("store: closed")
	}
	var ph Phases
	t0 := time.Now()
	old := s.running.Load()
	t := newTx(old.Root)
	for i, op := range tx.Ops {
		if err := apply(t, op, tx.IgnoreMissing); err != nil && err != lenientSkip {
			return CommitInfo{}, &OpError{Index: i, Path: ytree.PathString(op.Path.GetElem()), Err: err}
		}
	}
	newRoot := t.Root()
	t1 := time.Now()
	ph.Apply = t1.Sub(t0)
	d := diffTrees(old.Root, newRoot, t, true)
	t2 := time.Now()
	ph.Diff = t2.Sub(t1)
	ph.Changes = len(d.diff)
	if len(d.diff) == 0 {
		s.phases = ph
		return CommitInfo{ID: old.ID, Time: old.Time, User: tx.User, Comment: tx.Comment, Summary: "no changes"}, nil
	}
	probs, undo := s.validateChanges(newRoot, d)
	done := false
	defer func() {
		if !done {
			undo()
		}
	}()
	t3 := time.Now()
	ph.Validate = t3.Sub(t2)
	if len(probs) > 0 {
		return CommitInfo{}, &ValidationError{Problems: probs}
	}
	now := s.now().UTC()
	if !now.After(old.Time) {
		now = old.Time.Add(time.Nanosecond)
	}
	snap := &Snapshot{ID: old.ID + 1, Time: now, Root: newRoot}
	info := CommitInfo{ID: snap.ID, Time: now, User: tx.User, Comment: tx.Comment, Summary: summarize(tx.Ops, d.diff)}
	if err := ctx.Err(); err != nil {
		return CommitInfo{}, fmt.Errorf("store: commit: %w", err)
	}
	applier := s.applier.Load()
	if applier != nil {
		if err := (*applier).Apply(ctx, old, snap, d.diff); err != nil {
			return CommitInfo{}, &RefusedError{Err: err}
		}
	}
	t4 := time.Now()
	ph.Applier = t4.Sub(t3)
	if err := s.persist(info, tx.Ops); err != nil {
		if applier != nil {
			if uerr := (*applier).Apply(context.WithoutCancel(ctx), snap, old, invert(d.diff)); uerr != nil {
				s.log.Error("applier could not undo a commit that failed to persist", "commit", info.ID, "err", uerr)
			}
		}
		return CommitInfo{}, fmt.Errorf("store: persist commit %d: %w", info.ID, err)
	}
	t5 := time.Now()
	ph.Persist = t5.Sub(t4)
	done = true
	s.running.Store(snap)
	s.points[snap.ID] = snap
	s.hmu.Lock()
	s.history = appendHistory(s.history, info)
	s.hmu.Unlock()
	s.prunePoints()
	s.publish(Event{Snapshot: snap, Diff: d.diff.Redacted(), Info: info})
	ph.Publish = time.Since(t5)
	s.phases = ph
	s.log.Info("commit", "commit", info.ID, "user", info.User, "summary", info.Summary)
	s.maybeCompact()
	return info, nil
}

func (s *Store) persist(info CommitInfo, ops []Op) error {
	rec, err := encodeRecord(info, ops)
	if err != nil {
		return err
	}
	return s.journal.append(info.ID, rec)
}

func invert(d Diff) Diff {
	out := make(Diff, len(d))
	for i, c := range d {
		c.Old, c.New = c.New, c.Old
		switch c.Kind {
		case Added:
			c.Kind = Removed
		case Removed:
			c.Kind = Added
		}
		out[i] = c
	}
	return out
}

func summarize(ops []Op, d Diff) string {
	var a, m, r int
	for _, c := range d {
		switch c.Kind {
		case Added:
			a++
		case Modified:
			m++
		case Removed:
			r++
		}
	}
	s := fmt.Sprintf("%d added, %d modified, %d removed", a, m, r)
	if len(ops) == 1 {
		s += fmt.Sprintf(" (%s %s)", ops[0].Kind, ytree.PathString(ops[0].Path.GetElem()))
	} else {
		s += fmt.Sprintf(" (%d ops)", len(ops))
	}
	return s
}

// Rollback makes the running config equal to the config as of commit id, as
// a new commit (validated and offered to the Applier like any other). The
// configs of the commits in History are kept; older ones are not (ErrNotFound).
func (s *Store) Rollback(ctx context.Context, id uint64, user string) (CommitInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	target, ok := s.points[id]
	if !ok {
		return CommitInfo{}, fmt.Errorf("store: rollback to commit %d: %w (only the last %d commits are kept)", id, ErrNotFound, HistoryLen)
	}
	return s.restoreLocked(ctx, target.Root, user, fmt.Sprintf("rollback to commit %d", id))
}

// Restore makes the running config equal to root (a config the caller kept,
// such as the Root of an earlier Snapshot), as a new commit validated and
// offered to the Applier like any other. Unlike Rollback it does not depend
// on the history: a caller that must always be able to go back (a confirmed
// commit) keeps the snapshot itself.
func (s *Store) Restore(ctx context.Context, root *gen.Device, user, comment string) (CommitInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restoreLocked(ctx, root, user, comment)
}

func (s *Store) restoreLocked(ctx context.Context, root *gen.Device, user, comment string) (CommitInfo, error) {
	if root == nil {
		root = &gen.Device{}
	}
	cur := s.running.Load()
	ops := OpsBetween(cur.Root, root)
	return s.commitLocked(ctx, Tx{Ops: ops, User: user, Comment: comment})
}

// maybeCompact starts a background compaction when the journal is big enough.
func (s *Store) maybeCompact() {
	j := s.journal
	if len(j.pending) < s.compactRecords && j.size < s.compactBytes {
		return
	}
	if !s.compacting.CompareAndSwap(false, true) {
		return
	}
	snap := s.running.Load()
	hist := s.History()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.compacting.Store(false)
		if err := s.compact(snap, hist); err != nil {
			s.log.Error("compaction failed; the journal keeps growing", "err", err)
		}
	}()
}

// Compact writes the running config to a new snapshot file and starts a new
// journal. It runs by itself in the background; it is exported for tests and
// tools.
func (s *Store) Compact() error {
	s.mu.Lock()
	snap := s.running.Load()
	s.mu.Unlock()
	return s.compact(snap, s.History())
}

func (s *Store) compact(snap *Snapshot, hist []CommitInfo) error {
	var keep []CommitInfo
	for _, h := range hist {
		if h.ID <= snap.ID {
			keep = append(keep, h)
		}
	}
	b, err := encodeSnapshot(snap, keep)
	if err != nil {
		return err
	}
	// The big write and its fsync happen outside the commit lock; only the
	// rename and the journal rotation (small) hold it.
	tmp, err := writeTemp(s.dir, snapshotName, b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || snap.ID < s.journal.base {
		os.Remove(tmp) // closed, or a newer compaction got there first
		return nil
	}
	if err := installTemp(s.dir, snapshotName, tmp); err != nil {
		return err
	}
	return s.journal.rotate(snap.ID)
}

// Package confirm is the running datastore's one confirmed commit, shared by
// the northbound servers as agent/dslock is: gNMI's Commit extension and
// NETCONF's <commit><confirmed/> (RFC 6241 §8.4) start, extend, confirm and
// cancel the same pending commit, with one behaviour whichever protocol made
// it:
//
//   - A confirmed commit is applied at once and rolled back to the config
//     that was running before it unless it is confirmed within its timeout.
//   - While it is pending, only its owner may change running: any other gNMI
//     Set or NETCONF change of running is refused, naming the pending commit,
//     so that the rollback never undoes someone else's change.
//   - The rollback target is the config itself, kept here for as long as the
//     commit is pending; it does not depend on the store's history, so a
//     confirmed commit on a fresh datastore, or one that outlives HistoryLen
//     later commits, still rolls back.
//   - Shutting down rolls a pending commit back, as IOS and Junos do when
//     they reboot during a confirmed commit. An agent that dies without
//     shutting down (SIGKILL, power loss) finds the pending commit recorded
//     in its data directory and rolls it back when it starts again.
//
// It knows the store; it knows nothing of gRPC, SSH or XML: each server maps
// the errors here to its own status codes.
package confirm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/store"
)

// Implementation constants.
const (
	// pendingFile records a pending confirmed commit in the data directory
	// (mode 0600, like the store's files: it holds the config it returns to).
	pendingFile = "confirm-pending.json"
	// defaultRetryAfter spaces attempts at a rollback that failed (the
	// agent refused the old config, or the disk was full): the commit stays
	// pending and is retried until it goes back.
	defaultRetryAfter = 10 * time.Second
	// opTimeout bounds one rollback commit.
	opTimeout = 30 * time.Second
)

// Protocols that own pending commits.
const (
	GNMI    = "gNMI"
	NETCONF = "NETCONF"
)

// Token names who may confirm, extend or cancel a pending commit.
type Token struct {
	Proto string // GNMI or NETCONF; "" for a writer that holds no token
	// ID is gNMI's commit id, NETCONF's "session N", or NETCONF's persist
	// token (Persist set).
	ID      string
	Persist bool
}

func (t Token) zero() bool { return t.Proto == "" }

// Pending describes a pending confirmed commit.
type Pending struct {
	Owner    Token
	User     string
	Before   uint64 // the running commit it returns to
	After    uint64 // the running commit it made (grows when extended)
	Deadline time.Time
}

// String names the pending commit for an error or a log line. A persist
// token is a capability (whoever presents it may confirm): it is never shown.
func (p Pending) String() string {
	switch {
	case p.Owner.Proto == GNMI:
		return fmt.Sprintf("commit %q", p.Owner.ID)
	case p.Owner.Persist:
		return "a persistent NETCONF confirmed commit"
	}
	return fmt.Sprintf("the confirmed commit of NETCONF %s", p.Owner.ID)
}

// PendingError refuses a change, or a confirm or cancel, because a confirmed
// commit owned by someone else is pending.
type PendingError struct {
	Pending Pending
}

func (e *PendingError) Error() string {
	return fmt.Sprintf("%s is pending confirmation: confirm or cancel it first", e.Pending)
}

// ErrNoPending: a confirm, cancel or extend with no confirmed commit pending.
var ErrNoPending = errors.New("no confirmed commit is pending")

// Options configure a Manager.
type Options struct {
	Log *slog.Logger
	// Dir is where a pending commit is recorded so that an agent that dies
	// rolls it back at its next start (the store's data directory). Empty:
	// not recorded.
	Dir string
	// RetryAfter spaces the attempts at a rollback that failed (10 s).
	RetryAfter time.Duration
}

// Manager owns the pending confirmed commit of one store. Every change of
// running that must respect it goes through Commit or CommitConfirmed.
type Manager struct {
	st  *store.Store
	log *slog.Logger
	dir string
	// retryAfter spaces attempts at a failed rollback.
	retryAfter time.Duration

	mu     sync.Mutex // held across the check and the store commit
	p      *pending
	closed bool
}

type pending struct {
	Pending
	before *gen.Device // the config to return to
	timer  *time.Timer
}

// New returns a Manager over st.
func New(st *store.Store, o Options) *Manager {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = defaultRetryAfter
	}
	return &Manager{st: st, log: o.Log.With("component", "confirm"), dir: o.Dir, retryAfter: o.RetryAfter}
}

// Current returns the pending commit, if any.
func (m *Manager) Current() (Pending, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p == nil {
		return Pending{}, false
	}
	return m.p.Pending, true
}

// checkLocked refuses by unless it owns the pending commit (or none is).
func (m *Manager) checkLocked(by Token) error {
	if m.p == nil || (!by.zero() && by == m.p.Owner) {
		return nil
	}
	return &PendingError{Pending: m.p.Pending}
}

// Commit commits tx on behalf of by (the zero Token for a writer that holds
// none). While a confirmed commit is pending, only its owner may commit:
// anyone else gets a *PendingError and nothing changes.
func (m *Manager) Commit(ctx context.Context, tx store.Tx, by Token) (store.CommitInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkLocked(by); err != nil {
		return store.CommitInfo{}, err
	}
	info, err := m.st.Commit(ctx, tx)
	if err == nil && m.p != nil && info.ID > m.p.After {
		m.p.After = info.ID
	}
	return info, err
}

// CommitConfirmed commits tx as a confirmed commit owned by owner, rolled
// back unless confirmed within timeout. When by owns the pending commit, it
// is extended instead (RFC 6241 §8.4.1): its changes grow, its rollback
// target stays, its timer restarts and owner takes over (NETCONF may give a
// new persist token). A tx without changes still starts (or extends) one.
func (m *Manager) CommitConfirmed(ctx context.Context, tx store.Tx, by, owner Token, timeout time.Duration) (store.CommitInfo, error) {
	if owner.zero() || timeout <= 0 {
		return store.CommitInfo{}, errors.New("confirm: a confirmed commit needs an owner and a timeout")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return store.CommitInfo{}, errors.New("confirm: shutting down")
	}
	if err := m.checkLocked(by); err != nil {
		return store.CommitInfo{}, err
	}
	before := m.st.Running()
	info, err := m.st.Commit(ctx, tx)
	if err != nil {
		return info, err
	}
	p := m.p
	if p == nil {
		p = &pending{Pending: Pending{Before: before.ID, After: before.ID}, before: before.Root}
	} else {
		p.timer.Stop()
	}
	p.Owner, p.User, p.Deadline = owner, tx.User, time.Now().Add(timeout)
	p.After = max(p.After, info.ID)
	m.p = p
	m.arm(p, timeout)
	m.record(p)
	m.log.Info("confirmed commit pending", "owner", p.String(), "user", p.User, "commit", p.After, "rollback_to", p.Before, "rollback_in", timeout)
	return info, nil
}

// arm starts p's timer; m.mu is held.
func (m *Manager) arm(p *pending, d time.Duration) {
	p.timer = time.AfterFunc(d, func() { m.expire(p) })
}

// Confirm makes the pending commit permanent. It fails with ErrNoPending, or
// a *PendingError when by does not own it.
func (m *Manager) Confirm(by Token) (Pending, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.ownedLocked(by)
	if err != nil {
		return Pending{}, err
	}
	p.timer.Stop()
	m.p = nil
	m.unrecord()
	m.log.Info("confirmed commit confirmed", "owner", p.String(), "commit", p.After)
	return p.Pending, nil
}

// Extend restarts the pending commit's timer with d.
func (m *Manager) Extend(by Token, d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.ownedLocked(by)
	if err != nil {
		return err
	}
	p.timer.Stop()
	p.Deadline = time.Now().Add(d)
	m.arm(p, d)
	m.record(p)
	return nil
}

// Cancel rolls the pending commit back now (why says why, for the log).
func (m *Manager) Cancel(ctx context.Context, by Token, why string) (store.CommitInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.ownedLocked(by)
	if err != nil {
		return store.CommitInfo{}, err
	}
	p.timer.Stop()
	return m.rollbackLocked(ctx, p, why)
}

func (m *Manager) ownedLocked(by Token) (*pending, error) {
	if m.p == nil {
		return nil, ErrNoPending
	}
	if by.zero() || by != m.p.Owner {
		return nil, &PendingError{Pending: m.p.Pending}
	}
	return m.p, nil
}

// expire rolls p back when its timer fires, if it is still pending.
func (m *Manager) expire(p *pending) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p != p || m.closed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, _ = m.rollbackLocked(ctx, p, "not confirmed in time")
}

// rollbackLocked returns running to p's config. On failure p stays pending
// (and recorded) so that the rollback is tried again; m.mu is held.
func (m *Manager) rollbackLocked(ctx context.Context, p *pending, why string) (store.CommitInfo, error) {
	info, err := m.st.Restore(ctx, p.before, "confirm", fmt.Sprintf("rollback of unconfirmed %s (%s)", p.String(), why))
	if err != nil {
		m.log.Error("rollback of confirmed commit failed; it stays pending and is retried",
			"owner", p.String(), "rollback_to", p.Before, "why", why, "retry_in", m.retryAfter, "err", err)
		if m.p == p && !m.closed {
			m.arm(p, m.retryAfter)
		}
		return info, fmt.Errorf("confirm: rollback of %s to commit %d: %w", p.String(), p.Before, err)
	}
	m.p = nil
	m.unrecord()
	m.log.Warn("confirmed commit rolled back", "owner", p.String(), "why", why, "to", p.Before, "commit", info.ID)
	return info, nil
}

// Shutdown rolls a pending commit back (an unconfirmed change must not
// outlive the agent that would have rolled it back) and refuses new
// confirmed commits. If the rollback fails the record stays in the data
// directory, and the next start rolls back.
func (m *Manager) Shutdown(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if p := m.p; p != nil {
		p.timer.Stop()
		m.log.Warn("shutting down with a confirmed commit pending: rolling it back", "owner", p.String())
		_, _ = m.rollbackLocked(ctx, p, "agent shutdown")
		m.p = nil
	}
}

// record is what the data directory keeps of a pending commit.
type record struct {
	Owner    Token           `json:"owner"`
	User     string          `json:"user"`
	Before   uint64          `json:"before"`
	After    uint64          `json:"after"`
	Deadline time.Time       `json:"deadline"`
	Config   json.RawMessage `json:"config"` // RFC 7951, secrets in clear
}

// record writes p to the data directory; a failure is logged (the commit
// stays pending in memory and a shutdown still rolls it back).
func (m *Manager) record(p *pending) {
	if m.dir == "" {
		return
	}
	cfg, err := store.EmitJSONWithSecrets(p.before, true)
	if err == nil {
		var b []byte
		b, err = json.Marshal(record{Owner: p.Owner, User: p.User, Before: p.Before, After: p.After, Deadline: p.Deadline, Config: cfg})
		if err == nil {
			err = writeFile(m.dir, pendingFile, b)
		}
	}
	if err != nil {
		m.log.Error("cannot record the pending confirmed commit; a crash now would keep it applied", "file", filepath.Join(m.dir, pendingFile), "err", err)
	}
}

func (m *Manager) unrecord() {
	if m.dir == "" {
		return
	}
	if err := os.Remove(filepath.Join(m.dir, pendingFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.Error("cannot remove the record of a finished confirmed commit", "err", err)
	}
}

// writeFile replaces dir/name atomically (temp file, fsync, rename).
func writeFile(dir, name string, b []byte) error {
	f, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Recover rolls back a confirmed commit that was pending when the agent
// last stopped without shutting down (recorded in Options.Dir). Call it once
// the store's Applier is in place, before the servers start. A record that
// cannot be read is an error naming the file, which is left as it is.
func (m *Manager) Recover(ctx context.Context) error {
	if m.dir == "" {
		return nil
	}
	path := filepath.Join(m.dir, pendingFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("confirm: %s: %w", path, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("confirm: %s is damaged (%v): the unconfirmed commit %d cannot be rolled back to commit %d; remove the file to keep the running config as it is", path, err, r.After, r.Before)
	}
	root, err := store.LoadJSON(r.Config)
	if err != nil {
		return fmt.Errorf("confirm: %s: the config to return to (commit %d) does not load: %w; remove the file to keep the running config as it is", path, r.Before, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := &pending{Pending: Pending{Owner: r.Owner, User: r.User, Before: r.Before, After: r.After, Deadline: r.Deadline}, before: root}
	m.log.Warn("a confirmed commit was pending when the agent stopped: rolling it back", "owner", p.String(), "commit", r.After, "rollback_to", r.Before)
	if _, err := m.rollbackLocked(ctx, p, "the agent stopped before it was confirmed"); err != nil {
		return err
	}
	return nil
}

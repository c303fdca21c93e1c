// Package auth authenticates the agent's northbound clients: a users file of
// bcrypt password hashes with a role per user, the login Backoff both servers
// share (per source address and per user, so that password guessing is
// slow and the admin is never locked out), the tracking of open sessions
// that ends them when their user is removed or demoted, and the TLS
// certificate the gNMI server presents (loaded from files, or generated once
// and kept in the data directory). It knows nothing of gNMI, NETCONF or the
// datastore.
package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Role is what an authenticated user may do.
type Role int

// Roles.
const (
	RoleNone      Role = iota // no access
	RoleReadOnly              // Capabilities, Get, Subscribe
	RoleReadWrite             // and Set
)

func (r Role) String() string {
	switch r {
	case RoleReadOnly:
		return "read-only"
	case RoleReadWrite:
		return "read-write"
	}
	return "none"
}

// ParseRole parses "read-only" or "read-write".
func ParseRole(s string) (Role, error) {
	switch s {
	case "read-only":
		return RoleReadOnly, nil
	case "read-write":
		return RoleReadWrite, nil
	}
	return RoleNone, fmt.Errorf("auth: unknown role %q (want read-only or read-write)", s)
}

// ErrBadCredentials is returned for an unknown user or a wrong password; the
// two are not distinguished.
var ErrBadCredentials = errors.New("auth: bad username or password")

// ErrNoUsers is returned when the users file does not exist or is empty:
// nobody can log in.
var ErrNoUsers = errors.New("auth: no users file: no access")

// cacheTTL is how long a verified password is remembered, so that a client
// making many RPCs does not pay a bcrypt verification (tens of ms) for each.
const cacheTTL = 5 * time.Minute

// bcryptCost is the cost of new hashes.
const bcryptCost = bcrypt.DefaultCost

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$`)

type user struct {
	role Role
	hash []byte
}

type cached struct {
	sum     [32]byte
	expires time.Time
}

// Users is the users file, re-read when it changes on disk, so that
// `spiagent user add` takes effect without a restart, and `spiagent user
// del` ends the user's open sessions (see Track). Both northbound servers
// share one Users, hence one login Backoff.
//
// File format, one user per line (mode 0600):
//
//	NAME ROLE BCRYPT-HASH
type Users struct {
	path    string
	backoff *Backoff

	mu      sync.Mutex
	stamp   string // size and mtime of the file last read; "" if absent
	users   map[string]user
	cache   map[string]cached
	loaded  bool
	now     func() time.Time
	flights map[[32]byte]*flight // password checks running
	tracked map[*tracked]struct{}
}

// flight is a password check that concurrent identical logins share.
type flight struct {
	done chan struct{}
	role Role
	err  error
}

// OpenUsers returns the users of the file at path. A missing file is not an
// error (it means no access until one is written); an unreadable or corrupt
// one is. Logins through Login go through a Backoff with the default
// settings (see SetBackoff).
func OpenUsers(path string) (*Users, error) {
	u := &Users{path: path, now: time.Now, backoff: NewBackoff(BackoffConfig{}),
		flights: map[[32]byte]*flight{}, tracked: map[*tracked]struct{}{}}
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, err := u.reloadLocked(); err != nil {
		return nil, err
	}
	return u, nil
}

// SetBackoff replaces the login backoff (before the servers start).
func (u *Users) SetBackoff(cfg BackoffConfig) {
	b := NewBackoff(cfg)
	u.mu.Lock()
	u.backoff = b
	u.mu.Unlock()
}

// Path is the users file's name.
func (u *Users) Path() string { return u.path }

// Empty reports whether nobody can log in (no file, or no users in it).
func (u *Users) Empty() bool {
	u.mu.Lock()
	ends, _ := u.refreshLocked()
	empty := len(u.users) == 0
	u.mu.Unlock()
	ends.run()
	return empty
}

func fileStamp(fi fs.FileInfo) string {
	return fmt.Sprintf("%d/%d", fi.Size(), fi.ModTime().UnixNano())
}

// reloadLocked re-reads the file if it changed, and says whether it did. On
// error the previous users stay in force.
func (u *Users) reloadLocked() (bool, error) {
	fi, err := os.Stat(u.path)
	if errors.Is(err, fs.ErrNotExist) {
		changed := !u.loaded || u.stamp != ""
		u.users, u.stamp, u.cache, u.loaded = nil, "", nil, true
		return changed, nil
	}
	if err != nil {
		return false, fmt.Errorf("auth: users file: %w", err)
	}
	if u.loaded && fileStamp(fi) == u.stamp {
		return false, nil
	}
	b, err := os.ReadFile(u.path)
	if err != nil {
		return false, fmt.Errorf("auth: users file: %w", err)
	}
	users, err := parseUsers(b)
	if err != nil {
		return false, fmt.Errorf("auth: users file %s: %w", u.path, err)
	}
	u.users, u.stamp, u.cache, u.loaded = users, fileStamp(fi), map[string]cached{}, true
	return true, nil
}

func parseUsers(b []byte) (map[string]user, error) {
	users := map[string]user{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want NAME ROLE HASH", n)
		}
		role, err := ParseRole(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, err := bcrypt.Cost([]byte(f[2])); err != nil {
			return nil, fmt.Errorf("line %d: user %s: not a bcrypt hash", n, f[0])
		}
		users[f[0]] = user{role: role, hash: []byte(f[2])}
	}
	return users, sc.Err()
}

// Authenticate checks a username and password and returns the user's role.
// It does not go through the login Backoff: the servers use Login.
func (u *Users) Authenticate(name, password string) (Role, error) {
	return u.login(nil, netip.Prefix{}, name, password)
}

// Login is Authenticate for a client at the address src, through the login
// Backoff: a source (or, from a source that failed itself, a user) with too
// many recent failures is refused with a *BackoffError without checking the
// password. A password verified in the last few minutes is accepted without
// a bcrypt verification and without the Backoff; concurrent logins with the
// same name and password share one verification.
func (u *Users) Login(src net.Addr, name, password string) (Role, error) {
	u.mu.Lock()
	b := u.backoff
	u.mu.Unlock()
	return u.login(b, Source(src), name, password)
}

func (u *Users) login(b *Backoff, source netip.Prefix, name, password string) (Role, error) {
	u.mu.Lock()
	ends, err := u.refreshLocked()
	defer ends.run()
	if err != nil {
		u.mu.Unlock()
		return RoleNone, err
	}
	if len(u.users) == 0 {
		u.mu.Unlock()
		return RoleNone, ErrNoUsers
	}
	usr, known := u.users[name]
	sum := sha256.Sum256([]byte(name + "\x00" + password))
	if c, hit := u.cache[name]; known && hit && u.now().Before(c.expires) && subtle.ConstantTimeCompare(c.sum[:], sum[:]) == 1 {
		u.mu.Unlock()
		return usr.role, nil
	}
	if f := u.flights[sum]; f != nil {
		u.mu.Unlock()
		<-f.done
		return f.role, f.err
	}
	f := &flight{done: make(chan struct{})}
	u.flights[sum] = f
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		delete(u.flights, sum)
		u.mu.Unlock()
		close(f.done)
	}()
	if b != nil {
		if f.err = b.admit(source, name, known); f.err != nil {
			return RoleNone, f.err
		}
	}
	hash := dummyHash // for an unknown user: spend the same time as for a real one
	if known {
		hash = usr.hash
	}
	ok := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil && known
	if b != nil {
		b.done(source, name, known, ok)
	}
	if !ok {
		f.err = ErrBadCredentials
		return RoleNone, f.err
	}
	u.mu.Lock()
	if u.cache != nil {
		u.cache[name] = cached{sum: sum, expires: u.now().Add(cacheTTL)}
	}
	u.mu.Unlock()
	f.role = usr.role
	return usr.role, nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("spiagent-dummy"), bcryptCost)

// AddUser adds or replaces a user in the users file at path (created with
// mode 0600 if missing), atomically.
func AddUser(path, name string, role Role, password []byte) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("auth: bad user name %q", name)
	}
	if role != RoleReadOnly && role != RoleReadWrite {
		return fmt.Errorf("auth: bad role %v", role)
	}
	if len(password) == 0 {
		return fmt.Errorf("auth: empty password")
	}
	if len(password) > 72 {
		return fmt.Errorf("auth: password longer than 72 bytes (bcrypt's limit)")
	}
	hash, err := bcrypt.GenerateFromPassword(password, bcryptCost)
	if err != nil {
		return fmt.Errorf("auth: hash password: %w", err)
	}
	return editUsers(path, func(users map[string]user) error {
		users[name] = user{role: role, hash: hash}
		return nil
	})
}

// DelUser removes a user from the users file at path.
func DelUser(path, name string) error {
	return editUsers(path, func(users map[string]user) error {
		if _, ok := users[name]; !ok {
			return fmt.Errorf("auth: no user %q in %s", name, path)
		}
		delete(users, name)
		return nil
	})
}

func editUsers(path string, edit func(map[string]user) error) error {
	users := map[string]user{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("auth: users file: %w", err)
	default:
		if users, err = parseUsers(b); err != nil {
			return fmt.Errorf("auth: users file %s: %w", path, err)
		}
	}
	if err := edit(users); err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(users))
	var out bytes.Buffer
	out.WriteString("# spiagent users: NAME ROLE BCRYPT-HASH (spiagent user add|del)\n")
	for _, n := range names {
		fmt.Fprintf(&out, "%s %s %s\n", n, users[n].role, users[n].hash)
	}
	return writeFileAtomic(path, out.Bytes(), 0o600)
}

// writeFileAtomic writes a file via a temporary file, fsync and rename.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("auth: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("auth: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("auth: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

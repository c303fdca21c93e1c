package auth

import (
	"context"
	"fmt"
	"time"
)

// DefaultWatchInterval is how often Watch looks at the users file.
const DefaultWatchInterval = 2 * time.Second

// RevokedError is why a tracked session was ended: its user was removed
// from the users file, or no longer has the role the session needs.
type RevokedError struct {
	User    string
	Need    Role // the role the session needs
	Now     Role // the user's role now (RoleNone: removed)
	Removed bool
}

func (e *RevokedError) Error() string {
	if e.Removed {
		return fmt.Sprintf("user %q was removed from the users file: session ended", e.User)
	}
	return fmt.Sprintf("user %q no longer has role %s (now %s): session ended", e.User, e.Need, e.Now)
}

// tracked is an open session of a user.
type tracked struct {
	user string
	need Role
	end  func(*RevokedError)
}

// revocations are end calls to make once the lock is released.
type revocations []func()

func (r revocations) run() {
	for _, f := range r {
		f()
	}
}

// Track registers an open session (a NETCONF session, a gNMI RPC or
// stream) of user, which needs the role need. If the users file changes so
// that the user is gone or has a lower role, end is called once (never
// with Users' lock held) and the session is forgotten. The returned
// function forgets it (when the session ends by itself); it may be called
// more than once.
func (u *Users) Track(user string, need Role, end func(*RevokedError)) (untrack func()) {
	t := &tracked{user: user, need: need, end: end}
	u.mu.Lock()
	u.tracked[t] = struct{}{}
	u.mu.Unlock()
	return func() {
		u.mu.Lock()
		delete(u.tracked, t)
		u.mu.Unlock()
	}
}

// revokedLocked forgets the tracked sessions whose user is gone or lost the
// role they need, and returns their end calls.
func (u *Users) revokedLocked() revocations {
	var ends revocations
	for t := range u.tracked {
		usr, ok := u.users[t.user]
		if ok && usr.role >= t.need {
			continue
		}
		delete(u.tracked, t)
		e := &RevokedError{User: t.user, Need: t.need, Removed: !ok}
		if ok {
			e.Now = usr.role
		}
		ends = append(ends, func() { t.end(e) })
	}
	return ends
}

// Reload re-reads the users file if it changed and ends the tracked
// sessions it revokes. An unreadable or corrupt file leaves the previous
// users in force and is returned.
func (u *Users) Reload() error {
	u.mu.Lock()
	ends, err := u.refreshLocked()
	u.mu.Unlock()
	ends.run()
	return err
}

// refreshLocked re-reads the users file if it changed and returns the end
// calls of the sessions the change revokes (to run after unlocking).
func (u *Users) refreshLocked() (revocations, error) {
	changed, err := u.reloadLocked()
	if !changed {
		return nil, err
	}
	return u.revokedLocked(), err
}

// Watch calls Reload every interval (DefaultWatchInterval if zero) until
// ctx is done, so that removing a user ends its sessions within an
// interval even when nobody logs in. Several Watch calls may run at once.
func (u *Users) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = u.Reload()
		}
	}
}

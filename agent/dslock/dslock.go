// Package dslock is the running datastore's lock, shared by the northbound
// servers. RFC 6241 §7.5 intends a NETCONF <lock> on running to keep every
// other management interface from changing it too: with one Lock given to
// both servers, a NETCONF session's lock holds off gNMI Set. It knows
// nothing of the servers or the store. A nil *Lock never locks.
package dslock

import "sync"

// Lock names who holds the running datastore, if anyone.
type Lock struct {
	mu     sync.Mutex
	holder string
}

// TryLock takes the lock for holder (a description such as "NETCONF session
// 7"). It fails, returning the current holder, when someone else has it.
func (l *Lock) TryLock(holder string) (ok bool, current string) {
	if l == nil {
		return true, ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder != "" && l.holder != holder {
		return false, l.holder
	}
	l.holder = holder
	return true, holder
}

// Unlock releases the lock if holder has it.
func (l *Lock) Unlock(holder string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder == holder {
		l.holder = ""
	}
}

// Holder returns who holds the lock ("" when free).
func (l *Lock) Holder() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holder
}

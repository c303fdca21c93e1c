// Package ratelog rate-limits the log lines that outsiders can trigger
// (failed logins, refused connections, accept errors): per kind of event (its
// message), the first Burst lines of a window are logged as they come; the
// rest are counted and summed up in one line when the window ends,
//
//	msg="gNMI authentication failed: 37 more in the last minute" suppressed=37 last_user=... last_remote=...
//
// so that 20,000 refused attempts cost a handful of lines, not 20,000.
//
// It imports only the standard library, so that any package (the agent's
// servers, the IKE transport) can use it.
package ratelog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Defaults of New's arguments left zero.
const (
	DefaultWindow = time.Minute
	DefaultBurst  = 5
)

// Limiter rate-limits log lines per message.
type Limiter struct {
	log    *slog.Logger
	window time.Duration
	burst  int
	now    func() time.Time

	mu    sync.Mutex
	kinds map[string]*kind
}

// kind is the window of one message.
type kind struct {
	level      slog.Level
	start      time.Time
	logged     int
	suppressed int
	last       []any // attributes of the last suppressed event
	timer      *time.Timer
}

// New returns a Limiter writing to log: at most burst lines of each message
// per window, then one summary line at the window's end. Zero values take
// the defaults (5 lines a minute).
func New(log *slog.Logger, window time.Duration, burst int) *Limiter {
	if window <= 0 {
		window = DefaultWindow
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	return &Limiter{log: log, window: window, burst: burst, now: time.Now, kinds: map[string]*kind{}}
}

// Warn logs at warning level, rate-limited.
func (l *Limiter) Warn(msg string, args ...any) { l.Log(slog.LevelWarn, msg, args...) }

// Info logs at info level, rate-limited.
func (l *Limiter) Info(msg string, args ...any) { l.Log(slog.LevelInfo, msg, args...) }

// Log logs msg with args, unless msg has been logged burst times in the
// current window: then it is counted for the window's summary line.
func (l *Limiter) Log(level slog.Level, msg string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.mu.Lock()
	k := l.kinds[msg]
	if k == nil {
		k = &kind{level: level, start: l.now()}
		l.kinds[msg] = k
		// The window ends (and its summary is written) even if no further
		// event comes.
		k.timer = time.AfterFunc(l.window, func() { l.flush(msg, k) })
	}
	if k.logged < l.burst {
		k.logged++
		l.mu.Unlock()
		l.log.Log(context.Background(), level, msg, args...)
		return
	}
	k.suppressed++
	k.last = args
	if level > k.level {
		k.level = level
	}
	l.mu.Unlock()
}

// flush ends msg's window: the summary line if lines were suppressed.
func (l *Limiter) flush(msg string, k *kind) {
	l.mu.Lock()
	if l.kinds[msg] == k {
		delete(l.kinds, msg)
	}
	n, last, level := k.suppressed, k.last, k.level
	l.mu.Unlock()
	if n == 0 {
		return
	}
	attrs := []any{"suppressed", n}
	for i := 0; i+1 < len(last); i += 2 {
		if key, ok := last[i].(string); ok {
			attrs = append(attrs, "last_"+key, last[i+1])
		}
	}
	l.log.Log(context.Background(), level, fmt.Sprintf("%s: %d more in the last %s", msg, n, span(l.window)), attrs...)
}

// Flush writes the summaries of every open window now (at shutdown).
func (l *Limiter) Flush() {
	l.mu.Lock()
	open := make(map[string]*kind, len(l.kinds))
	for m, k := range l.kinds {
		k.timer.Stop()
		open[m] = k
	}
	l.mu.Unlock()
	for m, k := range open {
		l.flush(m, k)
	}
}

// span names a window the way the summary line reads it.
func span(d time.Duration) string {
	switch d {
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	}
	return d.String()
}

package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func TestBurstThenSummary(t *testing.T) {
	var buf syncBuffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Hour, 3)
	for i := range 1000 {
		l.Warn("login failed", "user", "mallory", "n", i)
	}
	l.Info("other event") // its own window
	if got := len(buf.lines()); got != 4 {
		t.Fatalf("%d lines before the window ended, want 3 + 1:\n%s", got, strings.Join(buf.lines(), "\n"))
	}
	l.Flush()
	lines := buf.lines()
	if len(lines) != 5 {
		t.Fatalf("%d lines after the flush, want 5:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	sum := lines[4]
	for _, want := range []string{`login failed: 997 more in the last hour`, "suppressed=997", "last_user=mallory", "last_n=999", "level=WARN"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary %q lacks %q", sum, want)
		}
	}
}

// TestWindowEndsByItself: the summary is written when the window ends, with
// no further event, and a new window starts afresh.
func TestWindowEndsByItself(t *testing.T) {
	var buf syncBuffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), 50*time.Millisecond, 1)
	l.Warn("refused")
	l.Warn("refused")
	l.Warn("refused")
	deadline := time.Now().Add(10 * time.Second)
	for len(buf.lines()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no summary after the window: %q", buf.lines())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := buf.lines()[1]; !strings.Contains(s, "refused: 2 more in the last 50ms") {
		t.Fatalf("summary %q", s)
	}
	l.Warn("refused")
	if got := buf.lines(); len(got) != 3 || got[2] == got[1] {
		t.Fatalf("the next window did not log its first line: %q", got)
	}
}

func TestDisabledLevelCostsNothing(t *testing.T) {
	var buf syncBuffer
	l := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})), time.Hour, 1)
	l.Warn("quiet")
	l.Flush()
	if s := strings.TrimSpace(strings.Join(buf.lines(), "")); s != "" {
		t.Fatalf("logged below the level: %q", s)
	}
	if len(l.kinds) != 0 {
		t.Fatal("a disabled level opened a window")
	}
}

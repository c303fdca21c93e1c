package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// redacted replaces every secret value in errors, logs, reads and events.
const redacted = ytree.Redacted

// OpKind is the kind of one operation of a transaction.
type OpKind int

// The operations of a gNMI Set.
const (
	OpDelete OpKind = iota
	OpReplace
	OpUpdate
)

func (k OpKind) String() string {
	switch k {
	case OpDelete:
		return "delete"
	case OpReplace:
		return "replace"
	case OpUpdate:
		return "update"
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// Op is one delete, replace or update at a schema path from the root (e.g.
// elems crypto/isakmp/policies/policy[priority=1]/config; module prefixes on
// names are accepted; no origin). Val is a JsonIetfVal, a JsonVal (treated as
// RFC 7951, module prefixes optional) or a scalar for a leaf, a LeaflistVal
// for a leaf-list; it is ignored for delete.
type Op struct {
	Kind OpKind
	Path *gpb.Path
	Val  *gpb.TypedValue
}

// Tx is a transaction: its ops are applied in the order given, all or none.
type Tx struct {
	Ops           []Op
	User, Comment string
	// IgnoreMissing makes a delete of a path that does not exist a no-op (the
	// gNMI Set rule) instead of an *OpError wrapping ErrNotFound.
	IgnoreMissing bool
}

// Snapshot is one version of the running config. It is immutable: nobody may
// mutate Root or anything reachable from it (snapshots share unchanged
// subtrees). Root holds the pre-shared keys in clear: use Redact before
// showing it.
type Snapshot struct {
	ID   uint64
	Time time.Time
	Root *gen.Device
}

// ChangeKind says how a leaf changed.
type ChangeKind int

// Kinds of change.
const (
	Added ChangeKind = iota
	Removed
	Modified
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Removed:
		return "removed"
	case Modified:
		return "modified"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change is one changed leaf (or leaf-list, as a LeaflistVal). Old is nil for
// Added, New is nil for Removed. Values are JSON_IETF-style typed values
// (enums as their names). Path and values are shared: do not mutate them.
type Change struct {
	Path     *gpb.Path
	Kind     ChangeKind
	Old, New *gpb.TypedValue
}

// String formats the change with secrets redacted.
func (c Change) String() string {
	p := ytree.PathString(c.Path.GetElem())
	secret := ytree.IsSecretPath(c.Path.GetElem())
	val := func(v *gpb.TypedValue) string {
		if secret {
			return redacted
		}
		return valString(v)
	}
	switch c.Kind {
	case Added:
		return fmt.Sprintf("+ %s = %s", p, val(c.New))
	case Removed:
		return fmt.Sprintf("- %s (was %s)", p, val(c.Old))
	}
	return fmt.Sprintf("~ %s: %s -> %s", p, val(c.Old), val(c.New))
}

func valString(v *gpb.TypedValue) string {
	if v == nil {
		return "nil"
	}
	switch x := v.GetValue().(type) {
	case *gpb.TypedValue_StringVal:
		return fmt.Sprintf("%q", x.StringVal)
	case *gpb.TypedValue_UintVal:
		return fmt.Sprint(x.UintVal)
	case *gpb.TypedValue_IntVal:
		return fmt.Sprint(x.IntVal)
	case *gpb.TypedValue_BoolVal:
		return fmt.Sprint(x.BoolVal)
	case *gpb.TypedValue_LeaflistVal:
		var parts []string
		for _, e := range x.LeaflistVal.GetElement() {
			parts = append(parts, valString(e))
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return strings.TrimSpace(prototext.Format(v))
}

// Diff is the change between two snapshots, leaf by leaf, grouped by subtree
// (the order of list entries is unspecified). An added or removed list entry
// is reported as its leaves.
type Diff []Change

// String formats the diff one change per line, secrets redacted.
func (d Diff) String() string {
	var b strings.Builder
	for _, c := range d {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Redacted returns a copy of d whose secret values are replaced by "<redacted>".
func (d Diff) Redacted() Diff {
	out := make(Diff, len(d))
	for i, c := range d {
		if ytree.IsSecretPath(c.Path.GetElem()) {
			if c.Old != nil {
				c.Old = redactedVal()
			}
			if c.New != nil {
				c.New = redactedVal()
			}
		}
		out[i] = c
	}
	return out
}

func redactedVal() *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: redacted}}
}

// Applier is told about every commit before it takes effect (the agent's
// reconciler programs the engines). Returning an error refuses the commit:
// then nothing changes. If persisting fails after Apply accepted, Apply is
// called again with old and new swapped and the inverse diff.
type Applier interface {
	Apply(ctx context.Context, old, new *Snapshot, diff Diff) error
}

// ApplierFunc adapts a function to Applier.
type ApplierFunc func(ctx context.Context, old, new *Snapshot, diff Diff) error

// Apply calls f.
func (f ApplierFunc) Apply(ctx context.Context, old, new *Snapshot, diff Diff) error {
	return f(ctx, old, new, diff)
}

// CommitInfo describes one commit.
type CommitInfo struct {
	ID      uint64    `json:"id"`
	Time    time.Time `json:"time"`
	User    string    `json:"user,omitempty"`
	Comment string    `json:"comment,omitempty"`
	Summary string    `json:"summary"`
}

// Event is published to subscribers after each commit. Diff has secrets
// redacted; Snapshot.Root does not (see Snapshot).
type Event struct {
	Snapshot *Snapshot
	Diff     Diff
	Info     CommitInfo
}

// Problem is one reason a config is invalid (ytree.Problem). Path is a
// schema path such as /crypto/isakmp/policies/policy[priority=1]/config/lifetime.
type Problem = ytree.Problem

// ErrNotFound: a delete of something that does not exist, or a rollback to a
// commit whose config is not kept (the same error as ytree.ErrNotFound).
var ErrNotFound = ytree.ErrNotFound

// ErrState: a write of config false data (ytree.ErrState).
var ErrState = ytree.ErrState

// OpError is an op of a transaction that could not be applied.
type OpError struct {
	Index int    // position of the op in Tx.Ops
	Path  string // the op's path, /a/b[k=v]/c
	Err   error
}

func (e *OpError) Error() string {
	return fmt.Sprintf("store: op %d at %s: %v", e.Index, e.Path, e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }

// ValidationError lists why the config a transaction would produce is invalid.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("store: invalid config: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		if i == 10 {
			fmt.Fprintf(&b, "and %d more", len(e.Problems)-10)
			break
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// RefusedError is a commit the Applier refused.
type RefusedError struct {
	Err error
}

func (e *RefusedError) Error() string { return "store: applier refused the commit: " + e.Err.Error() }

func (e *RefusedError) Unwrap() error { return e.Err }

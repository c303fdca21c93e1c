package store

import (
	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// Validator adds semantic rules to the store's YANG checks: the agent
// registers the crypto rules (references between crypto maps, keys,
// transform sets and access lists) with WithValidator, as lemming registers
// validators per reconciler. The store calls a Validator only under its
// commit lock, one call at a time.
type Validator interface {
	// Validate checks a whole configuration (at Open, and for Validate).
	Validate(root *gen.Device) []Problem
	// Reset makes root the configuration later Check calls start from:
	// the running configuration, when the store opens.
	Reset(root *gen.Device)
	// Check validates the configuration a commit would make running: root,
	// and the list entries the commit changed, added or removed. It may
	// record the changes in an index of its own (updated as if the commit
	// took effect); undo, when not nil, is called if the commit does not
	// take effect.
	Check(root *gen.Device, changes []EntryChange) (problems []Problem, undo func())
}

// WithValidator registers a Validator (it may be given several times).
func WithValidator(v Validator) Option {
	return func(s *Store) { s.validators = append(s.validators, v) }
}

// Validate checks a whole configuration: every leaf against its schema type
// (ranges, patterns, lengths, enums), list keys equal to their config key
// leaves, mandatory leaves, no state data (ytree.Validate), and the rules
// of the validators given. Problems are sorted by path; secret values never
// appear in them.
func Validate(root *gen.Device, vs ...Validator) []Problem {
	if root == nil {
		return nil
	}
	ps := ytree.Validate(root, true)
	for _, v := range vs {
		ps = append(ps, v.Validate(root)...)
	}
	return ytree.SortProblems(ps)
}

// Validate checks a whole configuration with the store's validators (see
// the package function Validate). It does not change the store.
func (s *Store) Validate(root *gen.Device) []Problem { return Validate(root, s.validators...) }

// validateChanges validates the configuration a commit makes incrementally:
// the schema problems the diff found (added and modified leaves, changed
// list entries' keys and mandatory leaves), then each validator's Check of
// the changed entries. The returned function undoes what the validators
// recorded.
func (s *Store) validateChanges(root *gen.Device, c *changes) ([]Problem, func()) {
	ps := c.problems
	var undos []func()
	for _, v := range s.validators {
		p, undo := v.Check(root, c.ents)
		ps = append(ps, p...)
		if undo != nil {
			undos = append(undos, undo)
		}
	}
	return ytree.SortProblems(ps), func() {
		for i := len(undos) - 1; i >= 0; i-- {
			undos[i]()
		}
	}
}

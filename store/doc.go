// Package store is spiagent's datastore: the running config (a tree of the
// ygot structs generated in gen), transactions of gNMI-style deletes,
// replaces and updates, validation, persistence, commit history with
// rollback, and a change feed. It knows nothing of engines: a commit is
// offered to an Applier (the agent's reconciler), which may refuse it.
//
// # Design
//
// The tree work is package ytree's: schema metadata, list keys, the
// copy-on-write Writer, the Differ and the RFC 7951 codec are shared with
// telemetry, gNMI and NETCONF. The store owns the transaction around them.
//
// Snapshots are immutable and share structure. A commit never deep-copies
// the tree: its ops go through a ytree.Writer, which shallow-copies the nodes
// on each op's path (each struct on the path; the Go map of each list on the
// path), so the new snapshot shares every untouched subtree with the old one
// and readers of the old one never see a change. The Writer remembers which
// nodes it allocated (later ops of the same transaction change them in
// place) and which keys of each copied list map it touched. Apply runs the
// same first step as a dry run.
//
// The diff (ytree.Differ) walks old and new in parallel, skips pointers
// that are equal (shared subtrees) and, in a list map the transaction
// copied, visits only the touched keys; its cost follows the size of the
// change, not of the config. Added and modified leaves are schema-checked
// one by one (prepared checks: type, range, length, pattern, enum, held to
// ytypes' verdicts by a ytree test); each changed list entry gets its YANG
// entry checks (key leaves equal the list key, mandatory leaves). Semantic
// rules are not the store's: validators registered with WithValidator
// (the agent's crypto rules, agent/validators) see the changed list entries
// of each commit and may keep indexes of their own (the crypto validator
// keeps reference counts so that removing something referenced is checked
// in O(1)); a failed commit undoes what they recorded. Validate checks a
// whole tree the same way.
//
// What a commit costs: the path copies, which include a copy of each list map
// on an op's path (Go maps cannot share structure: about 50 ns per entry, so
// a leaf of one of 10,000 crypto-map entries copies a 10,000-entry map), plus
// work proportional to the change, plus one journal append and fdatasync.
// bench/store_RESULTS.md has the figures.
//
// Persistence is a snapshot file (running.json: the config as RFC 7951 JSON
// in an envelope with the commit id, the history and a SHA-256) plus an
// append-only journal (journal.log) of the committed transactions' ops, one
// CRC-32C checksummed record each, fdatasynced before the commit takes
// effect.
// Open replays the journal over the snapshot. After 1000 records or 16 MiB
// (WithCompaction) a background compaction writes a new snapshot file
// (temporary file, fsync, rename, fsync of the directory; only the rename
// and the journal rotation hold the commit lock) and rotates the journal
// the same way. The directory is flocked while a Store has it open. A torn final record (a crash mid-append: never
// acknowledged) is logged and cut off; any other damage is an error and the
// files are left as they are. Files are mode 0600 in a 0700 directory: they
// hold the pre-shared keys in clear, as the engines need them.
//
// Commits are serialized by a mutex; Running is an atomic pointer load, so
// readers never wait. Order of a commit: apply ops to the copy, diff,
// validate, offer to the Applier, append to the journal, swap the running
// pointer, append to history, publish. A failure at any step leaves the
// running config, history and files unchanged (if the journal append fails
// after the Applier accepted, the Applier is called again with the inverse
// diff).
//
// Secrets (leaves marked spt:secret: the pre-shared key) never appear in
// errors, problems, log lines, Change.String or events; ytree.Redact and
// EmitJSON replace them with "<redacted>".
//
// Defaults are not stored: read them through the generated GetXxx getters or
// PopulateDefaults on a copy.
//
// It imports gen and ytree: never the agent, the engines or gNMI.
package store

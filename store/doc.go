// Package store is spiagent's datastore: the running config (a tree of the
// ygot structs generated in gen), transactions of gNMI-style deletes,
// replaces and updates, validation, persistence, commit history with
// rollback, and a change feed. It knows nothing of engines: a commit is
// offered to an Applier (the agent's reconciler), which may refuse it.
//
// # Design
//
// Snapshots are immutable and share structure. A commit never deep-copies
// the tree: before an op changes a node, the nodes on the op's path are
// shallow-copied (each struct on the path; the Go map of each list on the
// path), so the new snapshot shares every untouched subtree with the old one
// and readers of the old one never see a change. The transaction remembers
// which nodes it allocated (they may be changed in place by later ops of the
// same transaction) and which keys of each copied list map it touched.
//
// The diff walks old and new in parallel, skips pointers that are equal
// (shared subtrees) and, in a list map copied by the transaction, visits only
// the touched keys; its cost follows the size of the change, not of the
// config. Added and modified leaves are schema-checked one by one
// (ytypes.Validate on the leaf: type, range, length, pattern, enum); each
// changed list entry gets its entity checks (key leaves equal the list key,
// mandatory leaves, transform-set and ACL-entry sanity, the references it
// makes). Removing something that can be referenced (a key or its key leaf, a
// transform set, an access list or its last entry, a crypto map) is checked
// against reference counts kept for the running config (updated from the
// changed entries, undone if the commit fails): O(1), and only a dangling
// reference makes it walk all references to name them. Leaf type checks are
// prepared once per schema leaf (ranges, lengths, compiled patterns; unions
// fall back to ytypes.Validate), and a test holds them to ytypes' verdicts.
// Validate checks a whole tree the same way.
//
// JSON is read and written by a small codec driven by the same schema tables
// (codec.go): ytypes.Unmarshal pretty-prints every container and list it
// builds, which made loading 10,000 entries take tens of seconds. A test holds
// the codec to ytypes.Unmarshal and ygot.EmitJSON on the examples.
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
// errors, problems, log lines, Change.String or events; Redact and EmitJSON
// replace them with "<redacted>".
//
// Defaults are not stored: read them through the generated GetXxx getters or
// PopulateDefaults on a copy.
package store

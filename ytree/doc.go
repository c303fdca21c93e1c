// Package ytree is spiagent's one YANG-tree toolkit: everything that reads,
// writes, compares, checks or renders a tree of the ygot structs generated
// in package gen, driven by the YANG schema. The datastore (store), the
// operational-state tree (agent/telemetry), the gNMI server and the NETCONF
// server all use it; none of them walks the generated structs by itself.
//
// It owns:
//   - schema metadata, built once per generated type (Type, Field): field
//     indexes, kinds, list keys, config false, the spt:secret extension,
//     prepared leaf checks;
//   - list keys: one parser for scalar, enumeration and composite keys
//     (Field.ParseKey), and the text form of leaf values (ParseText,
//     FormatText), the same for gNMI keys and NETCONF XML;
//   - path text (PathString: keys sorted, "]" and "\" escaped in key values as
//     in the gNMI path conventions), schema resolution of paths and
//     patterns with "*" and "..." (Resolve, Match, Lookup, Covers, Overlaps);
//   - copy-on-write (Writer): a new version of a tree shares every subtree
//     it does not change with the old one, which is never modified; only
//     the structs and list maps on the written paths are copied, and the
//     Writer remembers which keys of each copied list map it touched;
//   - the diff of two versions (Diff), which skips shared pointers and, in a
//     list map copied by a Writer, visits only the touched keys: its cost
//     follows the change, not the tree; a secret leaf differs whenever it
//     was written (its pointer changed), never by comparing its value, so
//     that a commit or its events do not tell a writer whether the value
//     it wrote was the one held;
//   - RFC 7951 JSON, read and written by one reflection codec driven by the
//     same tables (ytypes.Unmarshal and ygot's JSON builders are far too
//     slow for big trees), and typed values for gNMI (TypedValue, SetLeaf);
//   - YANG validation: types, ranges, lengths, patterns, enums, list keys,
//     mandatory leaves (Validate, Type.CheckEntry, Field.Check);
//   - redaction of secrets, config-only views, defaults, and the overlay of
//     a config and a state tree.
//
// Semantic rules of the crypto model (references between crypto maps,
// keys and transform sets) are not here: the agent registers them with the
// store as validators.
//
// It imports gen, goyang, ygot and the gNMI proto only: never store, agent,
// ike or ipsec.
package ytree

package store

import (
	"fmt"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// LoadJSON parses RFC 7951 JSON (JSON_IETF) of the whole tree, as
// examples/*.json hold it. Anything after the top-level value (but white
// space) is an error. It does not validate: call Validate.
func LoadJSON(b []byte) (*gen.Device, error) {
	d, err := ytree.Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("store: load JSON: %v", err)
	}
	return d, nil
}

// EmitJSON renders the config (state data left out) as RFC 7951 JSON: with
// module-qualified top-level names when ietf is true (gNMI json_ietf_val), or
// with no module names (json_val) otherwise. Secrets are redacted.
func EmitJSON(root *gen.Device, ietf bool) ([]byte, error) {
	return encodeJSON(root, ytree.JSONOptions{IETF: ietf, Redact: true, Indent: "  "}), nil
}

// EmitJSONWithSecrets is EmitJSON without redaction: only for persisting the
// config and for the engines, never for a read path.
func EmitJSONWithSecrets(root *gen.Device, ietf bool) ([]byte, error) {
	return emitJSON(root, ietf, "  ")
}

func emitJSON(root *gen.Device, ietf bool, indent string) ([]byte, error) {
	return encodeJSON(root, ytree.JSONOptions{IETF: ietf, Indent: indent}), nil
}

func encodeJSON(root *gen.Device, o ytree.JSONOptions) []byte {
	if root == nil {
		root = &gen.Device{}
	}
	o.ConfigOnly = true
	return ytree.AppendJSON(make([]byte, 0, 4096), ytree.RootNode(root), o)
}

package gnmi

import (
	"fmt"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

// view is one consistent read of both trees: the running config (redacted)
// and the operational state.
type view struct {
	cfg   *gen.Device
	state *gen.Device
}

// view returns the current config (pre-shared keys redacted, cached per
// commit) and state.
func (s *Server) view() view {
	snap := s.cfg.Store.Running()
	rc := s.redacted.Load()
	if rc == nil || rc.id != snap.ID {
		rc = &redactedConfig{id: snap.ID, root: ytree.Redact(snap.Root)}
		s.redacted.Store(rc)
	}
	return view{cfg: rc.root, state: s.cfg.State.Snapshot().Root}
}

// trees returns the roots a data type reads from.
func (v view) trees(t gpb.GetRequest_DataType) []*gen.Device {
	switch t {
	case gpb.GetRequest_CONFIG:
		return []*gen.Device{v.cfg}
	case gpb.GetRequest_STATE, gpb.GetRequest_OPERATIONAL:
		return []*gen.Device{v.state}
	}
	return []*gen.Device{v.cfg, v.state}
}

// keepLeaf filters leaves by data type: OPERATIONAL drops state leaves that
// merely mirror config (OpenConfig's applied-config copies and list keys).
func keepLeaf(t gpb.GetRequest_DataType, e *yang.Entry) bool {
	if t != gpb.GetRequest_OPERATIONAL {
		return true
	}
	return ytree.IsState(e) && !ytree.MirrorsConfig(e)
}

// leaves returns every leaf matching pattern in the trees of data type t,
// secrets redacted, config first.
func (v view) leaves(pattern []*gpb.PathElem, t gpb.GetRequest_DataType) ([]ytree.Leaf, error) {
	var out []ytree.Leaf
	seen := map[string]bool{}
	for _, root := range v.trees(t) {
		nodes, err := ytree.Match(root, pattern)
		if err != nil {
			return nil, err
		}
		for _, n := range nodes {
			err := ytree.Leaves(n, func(l ytree.Leaf) error {
				if !keepLeaf(t, l.Schema) {
					return nil
				}
				// List keys exist in both trees; report them once.
				k := ytree.PathString(l.Path)
				if seen[k] {
					return nil
				}
				seen[k] = true
				out = append(out, l)
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// node is one node of a Get answer: a struct, or a leaf value.
type node struct {
	path   []*gpb.PathElem
	schema *yang.Entry
	gs     ygot.GoStruct
	leaf   *gpb.TypedValue
}

// nodes returns the nodes matching pattern in the trees of data type t,
// merging the config and state parts of a node present in both.
func (v view) nodes(pattern []*gpb.PathElem, t gpb.GetRequest_DataType) ([]node, error) {
	var out []node
	index := map[string]int{}
	for _, root := range v.trees(t) {
		ns, err := ytree.Match(root, pattern)
		if err != nil {
			return nil, err
		}
		for _, n := range ns {
			nd := node{path: n.Path, schema: n.Schema}
			if n.IsLeaf() {
				tv, err := ytree.TypedValue(n.Value)
				if err != nil {
					return nil, err
				}
				nd.leaf = tv
			} else {
				nd.gs = n.Struct()
			}
			k := ytree.PathString(n.Path)
			i, dup := index[k]
			if !dup {
				index[k] = len(out)
				out = append(out, nd)
				continue
			}
			if out[i].gs != nil && nd.gs != nil {
				out[i].gs = ytree.Overlay(out[i].gs, nd.gs)
			}
		}
	}
	return out, nil
}

// nodeJSON renders a node as JSON (RFC 7951 if ietf).
func nodeJSON(n node, ietf bool) ([]byte, error) {
	if n.gs == nil {
		return ytree.TypedValueJSON(n.leaf, n.schema, ietf)
	}
	return ytree.AppendJSON(nil, ytree.NodeOf(n.path, n.gs), ytree.JSONOptions{IETF: ietf}), nil
}

// encodeLeaf turns a leaf's scalar value into the TypedValue of the
// requested encoding: scalar for PROTO, json_val or json_ietf_val for JSON.
func encodeLeaf(tv *gpb.TypedValue, e *yang.Entry, enc gpb.Encoding) (*gpb.TypedValue, error) {
	switch enc {
	case gpb.Encoding_PROTO:
		return tv, nil
	case gpb.Encoding_JSON:
		b, err := ytree.TypedValueJSON(tv, e, false)
		return &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: b}}, err
	case gpb.Encoding_JSON_IETF:
		b, err := ytree.TypedValueJSON(tv, e, true)
		return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: b}}, err
	}
	return nil, fmt.Errorf("unsupported encoding %v", enc)
}

// checkEncoding accepts the encodings the server supports.
func checkEncoding(enc gpb.Encoding) error {
	switch enc {
	case gpb.Encoding_JSON, gpb.Encoding_JSON_IETF, gpb.Encoding_PROTO:
		return nil
	}
	return fmt.Errorf("encoding %v is not supported: use JSON, JSON_IETF or PROTO", enc)
}

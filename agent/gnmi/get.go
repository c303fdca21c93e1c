package gnmi

import (
	"context"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"google.golang.org/grpc/codes"

	"github.com/spiagent/spiagent/ytree"
)

// Get answers each path with one notification. JSON and JSON_IETF give one
// update per matching node, with the node's subtree as JSON; PROTO, and
// paths with "..." or the OPERATIONAL type, give one update per leaf with
// scalar values.
func (s *Server) Get(ctx context.Context, req *gpb.GetRequest) (*gpb.GetResponse, error) {
	if err := checkEncoding(req.GetEncoding()); err != nil {
		return nil, errStatus(codes.Unimplemented, "%v", err)
	}
	if err := checkModels(req.GetUseModels()); err != nil {
		return nil, err
	}
	if err := checkReadExtensions(req.GetExtension()); err != nil {
		return nil, err
	}
	if _, ok := gpb.GetRequest_DataType_name[int32(req.GetType())]; !ok {
		return nil, errStatus(codes.InvalidArgument, "unknown data type %d", req.GetType())
	}
	paths := req.GetPath()
	if len(paths) == 0 {
		paths = []*gpb.Path{{}} // the prefix alone, or the whole tree
	}
	type q struct {
		elems []*gpb.PathElem
		shown string
	}
	qs := make([]q, 0, len(paths))
	for _, p := range paths {
		elems, err := fullPath(req.GetPrefix(), p)
		if err != nil {
			return nil, errStatus(codes.InvalidArgument, "%v", err)
		}
		if _, err := ytree.Resolve(elems); err != nil {
			return nil, errStatus(codes.InvalidArgument, "path %s: %v", showPath(req.GetPrefix(), p), err)
		}
		qs = append(qs, q{elems: elems, shown: showPath(req.GetPrefix(), p)})
	}
	v := s.view()
	ts := s.now()
	resp := &gpb.GetResponse{}
	for _, q := range qs {
		n, err := s.getOne(v, q.elems, req.GetType(), req.GetEncoding(), ts)
		if err != nil {
			return nil, errStatus(codes.Internal, "path %s: %v", q.shown, err)
		}
		if len(n.GetUpdate()) == 0 {
			return nil, errStatus(codes.NotFound, "path %s: no %s data", q.shown, dataTypeName(req.GetType()))
		}
		if t := req.GetPrefix().GetTarget(); t != "" {
			n.Prefix = &gpb.Path{Target: t}
		}
		resp.Notification = append(resp.Notification, n)
	}
	return resp, nil
}

func dataTypeName(t gpb.GetRequest_DataType) string {
	switch t {
	case gpb.GetRequest_CONFIG:
		return "config"
	case gpb.GetRequest_STATE:
		return "state"
	case gpb.GetRequest_OPERATIONAL:
		return "operational"
	}
	return ""
}

// getOne builds the notification for one path.
func (s *Server) getOne(v view, elems []*gpb.PathElem, t gpb.GetRequest_DataType, enc gpb.Encoding, ts int64) (*gpb.Notification, error) {
	n := &gpb.Notification{Timestamp: ts}
	if enc == gpb.Encoding_PROTO || hasAnyDepth(elems) || t == gpb.GetRequest_OPERATIONAL {
		leaves, err := v.leaves(elems, t)
		if err != nil {
			return nil, err
		}
		for _, l := range leaves {
			val, err := encodeLeaf(l.Val, l.Schema, enc)
			if err != nil {
				return nil, err
			}
			n.Update = append(n.Update, &gpb.Update{Path: &gpb.Path{Elem: l.Path}, Val: val})
		}
		return n, nil
	}
	nodes, err := v.nodes(elems, t)
	if err != nil {
		return nil, err
	}
	for _, nd := range nodes {
		b, err := nodeJSON(nd, enc == gpb.Encoding_JSON_IETF)
		if err != nil {
			return nil, err
		}
		val := &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: b}}
		if enc == gpb.Encoding_JSON_IETF {
			val = &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: b}}
		}
		n.Update = append(n.Update, &gpb.Update{Path: &gpb.Path{Elem: nd.path}, Val: val})
	}
	return n, nil
}

// checkModels accepts use_models naming this server's modules only.
func checkModels(ms []*gpb.ModelData) error {
	for _, m := range ms {
		if m.GetName() != ytree.Module && m.GetName() != "spiagent-types" {
			return errStatus(codes.InvalidArgument, "use_models: unknown model %q", m.GetName())
		}
	}
	return nil
}

// checkReadExtensions refuses extensions that would change what a Get or
// Subscribe means (history); others are ignored.
func checkReadExtensions(exts []*gnmi_ext.Extension) error {
	for _, e := range exts {
		switch e.GetExt().(type) {
		case *gnmi_ext.Extension_History:
			return errStatus(codes.Unimplemented, "the history extension is not supported")
		case *gnmi_ext.Extension_Commit:
			return errStatus(codes.InvalidArgument, "the commit extension belongs on Set")
		}
	}
	return nil
}

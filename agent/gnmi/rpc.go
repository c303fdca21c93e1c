package gnmi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/spiagent/spiagent/ytree"
)

// The model's RPC clear-crypto-sa, exposed the way SR Linux exposes its
// tools tree: a Set update (or replace) whose path is the RPC's name,
//
//	/spiagent-crypto:clear-crypto-sa   (or /clear-crypto-sa, origin "" or spiagent-crypto)
//
// with the RPC's input as a JSON object, e.g. {"peer": "192.0.2.2",
// "isakmp": true}; an empty object clears every IPsec SA. It is not a
// config change: nothing is committed, persisted or put in the history.
// The output is returned in the response trailer as
// spiagent-ipsec-sas-cleared and spiagent-ike-sas-cleared.
const (
	RPCClearCryptoSA     = "clear-crypto-sa"
	TrailerIPsecSAsClear = "spiagent-ipsec-sas-cleared"
	TrailerIKESAsClear   = "spiagent-ike-sas-cleared"
)

// isRPC reports whether any operation of req targets the RPC's path.
func isRPC(req *gpb.SetRequest) bool {
	check := func(p *gpb.Path) bool {
		elems, err := fullPath(req.GetPrefix(), p)
		return err == nil && len(elems) >= 1 && elems[0].GetName() == RPCClearCryptoSA
	}
	for _, p := range req.GetDelete() {
		if check(p) {
			return true
		}
	}
	for _, us := range [][]*gpb.Update{req.GetReplace(), req.GetUpdate(), req.GetUnionReplace()} {
		for _, u := range us {
			if check(u.GetPath()) {
				return true
			}
		}
	}
	return false
}

// runClearRPC validates and dispatches a clear-crypto-sa request.
func (s *Server) runClearRPC(ctx context.Context, req *gpb.SetRequest) (*gpb.SetResponse, error) {
	ups := append(append([]*gpb.Update{}, req.GetUpdate()...), req.GetReplace()...)
	if len(ups) != 1 || len(req.GetDelete()) > 0 || len(req.GetUnionReplace()) > 0 || len(req.GetUpdate())+len(req.GetReplace()) != 1 {
		return nil, errStatus(codes.InvalidArgument, "%s must be the only operation of its Set, as one update", RPCClearCryptoSA)
	}
	u := ups[0]
	elems, _ := fullPath(req.GetPrefix(), u.GetPath())
	if len(elems) != 1 || len(elems[0].GetKey()) > 0 {
		return nil, errStatus(codes.InvalidArgument, "update %s: the RPC's path is /%s, with its input as the JSON value", showPath(req.GetPrefix(), u.GetPath()), RPCClearCryptoSA)
	}
	in, err := parseClearInput(u.GetVal())
	if err != nil {
		return nil, errStatus(codes.InvalidArgument, "update /%s: %v", RPCClearCryptoSA, err)
	}
	if s.cfg.Ops == nil {
		return nil, errStatus(codes.Unavailable, "%s: no IPsec engine is attached to this agent", RPCClearCryptoSA)
	}
	p := principalFrom(ctx)
	res, err := s.cfg.Ops.ClearSA(ctx, in)
	if err != nil {
		s.log.Warn("clear crypto sa failed", "user", p.user, "peer", in.Peer, "crypto_map", in.CryptoMap, "err", err)
		return nil, errStatus(codes.Aborted, "%s: %v", RPCClearCryptoSA, err)
	}
	s.log.Info("clear crypto sa", "user", p.user, "peer", in.Peer, "crypto_map", in.CryptoMap, "isakmp", in.ISAKMP,
		"no_notify", in.NoNotify, "ipsec_sas", res.IPsecSAsCleared, "ike_sas", res.IKESAsCleared)
	_ = grpc.SetTrailer(ctx, metadata.Pairs(
		TrailerIPsecSAsClear, strconv.FormatUint(uint64(res.IPsecSAsCleared), 10),
		TrailerIKESAsClear, strconv.FormatUint(uint64(res.IKESAsCleared), 10)))
	return &gpb.SetResponse{
		Prefix:    req.GetPrefix(),
		Response:  []*gpb.UpdateResult{{Path: u.GetPath(), Op: updateOp(req)}},
		Timestamp: s.now(),
	}, nil
}

func updateOp(req *gpb.SetRequest) gpb.UpdateResult_Operation {
	if len(req.GetReplace()) > 0 {
		return gpb.UpdateResult_REPLACE
	}
	return gpb.UpdateResult_UPDATE
}

// parseClearInput checks the RPC input against the model's input
// statement: peer (ipv4-address), crypto-map (string), isakmp and
// no-notify (boolean, default false). The object may be wrapped as
// {"input": {...}}, and names may carry the module prefix.
func parseClearInput(v *gpb.TypedValue) (ClearRequest, error) {
	var raw []byte
	switch x := v.GetValue().(type) {
	case *gpb.TypedValue_JsonVal:
		raw = x.JsonVal
	case *gpb.TypedValue_JsonIetfVal:
		raw = x.JsonIetfVal
	default:
		return ClearRequest{}, fmt.Errorf("the input must be a JSON object (json_val or json_ietf_val)")
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return ClearRequest{}, fmt.Errorf("input is not a JSON object: %v", err)
	}
	if len(obj) == 1 {
		for k, inner := range obj {
			if name, err := ytree.StripModule(k); err == nil && name == "input" {
				obj = nil
				if err := json.Unmarshal(inner, &obj); err != nil {
					return ClearRequest{}, fmt.Errorf("input is not a JSON object: %v", err)
				}
			}
		}
	}
	var in ClearRequest
	for k, val := range obj {
		name, err := ytree.StripModule(k)
		if err != nil {
			return in, err
		}
		switch name {
		case "peer":
			var s string
			if err := json.Unmarshal(val, &s); err != nil {
				return in, fmt.Errorf("peer: want an IPv4 address string")
			}
			a, err := netip.ParseAddr(s)
			if err != nil || !a.Is4() {
				return in, fmt.Errorf("peer: %q is not an IPv4 address", s)
			}
			in.Peer = a.String()
		case "crypto-map":
			if err := json.Unmarshal(val, &in.CryptoMap); err != nil || in.CryptoMap == "" || len(in.CryptoMap) > 64 {
				return in, fmt.Errorf("crypto-map: want a name of 1 to 64 characters")
			}
		case "isakmp":
			if err := json.Unmarshal(val, &in.ISAKMP); err != nil {
				return in, fmt.Errorf("isakmp: want true or false")
			}
		case "no-notify":
			if err := json.Unmarshal(val, &in.NoNotify); err != nil {
				return in, fmt.Errorf("no-notify: want true or false")
			}
		default:
			return in, fmt.Errorf("unknown input %q (want peer, crypto-map, isakmp, no-notify)", k)
		}
	}
	return in, nil
}

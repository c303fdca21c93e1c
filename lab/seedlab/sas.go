package seedlab

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// SAState is one row of a router's /crypto/ipsec/sas state (gNMI Get).
type SAState struct {
	Dst, Protocol, Direction, Mode string
	SPI                            uint32
	UDPEncapsulated                bool
	Packets, Bytes                 uint64
	LifetimeLeftKB                 uint64
}

// IPsecSAs reads the router's IPsec SA table over gNMI.
func (r *Router) IPsecSAs(ctx context.Context) ([]SAState, error) {
	c, err := r.client()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.Get(cctx, &gpb.GetRequest{Path: []*gpb.Path{path("crypto", "ipsec", "sas")},
		Type: gpb.GetRequest_STATE, Encoding: gpb.Encoding_JSON_IETF})
	if err != nil {
		return nil, fmt.Errorf("%s: gNMI Get: %w", r.Name, err)
	}
	var out []SAState
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if _, ok := x["direction"]; ok {
				out = append(out, saState(x))
				return
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			var v any
			if err := json.Unmarshal(u.GetVal().GetJsonIetfVal(), &v); err != nil {
				return nil, err
			}
			walk(v)
		}
	}
	return out, nil
}

// saState reads one state container (RFC 7951: 64-bit numbers are strings,
// identities may carry a module prefix).
func saState(m map[string]any) SAState {
	str := func(k string) string {
		s, _ := m[k].(string)
		return s[strings.LastIndex(s, ":")+1:]
	}
	num := func(k string) uint64 {
		switch x := m[k].(type) {
		case float64:
			return uint64(x)
		case string:
			n, _ := strconv.ParseUint(x, 10, 64)
			return n
		}
		return 0
	}
	enc, _ := m["udp-encapsulated"].(bool)
	return SAState{Dst: str("destination-address"), Protocol: str("protocol"), Direction: str("direction"), Mode: str("mode"),
		SPI: uint32(num("spi")), UDPEncapsulated: enc, Packets: num("packets"), Bytes: num("bytes"),
		LifetimeLeftKB: num("lifetime-remaining-kilobytes")}
}

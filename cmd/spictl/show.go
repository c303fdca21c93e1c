package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/spiagent/spiagent/gen"
)

// getJSON reads one path as JSON_IETF; found is false on NotFound.
func getJSON(ctx context.Context, c gpb.GNMIClient, p string, t gpb.GetRequest_DataType) (b []byte, found bool, err error) {
	gp, err := ygot.StringToStructuredPath(p)
	if err != nil {
		return nil, false, err
	}
	resp, err := c.Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{gp}, Type: t, Encoding: gpb.Encoding_JSON_IETF})
	if status.Code(err) == codes.NotFound {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			return u.GetVal().GetJsonIetfVal(), true, nil
		}
	}
	return nil, false, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func enumName(e ygot.GoEnum) string {
	if e == nil {
		return "-"
	}
	s, err := ygot.EnumName(e)
	if err != nil || s == "UNSET" {
		return "-"
	}
	return s
}

// showISAKMP prints the IKE SAs like IOS's show crypto isakmp sa.
func showISAKMP(ctx context.Context, c gpb.GNMIClient, w io.Writer) error {
	b, found, err := getJSON(ctx, c, "/crypto/isakmp/sas", gpb.GetRequest_STATE)
	if err != nil {
		return err
	}
	sas := &gen.SpiagentCrypto_Crypto_Isakmp_Sas{}
	if found {
		if err := gen.Unmarshal(b, sas); err != nil {
			return fmt.Errorf("decode IKE SAs: %w", err)
		}
	}
	ids := slices.Sorted(maps.Keys(sas.Sa))
	fmt.Fprintln(w, "IPv4 Crypto ISAKMP SA")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "dst\tsrc\tstate\tconn-id\trole\tencr\thash\tgroup\tlifetime-left")
	for _, id := range ids {
		s := sas.Sa[id].GetState()
		left := "-"
		if s.LifetimeRemaining != nil {
			left = fmt.Sprintf("%ds", s.GetLifetimeRemaining())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", orDash(s.GetRemoteAddress()), orDash(s.GetLocalAddress()),
			enumName(s.Status), id, enumName(s.Role), enumName(s.Encryption), enumName(s.Hash), enumName(s.Group), left)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ids) == 0 {
		fmt.Fprintln(w, "(no IKE SAs)")
	}
	return nil
}

// saPair is the inbound and outbound SA of one peer, crypto map entry and
// protocol.
type saPair struct {
	peer, cmap, proto string
	in, out           *gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State
}

// showIPsec prints one row per SA pair: peer, crypto map, SPIs in/out,
// transform, packet counters and lifetime left.
func showIPsec(ctx context.Context, c gpb.GNMIClient, w io.Writer) error {
	b, found, err := getJSON(ctx, c, "/crypto/ipsec/sas", gpb.GetRequest_STATE)
	if err != nil {
		return err
	}
	sas := &gen.SpiagentCrypto_Crypto_Ipsec_Sas{}
	if found {
		if err := gen.Unmarshal(b, sas); err != nil {
			return fmt.Errorf("decode IPsec SAs: %w", err)
		}
	}
	pairs := map[string]*saPair{}
	var keys []string
	for _, sa := range sas.Sa {
		s := sa.GetState()
		if s == nil {
			continue
		}
		k := fmt.Sprintf("%s|%s|%d|%s|%s", s.GetPeer(), s.GetCryptoMap(), s.GetCryptoMapSequence(), enumName(s.Protocol), s.GetTransform())
		p := pairs[k]
		if p == nil {
			p = &saPair{peer: s.GetPeer(), cmap: s.GetCryptoMap(), proto: enumName(s.Protocol)}
			if s.CryptoMapSequence != nil {
				p.cmap = fmt.Sprintf("%s %d", s.GetCryptoMap(), s.GetCryptoMapSequence())
			}
			pairs[k] = p
			keys = append(keys, k)
		}
		if s.Direction == gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State_Direction_inbound {
			p.in = s
		} else {
			p.out = s
		}
	}
	slices.Sort(keys)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "peer\tcrypto map\tproto\tspi in\tspi out\ttransform\tpkts decaps\tpkts encaps\terrors\tlifetime left")
	for _, k := range keys {
		p := pairs[k]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(p.peer), orDash(p.cmap), p.proto,
			spi(p.in), spi(p.out), transform(p), packets(p.in), packets(p.out), errorsOf(p), lifetime(p))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(keys) == 0 {
		fmt.Fprintln(w, "(no IPsec SAs)")
	}
	return nil
}

func spi(s *gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State) string {
	if s == nil || s.Spi == nil {
		return "-"
	}
	return fmt.Sprintf("0x%08X", s.GetSpi())
}

func packets(s *gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State) string {
	if s == nil || s.Packets == nil {
		return "-"
	}
	return fmt.Sprint(s.GetPackets())
}

func transform(p *saPair) string {
	for _, s := range []*gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State{p.out, p.in} {
		if s != nil && s.GetTransform() != "" {
			return s.GetTransform()
		}
	}
	return "-"
}

func errorsOf(p *saPair) string {
	var auth, replay uint64
	for _, s := range []*gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State{p.in, p.out} {
		if s != nil {
			auth += s.GetAuthFailures()
			replay += s.GetReplayErrors()
		}
	}
	return fmt.Sprintf("auth %d replay %d", auth, replay)
}

// lifetime is the shorter remaining lifetime of the pair.
func lifetime(p *saPair) string {
	var secs []uint32
	var kbs []uint64
	for _, s := range []*gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State{p.in, p.out} {
		if s != nil && s.LifetimeRemainingSeconds != nil {
			secs = append(secs, s.GetLifetimeRemainingSeconds())
		}
		if s != nil && s.LifetimeRemainingKilobytes != nil {
			kbs = append(kbs, s.GetLifetimeRemainingKilobytes())
		}
	}
	out := "-"
	if len(secs) > 0 {
		out = fmt.Sprintf("%ds", min(secs[0], secs[len(secs)-1]))
	}
	if len(kbs) > 0 {
		out += fmt.Sprintf("/%dKB", min(kbs[0], kbs[len(kbs)-1]))
	}
	return out
}

// showRunning prints the running config as indented JSON_IETF; the agent
// redacts the pre-shared keys.
func showRunning(ctx context.Context, c gpb.GNMIClient, w io.Writer) error {
	b, found, err := getJSON(ctx, c, "/", gpb.GetRequest_CONFIG)
	if err != nil {
		return err
	}
	if !found {
		b = []byte("{}")
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("bad JSON from the agent: %w", err)
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// clearCmd runs the clear-crypto-sa RPC (a Set on /clear-crypto-sa).
func clearCmd(input map[string]any) command {
	return func(ctx context.Context, c gpb.GNMIClient, w io.Writer) error {
		b, err := json.Marshal(input)
		if err != nil {
			return err
		}
		var trailer metadata.MD
		_, err = c.Set(ctx, &gpb.SetRequest{Update: []*gpb.Update{{
			Path: &gpb.Path{Origin: "spiagent-crypto", Elem: []*gpb.PathElem{{Name: "clear-crypto-sa"}}},
			Val:  &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: b}},
		}}}, grpc.Trailer(&trailer))
		if err != nil {
			return err
		}
		ipsec, ike := first(trailer, "spiagent-ipsec-sas-cleared"), first(trailer, "spiagent-ike-sas-cleared")
		fmt.Fprintf(w, "cleared %s IPsec SA(s), %s IKE SA(s)\n", ipsec, ike)
		return nil
	}
}

func first(md metadata.MD, k string) string {
	if v := md.Get(k); len(v) > 0 {
		return v[0]
	}
	return "?"
}

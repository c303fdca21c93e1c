package seedlab

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net"
	"strconv"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/spiagent/spiagent/ike/wire"
	"github.com/spiagent/spiagent/lab/netlab"
)

// ipsecState reads a router's IPsec and IKE SA tables as decoded JSON.
func ipsecState(ctx context.Context, t *testing.T, r *Router) (outSPIs []uint32, cookies [][2]string) {
	t.Helper()
	c, err := r.client()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{path("crypto")}, Type: gpb.GetRequest_STATE, Encoding: gpb.Encoding_JSON_IETF})
	if err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if dir, ok := x["direction"]; ok && dir == "outbound" && x["protocol"] == "esp" {
				n, _ := strconv.ParseUint(jsonNum(x["spi"]), 10, 32)
				outSPIs = append(outSPIs, uint32(n))
			}
			if ic, ok := x["initiator-cookie"].(string); ok {
				cookies = append(cookies, [2]string{ic, x["responder-cookie"].(string)})
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
				t.Fatal(err)
			}
			walk(v)
		}
	}
	return outSPIs, cookies
}

func jsonNum(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatUint(uint64(x), 10)
	case string:
		return x
	}
	return ""
}

// TestForgedInvalidSPINotify: an unauthenticated INVALID-SPI naming
// routerA's live outbound SPI, in plaintext with and without the real IKE
// SA's cookies, deletes nothing and is counted.
func TestForgedInvalidSPINotify(t *testing.T) {
	l := newLab(t, "e2x")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	forge := func(ctx context.Context) error {
		spis, cookies := ipsecState(ctx, t, l.A)
		if len(spis) == 0 || len(cookies) == 0 {
			t.Fatalf("routerA has no outbound ESP SA or IKE SA to forge against (spis %v, cookies %v)", spis, cookies)
		}
		var conn *net.UDPConn
		if err := netlab.InNS(l.Topo.RouterB, func() error {
			var err error
			conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("192.0.2.2")})
			return err
		}); err != nil {
			return err
		}
		defer conn.Close()
		spi := binary.BigEndian.AppendUint32(nil, spis[0])
		var hdrs []wire.Header
		var random wire.Header
		rand.Read(random.ICookie[:])
		rand.Read(random.RCookie[:])
		hdrs = append(hdrs, random)
		var real wire.Header
		ic, _ := hex.DecodeString(cookies[0][0])
		rc, _ := hex.DecodeString(cookies[0][1])
		copy(real.ICookie[:], ic)
		copy(real.RCookie[:], rc)
		hdrs = append(hdrs, real)
		for _, h := range hdrs {
			h.Exchange = wire.ExchangeInformational
			var mid [4]byte
			rand.Read(mid[:])
			h.MessageID = binary.BigEndian.Uint32(mid[:])
			n := wire.Notify{DOI: 1, Protocol: wire.ProtoESP, Type: wire.NotifyInvalidSPI, SPI: spi}
			var b wire.Builder
			b.Add(wire.PayloadNotify, n.Encode())
			if _, err := conn.WriteToUDP(b.Message(h), &net.UDPAddr{IP: net.ParseIP("192.0.2.1"), Port: 500}); err != nil {
				return err
			}
		}
		time.Sleep(time.Second)
		after, _ := ipsecState(ctx, t, l.A)
		if len(after) == 0 || after[0] != spis[0] {
			t.Errorf("routerA's outbound SA changed after forged notifies: before %v, after %v", spis, after)
		}
		return nil
	}
	res, err := l.Run(ctx, Scenario{Recovery: true, Watch: 3 * time.Second, Break: forge, BreakSay: "a forged, unauthenticated INVALID-SPI for routerA's live SA arrives from routerB's address.", Say: Narrator{W: testWriter{t}}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Recovered || res.Lost > 0 {
		t.Errorf("forged notifies disturbed the tunnel: recovered=%v lost=%d", res.Recovered, res.Lost)
	}
	ca, err := l.A.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ca["notifies-authenticated"] != 0 || ca["sas-deleted"] != 0 {
		t.Errorf("routerA counters %v: a forged notify was acted on", ca)
	}
	t.Logf("routerA counters after the forgeries: %v", ca)
}

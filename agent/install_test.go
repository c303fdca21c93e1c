package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike"
	"github.com/spiagent/spiagent/ipsec"
	"github.com/spiagent/spiagent/ipsec/userspace"
)

func testChild(id uint64, spiIn, spiOut uint32, withOut bool) ike.ChildSA {
	sa := func(spi uint32) ike.SA {
		return ike.SA{Proto: alg.ESP, SPI: spi, Cipher: alg.AES128, EncKey: make(alg.Key, 16), Integ: alg.HMACSHA1, IntegKey: make(alg.Key, 20)}
	}
	c := ike.ChildSA{ID: id, Tag: "m/10@wan0#10", ReqID: 7, Local: local, Remote: peer, Mode: alg.Tunnel,
		LocalTS:  ike.Selector{Prefix: netip.MustParsePrefix("198.51.100.0/24")},
		RemoteTS: ike.Selector{Prefix: netip.MustParsePrefix("203.0.113.0/24")},
		In:       []ike.SA{sa(spiIn)}, Lifetime: time.Hour}
	if withOut {
		c.Out = []ike.SA{sa(spiOut)}
	}
	return c
}

// TestApplyDataplanePrepareInstallDelete: a responder's prepared inbound SA
// goes into the dataplane at once; the Install of the same bundle adds the
// outbound SA without touching the inbound one; a prepared bundle that is
// never installed is removed by its Delete, and so is an installed one the
// loop has not taken yet.
func TestApplyDataplanePrepareInstallDelete(t *testing.T) {
	dp, err := userspace.New(userspace.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	a := &Agent{dp: dp, log: slog.New(slog.NewTextHandler(io.Discard, nil)), prepared: map[uint64][]ipsec.SAKey{}, installed: map[uint64]installResult{}}
	ctx := context.Background()
	in := ipsec.SAKey{Dst: local, Proto: alg.ESP, SPI: 0x1001}
	out := ipsec.SAKey{Dst: peer, Proto: alg.ESP, SPI: 0x2001}
	has := func(k ipsec.SAKey) bool { _, err := dp.Counters(ctx, k); return err == nil }

	a.applyDataplane(ike.Output{Prepare: []ike.ChildSA{testChild(1, 0x1001, 0x2001, false)}})
	if !has(in) || has(out) || len(a.installed) != 0 {
		t.Fatalf("after Prepare: inbound %v outbound %v, installed %v: want the inbound SA only", has(in), has(out), a.installed)
	}
	a.applyDataplane(ike.Output{Install: []ike.ChildSA{testChild(1, 0x1001, 0x2001, true)}})
	r, ok := a.takeInstalled(1)
	if !ok || r.err != nil || len(r.keys) != 2 || !has(in) || !has(out) || len(a.prepared) != 0 {
		t.Fatalf("after Install: %+v %v, inbound %v outbound %v", r, ok, has(in), has(out))
	}
	if _, ok := a.takeInstalled(1); ok {
		t.Fatal("an Install's result taken twice")
	}

	// Prepared, then the third message never came.
	in2 := ipsec.SAKey{Dst: local, Proto: alg.ESP, SPI: 0x1002}
	a.applyDataplane(ike.Output{Prepare: []ike.ChildSA{testChild(2, 0x1002, 0x2002, false)}})
	a.applyDataplane(ike.Output{Delete: []ike.ChildDelete{{ChildSA: testChild(2, 0x1002, 0x2002, false), Reason: ike.ReasonLocal}}})
	if _, err := dp.Counters(ctx, in2); !errors.Is(err, ipsec.ErrNotFound) || len(a.prepared) != 0 {
		t.Fatalf("prepared SA after its Delete: %v (prepared %v)", err, a.prepared)
	}

	// Installed, then deleted before the loop took it: its SAs go, and the
	// loop finds nothing to register.
	a.applyDataplane(ike.Output{Install: []ike.ChildSA{testChild(4, 0x1004, 0x2004, true)}})
	a.applyDataplane(ike.Output{Delete: []ike.ChildDelete{{ChildSA: testChild(4, 0x1004, 0x2004, true), Reason: ike.ReasonPeerDelete}}})
	if has(ipsec.SAKey{Dst: local, Proto: alg.ESP, SPI: 0x1004}) || has(ipsec.SAKey{Dst: peer, Proto: alg.ESP, SPI: 0x2004}) {
		t.Fatal("SAs of a bundle deleted before the loop took it are still installed")
	}
	if _, ok := a.takeInstalled(4); ok {
		t.Fatal("the loop would register a deleted bundle")
	}

	// A refused bundle leaves nothing behind.
	bad := testChild(3, 0x1003, 0x2003, true)
	bad.Out[0].EncKey = make(alg.Key, 5)
	a.applyDataplane(ike.Output{Install: []ike.ChildSA{bad}})
	if r, _ := a.takeInstalled(3); r.err == nil || has(ipsec.SAKey{Dst: local, Proto: alg.ESP, SPI: 0x1003}) {
		t.Fatalf("refused bundle: err %v, its inbound SA still there %v", r.err, has(ipsec.SAKey{Dst: local, Proto: alg.ESP, SPI: 0x1003}))
	}
}

package netconf

import (
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/agent/telemetry"
	"github.com/spiagent/spiagent/gen"
)

func TestGetConfigAndState(t *testing.T) {
	e := newEnv(t, nil)
	err := e.tel.Update(func(tx *telemetry.Tx) error {
		sa := &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa{
			DestinationAddress: ygot.String("192.0.2.1"), Protocol: gen.SpiagentTypes_IpsecProtocol_esp, Spi: ygot.Uint32(0x1234),
			State: &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State{
				DestinationAddress: ygot.String("192.0.2.1"), Protocol: gen.SpiagentTypes_IpsecProtocol_esp, Spi: ygot.Uint32(0x1234),
				Peer: ygot.String("192.0.2.2"), Packets: ygot.Uint64(42), CryptoMap: ygot.String("testtag1"),
			},
		}
		if err := tx.Replace(telemetry.IPsecSAPath("192.0.2.1", "esp", 0x1234), sa); err != nil {
			return err
		}
		return tx.Replace(telemetry.InvalidSPIStatePath(), &gen.SpiagentCrypto_Crypto_InvalidSpi_State{Received: ygot.Uint64(7)})
	})
	if err != nil {
		t.Fatal(err)
	}
	c := e.dial(roUser, roPass, true)
	r := c.rpc(`<get/>`)
	d := find(r, "data", "crypto")
	if d == nil {
		t.Fatalf("get: %s", dump(r))
	}
	sa := find(d, "ipsec", "sas", "sa")
	if sa == nil || find(sa, "state", "packets").text() != "42" || find(sa, "spi").text() != "4660" || find(sa, "protocol").text() != "esp" {
		t.Fatalf("IPsec SA state: %s", dump(r))
	}
	// Keys first, in key order.
	if got := sa.Kids[0].Name.Local + "," + sa.Kids[1].Name.Local + "," + sa.Kids[2].Name.Local; got != "destination-address,protocol,spi" {
		t.Errorf("SA children start %s", got)
	}
	if got := find(d, "invalid-spi", "state", "received"); got == nil || got.text() != "7" {
		t.Fatalf("invalid-spi counters: %s", dump(r))
	}
	// Config is there too, redacted.
	if k := find(d, "isakmp", "keys", "key", "config", "key"); k == nil || k.text() != "<redacted>" {
		t.Fatalf("config in get: %s", dump(r))
	}
	// A filter on state with a content match.
	r = c.rpc(`<get><filter type="subtree"><crypto xmlns="` + cryptoNS + `"><ipsec><sas><sa><state><peer>192.0.2.2</peer><packets/></state></sa></sas></ipsec></crypto></filter></get>`)
	st := find(r, "data", "crypto", "ipsec", "sas", "sa", "state")
	if st == nil || len(st.Kids) != 2 || find(st, "packets").text() != "42" {
		t.Fatalf("filtered get: %s", dump(r))
	}
	// get-config never shows state.
	if find(c.rpc(getRunning), "data", "crypto", "ipsec") != nil {
		t.Fatal("get-config shows state")
	}
}

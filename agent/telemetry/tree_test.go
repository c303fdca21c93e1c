package telemetry

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
	"github.com/spiagent/spiagent/ytree"
)

func ipsecSA(dst string, spi uint32, packets uint64) *gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa {
	return &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa{State: &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State{
		DestinationAddress: ygot.String(dst),
		Protocol:           gen.SpiagentTypes_IpsecProtocol_esp,
		Spi:                ygot.Uint32(spi),
		Packets:            ygot.Uint64(packets),
		Direction:          gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State_Direction_outbound,
	}}
}

// changeStrings renders a feed as "path=value" / "-path" lines.
func changeStrings(cs []Change) []string {
	var out []string
	for _, c := range cs {
		p := ytree.PathString(c.Path.GetElem())
		if c.Delete() {
			out = append(out, "-"+p)
			continue
		}
		out = append(out, p+"="+strings.TrimSpace(c.Val.String()))
	}
	return out
}

func TestUpdateFeedAndSnapshots(t *testing.T) {
	tr := New()
	sub := tr.Subscribe(10)
	defer sub.Close()

	if err := tr.Update(func(tx *Tx) error {
		if err := tx.PutIPsecSA(ipsecSA("192.0.2.1", 0x100, 1)); err != nil {
			return err
		}
		return tx.PutIPsecSA(ipsecSA("192.0.2.2", 0x200, 5))
	}); err != nil {
		t.Fatal(err)
	}
	first := tr.Snapshot()
	ev := <-sub.C
	got := strings.Join(changeStrings(ev.Changes), "\n")
	for _, w := range []string{
		`/crypto/ipsec/sas/sa[destination-address=192.0.2.2][protocol=esp][spi=512]/spi=uint_val:512`,
		`/crypto/ipsec/sas/sa[destination-address=192.0.2.2][protocol=esp][spi=512]/state/packets=uint_val:5`,
		`/crypto/ipsec/sas/sa[destination-address=192.0.2.1][protocol=esp][spi=256]/state/direction=string_val:"outbound"`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("first event lacks %s; got\n%s", w, got)
		}
	}
	p := IPsecSAPath("192.0.2.1", "esp", 0x100)
	n, ok := ytree.Lookup(first.Root, p.GetElem())
	if !ok {
		t.Fatalf("SA not found at %s", ytree.PathString(p.GetElem()))
	}
	sa := n.Struct().(*gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa)
	if sa.GetSpi() != 0x100 || sa.GetDestinationAddress() != "192.0.2.1" || sa.Protocol != gen.SpiagentTypes_IpsecProtocol_esp {
		t.Errorf("key leaves not set from the path: %+v", sa)
	}

	// A counter update and a delete.
	if err := tr.Update(func(tx *Tx) error {
		if err := tx.PutIPsecSA(ipsecSA("192.0.2.1", 0x100, 2)); err != nil {
			return err
		}
		return tx.Delete(IPsecSAPath("192.0.2.2", "esp", 0x200))
	}); err != nil {
		t.Fatal(err)
	}
	ev = <-sub.C
	want := []string{
		`/crypto/ipsec/sas/sa[destination-address=192.0.2.1][protocol=esp][spi=256]/state/packets=uint_val:2`,
		`-/crypto/ipsec/sas/sa[destination-address=192.0.2.2][protocol=esp][spi=512]`,
	}
	if d := cmp.Diff(want, changeStrings(ev.Changes)); d != "" {
		t.Errorf("feed (-want +got):\n%s", d)
	}
	// The first snapshot is untouched (structural sharing, no mutation).
	if got := len(first.Root.GetCrypto().GetIpsec().GetSas().Sa); got != 2 {
		t.Errorf("old snapshot has %d SAs, want 2", got)
	}
	n, _ = ytree.Lookup(first.Root, p.GetElem())
	if got := n.Struct().(*gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa).GetState().GetPackets(); got != 1 {
		t.Errorf("old snapshot packets = %d, want 1", got)
	}
	if got := len(tr.Snapshot().Root.GetCrypto().GetIpsec().GetSas().Sa); got != 1 {
		t.Errorf("new snapshot has %d SAs, want 1", got)
	}
}

func TestUpdateErrors(t *testing.T) {
	tests := []struct {
		desc    string
		fn      func(tx *Tx) error
		wantErr string
	}{
		{"config path", func(tx *Tx) error {
			return tx.Replace(&gpb.Path{Elem: elems("crypto", "isakmp", "config")}, &gen.SpiagentCrypto_Crypto_Isakmp_Config{})
		}, "is configuration, not state"},
		{"unknown path", func(tx *Tx) error {
			return tx.Replace(&gpb.Path{Elem: elems("crypto", "nope")}, &gen.SpiagentCrypto_Crypto_Isakmp_Config{})
		}, `no schema node "nope"`},
		{"wrong type", func(tx *Tx) error {
			return tx.Replace(InvalidSPIStatePath(), &gen.SpiagentCrypto_Crypto_Isakmp_Config{})
		}, "want *gen.SpiagentCrypto_Crypto_InvalidSpi_State"},
		{"bad key", func(tx *Tx) error {
			return tx.Replace(IPsecSAPath("192.0.2.1", "gre", 1), &gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa{})
		}, `"gre" is not a value`},
		{"fn error rolls back", func(tx *Tx) error {
			if err := tx.PutIPsecSA(ipsecSA("192.0.2.9", 9, 1)); err != nil {
				return err
			}
			return errors.New("boom")
		}, "boom"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			tr := New()
			err := tr.Update(tc.fn)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if tr.Snapshot().Root.GetCrypto() != nil {
				t.Errorf("failed update changed the tree")
			}
		})
	}
}

func TestSlowSubscriberDropped(t *testing.T) {
	tr := New()
	slow := tr.Subscribe(1)
	fast := tr.Subscribe(100)
	for i := 0; i < 5; i++ {
		i := i
		if err := tr.Update(func(tx *Tx) error {
			return tx.Replace(InvalidSPIStatePath(), &gen.SpiagentCrypto_Crypto_InvalidSpi_State{Received: ygot.Uint64(uint64(i + 1))})
		}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for range slow.C {
		n++
	}
	if n != 1 || !errors.Is(slow.Err(), ErrOverflow) {
		t.Errorf("slow subscriber got %d events, err %v; want 1, ErrOverflow", n, slow.Err())
	}
	if got := len(fast.C); got != 5 {
		t.Errorf("fast subscriber has %d events, want 5", got)
	}
	fast.Close()
	if fast.Err() != nil {
		t.Errorf("closed subscription err = %v", fast.Err())
	}
}

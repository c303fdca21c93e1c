package telemetry

import (
	"fmt"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/spiagent/spiagent/gen"
)

func elems(names ...string) []*gpb.PathElem {
	out := make([]*gpb.PathElem, len(names))
	for i, n := range names {
		out[i] = &gpb.PathElem{Name: n}
	}
	return out
}

// IKESAPath is /crypto/isakmp/sas/sa[conn-id=ID].
func IKESAPath(connID uint32) *gpb.Path {
	p := elems("crypto", "isakmp", "sas", "sa")
	p[3].Key = map[string]string{"conn-id": fmt.Sprint(connID)}
	return &gpb.Path{Elem: p}
}

// IPsecSAPath is /crypto/ipsec/sas/sa[destination-address=D][protocol=P][spi=S];
// proto is "esp" or "ah".
func IPsecSAPath(dst, proto string, spi uint32) *gpb.Path {
	p := elems("crypto", "ipsec", "sas", "sa")
	p[3].Key = map[string]string{"destination-address": dst, "protocol": proto, "spi": fmt.Sprint(spi)}
	return &gpb.Path{Elem: p}
}

// InvalidSPIStatePath is /crypto/invalid-spi/state (the counters).
func InvalidSPIStatePath() *gpb.Path {
	return &gpb.Path{Elem: elems("crypto", "invalid-spi", "state")}
}

// LastInvalidSPIPath is /crypto/invalid-spi/last-event/state.
func LastInvalidSPIPath() *gpb.Path {
	return &gpb.Path{Elem: elems("crypto", "invalid-spi", "last-event", "state")}
}

// PutIKESA adds or replaces an IKE SA, keyed by its State.ConnId.
func (tx *Tx) PutIKESA(sa *gen.SpiagentCrypto_Crypto_Isakmp_Sas_Sa) error {
	if sa.GetState().ConnId == nil {
		return fmt.Errorf("telemetry: IKE SA without state/conn-id")
	}
	return tx.Replace(IKESAPath(sa.GetState().GetConnId()), sa)
}

// PutIPsecSA adds or replaces an IPsec SA, keyed by its state's destination
// address, protocol and SPI.
func (tx *Tx) PutIPsecSA(sa *gen.SpiagentCrypto_Crypto_Ipsec_Sas_Sa) error {
	st := sa.GetState()
	if st == nil || st.DestinationAddress == nil || st.Spi == nil || st.Protocol == 0 {
		return fmt.Errorf("telemetry: IPsec SA without state destination-address, protocol and spi")
	}
	proto := "esp"
	if st.Protocol == gen.SpiagentTypes_IpsecProtocol_ah {
		proto = "ah"
	}
	return tx.Replace(IPsecSAPath(st.GetDestinationAddress(), proto, st.GetSpi()), sa)
}

package agent

import (
	"errors"
	"net/netip"

	"github.com/spiagent/spiagent/gen"
)

func parseAddr(s string) (netip.Addr, error) { return netip.ParseAddr(s) }

func joinErrs(errs []error) error { return errors.Join(errs...) }

func policiesOf(c *gen.SpiagentCrypto_Crypto) map[uint16]*gen.SpiagentCrypto_Crypto_Isakmp_Policies_Policy {
	if p := c.GetIsakmp().GetPolicies(); p != nil {
		return p.Policy
	}
	return nil
}

func keysOf(c *gen.SpiagentCrypto_Crypto) map[string]*gen.SpiagentCrypto_Crypto_Isakmp_Keys_Key {
	if k := c.GetIsakmp().GetKeys(); k != nil {
		return k.Key
	}
	return nil
}

func interfacesOf(c *gen.SpiagentCrypto_Crypto) map[string]*gen.SpiagentCrypto_Crypto_Interfaces_Interface {
	if i := c.GetInterfaces(); i != nil {
		return i.Interface
	}
	return nil
}

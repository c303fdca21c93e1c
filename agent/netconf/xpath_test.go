package netconf

import "testing"

func TestXPathFilter(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(rwUser, rwPass, true)
	isOK(t, c.rpc(`<edit-config><target><running/></target><config><crypto xmlns="`+cryptoNS+`"><isakmp><policies>
		<policy><priority>20</priority><config><priority>20</priority><authentication>pre-share</authentication><encryption>aes-256</encryption></config></policy>
		</policies></isakmp></crypto></config></edit-config>`))
	get := func(sel string) *elem {
		return c.rpc(`<get-config><source><running/></source><filter type="xpath" xmlns:spc="` + cryptoNS + `" select="` + sel + `"/></get-config>`)
	}
	r := get(`/spc:crypto/spc:isakmp/spc:policies/spc:policy[spc:priority='20']/spc:config/spc:encryption`)
	ps := findAll(find(r, "data", "crypto", "isakmp", "policies"), "policy")
	if len(ps) != 1 || find(ps[0], "priority").text() != "20" || len(find(ps[0], "config").Kids) != 1 || find(ps[0], "config", "encryption").text() != "aes-256" {
		t.Fatalf("key predicate: %s", dump(r))
	}
	r = get(`/crypto/transform-sets | /crypto/interfaces/interface[name=&quot;wan0&quot;]/config/crypto-map`)
	cr := find(r, "data", "crypto")
	if cr == nil || len(cr.Kids) != 2 || find(cr, "transform-sets", "transform-set", "name").text() != "auth2" ||
		len(findAll(find(cr, "interfaces"), "interface")) != 1 || find(cr, "interfaces", "interface", "config", "crypto-map").text() != "testtag1" {
		t.Fatalf("union: %s", dump(r))
	}
	r = get(`/crypto/isakmp/policies/policy[config/encryption='aes-256']`)
	wantErr(t, r, "protocol", "invalid-value", "")
	for _, bad := range []string{`//policy`, `/crypto/*`, `crypto`, `/crypto/isakmp/policies/policy[1]`, `/crypto[`, `count(/crypto)`} {
		wantErr(t, get(bad), "protocol", "invalid-value", "")
	}
	wantErr(t, c.rpc(`<get><filter type="xpath"/></get>`), "protocol", "missing-attribute", "")
}

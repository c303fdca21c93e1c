package netconf

import (
	"errors"
	"testing"

	"github.com/spiagent/spiagent/store"
)

func TestXPathOf(t *testing.T) {
	for in, want := range map[string]string{
		"/crypto/isakmp/policies/policy[priority=1]/config/lifetime":               "/spc:crypto/spc:isakmp/spc:policies/spc:policy[spc:priority='1']/spc:config/spc:lifetime",
		"/crypto/ipsec/sas/sa[destination-address=192.0.2.1][protocol=esp][spi=5]": "/spc:crypto/spc:ipsec/spc:sas/spc:sa[spc:destination-address='192.0.2.1'][spc:protocol='esp'][spc:spi='5']",
		"/crypto/access-lists/access-list[name=a/b]/config":                        "/spc:crypto/spc:access-lists/spc:access-list[spc:name='a/b']/spc:config",
		"/crypto/x[name=it's]": `/spc:crypto/spc:x[spc:name="it's"]`,
	} {
		if got := xpathOf(in); got != want {
			t.Errorf("xpathOf(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestStoreErrors(t *testing.T) {
	errs := storeErrors(&store.ValidationError{Problems: []store.Problem{{Path: "/crypto/transform-sets/transform-set[name=x]", Reason: "bad"}, {Path: "/crypto", Reason: "worse"}}})
	if len(errs) != 2 || errs[0].Path != "/spc:crypto/spc:transform-sets/spc:transform-set[spc:name='x']" || errs[1].Message != "worse" || errs[0].Tag != "operation-failed" {
		t.Fatalf("validation: %v", errs)
	}
	errs = storeErrors(&store.OpError{Index: 0, Path: "/crypto/isakmp", Err: errors.New("nope")})
	if len(errs) != 1 || errs[0].Path != "/spc:crypto/spc:isakmp" || errs[0].Tag != "invalid-value" {
		t.Fatalf("op error: %v", errs)
	}
	errs = storeErrors(&store.RefusedError{Err: errors.New("engine says no")})
	if len(errs) != 1 || errs[0].Tag != "operation-failed" {
		t.Fatalf("refused: %v", errs)
	}
}

package netconf

import "testing"

func TestCopyDeleteConfig(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(rwUser, rwPass, true)
	cand := func() *elem { return c.rpc(`<get-config><source><candidate/></source></get-config>`) }
	running := dump(c.rpc(getRunning))

	// running -> candidate undoes candidate edits.
	isOK(t, c.rpc(editCandidate(newTS, "")))
	isOK(t, c.rpc(`<copy-config><target><candidate/></target><source><running/></source></copy-config>`))
	if got := dump(cand()); got != running {
		t.Fatalf("candidate after copy from running:\n%s\nwant\n%s", got, running)
	}
	// delete-config: running refused, candidate emptied.
	wantErr(t, c.rpc(`<delete-config><target><running/></target></delete-config>`), "protocol", "operation-not-supported", "")
	isOK(t, c.rpc(`<delete-config><target><candidate/></target></delete-config>`))
	if d := find(cand(), "data"); len(d.Kids) != 0 {
		t.Fatalf("candidate after delete-config: %s", dump(d))
	}
	isOK(t, c.rpc(`<validate><source><candidate/></source></validate>`)) // an empty config is valid
	isOK(t, c.rpc(`<discard-changes/>`))
	// Inline config -> candidate, then candidate -> running.
	full := `<crypto xmlns="` + cryptoNS + `"><transform-sets><transform-set><name>only</name><config><name>only</name><esp-encryption>esp-aes</esp-encryption></config></transform-set></transform-sets></crypto>`
	isOK(t, c.rpc(`<copy-config><target><candidate/></target><source><config>`+full+`</config></source></copy-config>`))
	if cr := find(cand(), "data", "crypto"); len(cr.Kids) != 1 || find(cr, "transform-sets", "transform-set", "name").text() != "only" {
		t.Fatalf("candidate after inline copy: %s", dump(cr))
	}
	isOK(t, c.rpc(`<copy-config><target><running/></target><source><candidate/></source></copy-config>`))
	root := e.st.Running().Root
	if !hasTS(e, "only") || hasTS(e, "auth2") || root.GetCrypto().GetIsakmp() != nil {
		t.Fatalf("running after copy-config: %+v", root.GetCrypto())
	}
	// A bad inline config is refused with its path.
	wantErr(t, c.rpc(`<copy-config><target><candidate/></target><source><config><crypto xmlns="`+cryptoNS+`"><nope/></crypto></config></source></copy-config>`),
		"application", "unknown-element", "/spc:crypto/spc:nope")
	// Read-only users cannot copy.
	ro := e.dial(roUser, roPass, false)
	wantErr(t, ro.rpc(`<copy-config><target><candidate/></target><source><running/></source></copy-config>`), "protocol", "access-denied", "")
	isOK(t, ro.rpc(`<validate><source><running/></source></validate>`))
}

package netconf

import (
	"context"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/spiagent/spiagent/store"
)

func TestNotifications(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(roUser, roPass, true)
	sub := `<create-subscription xmlns="` + notifNS + `"/>`
	isOK(t, c.rpc(sub))
	wantErr(t, c.rpc(sub), "protocol", "operation-failed", "")
	wantErr(t, c.rpc(`<create-subscription xmlns="`+notifNS+`"><startTime>2026-01-01T00:00:00Z</startTime></create-subscription>`), "protocol", "operation-not-supported", "")
	// A NETCONF commit from another session.
	w := e.dial(rwUser, rwPass, false)
	isOK(t, w.rpc(editCandidate(newTS, "")))
	isOK(t, w.rpc(`<commit/>`))
	n := readNotification(t, c)
	if find(n, "eventTime") == nil {
		t.Fatalf("no eventTime: %s", dump(n))
	}
	cc := find(n, "netconf-config-change")
	if cc == nil || cc.Name.Space != ncNotifNS || find(cc, "changed-by", "username").text() != rwUser ||
		find(cc, "changed-by", "session-id").text() != w.sessionID || find(cc, "datastore").text() != "running" {
		t.Fatalf("notification: %s", dump(n))
	}
	edits := findAll(cc, "edit")
	found := false
	for _, ed := range edits {
		if find(ed, "target").text() == "/spc:crypto/spc:transform-sets/spc:transform-set[spc:name='ts-new']/spc:config/spc:esp-encryption" && find(ed, "operation").text() == "create" {
			found = true
		}
	}
	if !found {
		t.Fatalf("edit of ts-new/config/esp-encryption missing: %s", dump(n))
	}
	// A commit from elsewhere (gNMI makes these): session-id 0.
	p := &gpb.Path{Elem: []*gpb.PathElem{{Name: "crypto"}, {Name: "isakmp"}, {Name: "policies"}, {Name: "policy", Key: map[string]string{"priority": "1"}}, {Name: "config"}, {Name: "lifetime"}}}
	if _, err := e.st.Commit(context.Background(), store.Tx{User: "gnmi-user", Ops: []store.Op{{Kind: store.OpUpdate, Path: p, Val: ietfVal("999")}}}); err != nil {
		t.Fatal(err)
	}
	n = readNotification(t, c)
	cc = find(n, "netconf-config-change")
	if find(cc, "changed-by", "username").text() != "gnmi-user" || find(cc, "changed-by", "session-id").text() != "0" ||
		find(cc, "edit", "operation").text() != "replace" || !strings.HasSuffix(find(cc, "edit", "target").text(), "spc:lifetime") {
		t.Fatalf("notification: %s", dump(n))
	}
	// RPCs still work on the subscribed session (interleave).
	if find(c.rpc(getRunning), "data", "crypto") == nil {
		t.Fatal("get-config on a subscribed session")
	}
}

// readNotification reads the next message, which must be a notification.
func readNotification(t *testing.T, c *client) *elem {
	t.Helper()
	b, err := c.fr.read()
	if err != nil {
		t.Fatal(err)
	}
	x, err := parseXML(b)
	if err != nil || x.Name.Local != "notification" || x.Name.Space != notifNS {
		t.Fatalf("want a notification, got %s (%v)", b, err)
	}
	return x
}

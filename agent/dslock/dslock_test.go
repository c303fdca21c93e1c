package dslock

import "testing"

func TestLock(t *testing.T) {
	var l Lock
	if ok, _ := l.TryLock("NETCONF session 1"); !ok {
		t.Fatal("free lock not taken")
	}
	if ok, cur := l.TryLock("NETCONF session 2"); ok || cur != "NETCONF session 1" {
		t.Fatalf("second holder: ok=%v current=%q", ok, cur)
	}
	if ok, _ := l.TryLock("NETCONF session 1"); !ok {
		t.Fatal("holder cannot re-take its own lock")
	}
	l.Unlock("NETCONF session 2") // not the holder: no effect
	if l.Holder() != "NETCONF session 1" {
		t.Fatalf("holder %q after a stranger's unlock", l.Holder())
	}
	l.Unlock("NETCONF session 1")
	if l.Holder() != "" {
		t.Fatalf("holder %q after unlock", l.Holder())
	}
	var none *Lock
	if ok, _ := none.TryLock("x"); !ok || none.Holder() != "" {
		t.Fatal("a nil Lock must never lock")
	}
	none.Unlock("x")
}

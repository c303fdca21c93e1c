package ytree

import (
	"reflect"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
)

// TestWriterChild: Child steps from an owned struct like Descend, copying
// only what it steps into and creating entries with their keys.
func TestWriterChild(t *testing.T) {
	old := loadSeed(t)
	w := NewWriter(old)
	w.Config = true
	root := reflect.ValueOf(w.Root())
	crypto := Root().Field("crypto")
	cv, err := w.Child(root, crypto, reflect.Value{}, false)
	if err != nil {
		t.Fatal(err)
	}
	ts := crypto.Elem.Field("transform-sets")
	tsv, err := w.Child(cv, ts, reflect.Value{}, false)
	if err != nil {
		t.Fatal(err)
	}
	list := ts.Elem.Field("transform-set")
	if _, err := w.Child(tsv, list, reflect.ValueOf("nope"), false); err != ErrNotFound {
		t.Errorf("missing entry without create: %v", err)
	}
	ev, err := w.Child(tsv, list, reflect.ValueOf("new"), true)
	if err != nil {
		t.Fatal(err)
	}
	n := ev.Interface().(*gen.TransformSet)
	if n.GetName() != "new" || n.GetConfig().GetName() != "new" {
		t.Errorf("created entry %+v: want its key leaves, config too", n)
	}
	ev.Interface().(*gen.TransformSet).Config.EspKeyBits = ygot.Uint16(256)
	if old.GetCrypto().GetTransformSets().GetTransformSet("new") != nil {
		t.Error("the old tree was modified")
	}
	isakmp, err := w.Child(cv, crypto.Elem.Field("isakmp"), reflect.Value{}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Child(isakmp, crypto.Elem.Field("isakmp").Elem.Field("sas"), reflect.ValueOf(uint32(1)), true); err != ErrState {
		t.Errorf("state container in a config writer: %v", err)
	}
	var changed []string
	d := Differ{Writer: w, Leaf: func(p []*gpb.PathElem, _ *Field, _, _ reflect.Value) { changed = append(changed, PathString(p)) }}
	d.Diff(old, w.Root())
	if len(changed) != 3 {
		t.Errorf("diff %v, want the new entry's name, config/name and config/esp-key-bits", changed)
	}
}

// TestDiffSecretWritten: a secret leaf written with the value it had is a
// change (the same pointer is not), so that no reader of the diff (a
// commit, its events) learns whether a guess was right; other leaves
// compare by value.
func TestDiffSecretWritten(t *testing.T) {
	old := loadSeed(t)
	cur := old.GetCrypto().GetIsakmp().GetKeys().GetKey("192.0.2.2").GetConfig()
	w := NewWriter(old)
	same := elems(t, "/crypto/isakmp/keys/key[address=192.0.2.2]/config/key")
	tg, err := w.Descend(same, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetText(tg.Field, tg.Parent, cur.GetKey()); err != nil {
		t.Fatal(err)
	}
	tg, err = w.Descend(elems(t, "/crypto/isakmp/keys/key[address=192.0.2.2]/config/address"), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetText(tg.Field, tg.Parent, cur.GetAddress()); err != nil {
		t.Fatal(err)
	}
	var changed []string
	d := Differ{Writer: w, Leaf: func(p []*gpb.PathElem, _ *Field, _, _ reflect.Value) { changed = append(changed, PathString(p)) }}
	d.Diff(old, w.Root())
	if len(changed) != 1 || changed[0] != PathString(same) {
		t.Errorf("changes %v, want only the rewritten key", changed)
	}
	changed = nil
	d.Diff(old, old)
	if len(changed) != 0 {
		t.Errorf("a tree differs from itself: %v", changed)
	}
}

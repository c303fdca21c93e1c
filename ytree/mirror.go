package ytree

import (
	"reflect"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/spiagent/spiagent/gen"
)

// Mirror is a node of a configuration that has both a config and a state
// container (OpenConfig: state shows the config in force, plus operational
// leaves), as Mirrors reports it.
type Mirror struct {
	// Path is the node's: a list entry, or a container; its state
	// container is at Path + "state".
	Path []*gpb.PathElem
	// Config is the node's config container in the new configuration; nil
	// when it has none (a container's state then shows the defaults).
	Config reflect.Value
	// State is the type of the state container.
	State *Type
	// Gone is set for a list entry that the new configuration no longer
	// has: its state goes with it.
	Gone bool
}

// StatePath returns the path of the mirror's state container.
func (m Mirror) StatePath() []*gpb.PathElem {
	return childPath(m.Path, &gpb.PathElem{Name: "state"})
}

// Mirrors walks the schema of a configuration and reports every node whose
// config container (its pointer: configurations share unchanged subtrees)
// differs between old and new: every list entry and every container with
// a config and a state child, including containers new does not have
// (their state shows the defaults). With old nil, every such node is
// reported; otherwise subtrees old and new share are skipped.
func Mirrors(old, new *gen.Device, fn func(Mirror)) {
	var ov reflect.Value
	if old != nil {
		ov = reflect.ValueOf(old)
	}
	mirrors(rootType, nil, ov, reflect.ValueOf(new), old == nil, fn)
}

// mirrors walks the structs old and new of type t at path. all is true when
// nothing was published for this subtree yet.
func mirrors(t *Type, path []*gpb.PathElem, old, new reflect.Value, all bool, fn func(Mirror)) {
	on, nn := isNil(old), isNil(new)
	if !all && ((on && nn) || (!on && !nn && old.Pointer() == new.Pointer())) {
		return
	}
	cf, sf := t.config, t.byName["state"]
	if cf != nil && sf != nil && sf.Kind == KindContainer {
		var oc, nc reflect.Value
		if !on {
			oc = old.Elem().Field(cf.Index)
		}
		if !nn {
			nc = new.Elem().Field(cf.Index)
		}
		if all || isNil(oc) != isNil(nc) || (!isNil(nc) && oc.Pointer() != nc.Pointer()) {
			if isNil(nc) {
				nc = reflect.Value{}
			}
			fn(Mirror{Path: path, Config: nc, State: sf.Elem})
		}
	}
	for _, f := range t.Fields {
		if f.State || f.IsLeaf() || f == cf {
			continue
		}
		var of, nf reflect.Value
		if !on {
			of = old.Elem().Field(f.Index)
		}
		if !nn {
			nf = new.Elem().Field(f.Index)
		}
		if f.Kind == KindContainer {
			mirrors(f.Elem, childPath(path, &gpb.PathElem{Name: f.Name}), of, nf, all, fn)
			continue
		}
		mirrorEntries(f, path, of, nf, all, fn)
	}
}

// mirrorEntries compares the entries of list f.
func mirrorEntries(f *Field, path []*gpb.PathElem, old, new reflect.Value, all bool, fn func(Mirror)) {
	on, nn := isNil(old), isNil(new)
	if !all && !on && !nn && old.Pointer() == new.Pointer() {
		return
	}
	if !nn {
		it := new.MapRange()
		for it.Next() {
			var ov reflect.Value
			if !on {
				ov = old.MapIndex(it.Key())
			}
			if !all && ov.IsValid() && ov.Pointer() == it.Value().Pointer() {
				continue
			}
			p := childPath(path, f.KeyElem(it.Key()))
			mirrors(f.Elem, p, ov, it.Value(), all || !ov.IsValid(), fn)
		}
	}
	if all || on {
		return
	}
	it := old.MapRange()
	for it.Next() {
		if !nn && new.MapIndex(it.Key()).IsValid() {
			continue
		}
		if t := f.Elem; t.config != nil && t.byName["state"] != nil {
			fn(Mirror{Path: childPath(path, f.KeyElem(it.Key())), State: t.byName["state"].Elem, Gone: true})
		}
	}
}

// MirrorState builds the state container of a mirrored node from its
// config container (see MirrorInto). config may be nil: defaults only.
func MirrorState(state *Type, config reflect.Value) reflect.Value {
	out := reflect.New(state.Go)
	mirrorInto(out, state, config)
	return out
}

// MirrorInto fills the state container dst from the config container
// config of the same node: every leaf of config is copied into the state
// leaf of the same name (secrets never), then the YANG defaults of the
// state leaves still unset are filled in, so that state shows the value in
// force of every leaf (OpenConfig). config may be nil: defaults only.
func MirrorInto(dst, config ygot.GoStruct) {
	v := reflect.ValueOf(dst)
	mirrorInto(v, TypeOf(v.Type()), reflect.ValueOf(config))
}

func mirrorInto(out reflect.Value, state *Type, config reflect.Value) {
	if !isNil(config) {
		ct := TypeOf(config.Type())
		for _, sf := range state.Fields {
			cf := ct.byName[sf.Name]
			if cf == nil || !cf.IsLeaf() || cf.Secret || sf.Secret {
				continue
			}
			v := config.Elem().Field(cf.Index)
			if !isSet(v) {
				continue
			}
			dst := out.Elem().Field(sf.Index)
			switch {
			case v.Type().AssignableTo(dst.Type()):
				dst.Set(v)
			case v.Kind() == reflect.Interface && v.Elem().Type().AssignableTo(dst.Type()):
				dst.Set(v.Elem())
			}
		}
	}
	if d, ok := out.Interface().(interface{ PopulateDefaults() }); ok {
		d.PopulateDefaults()
	}
}

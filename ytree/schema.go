package ytree

import (
	"fmt"
	"reflect"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/util"

	"github.com/spiagent/spiagent/gen"
)

// Module is the YANG module whose name may qualify path element names.
const Module = "spiagent-crypto"

// Kind says what a schema child of a generated struct holds.
type Kind int

// The kinds of fields.
const (
	KindLeaf      Kind = iota // *scalar, enum (int64), union interface
	KindLeafList              // []scalar
	KindContainer             // *struct
	KindList                  // map[key]*struct
)

// Type is the reflection and schema metadata of one generated struct type
// (a container or a list entry), built once.
type Type struct {
	Go     reflect.Type // the struct type (not the pointer)
	Schema *yang.Entry  // its schema node (a container or a list)
	Fields []*Field     // schema children, in struct order

	byName  map[string]*Field
	keys    []*Field // for a list entry: its key leaves, in key order
	config  *Field   // the "config" container child, if any
	secrets bool     // a secret leaf is at or below this type
}

// Field is one schema child of a generated struct.
type Field struct {
	Name   string
	Index  int // the struct field's index
	Kind   Kind
	Schema *yang.Entry
	Elem   *Type  // container or list entry type
	Module string // the module of the node (struct tag)
	State  bool   // config false (itself or by inheritance)
	Secret bool   // leaf marked spt:secret

	mapKey     reflect.Type // list: the Go map key type
	keyNames   []string     // list: key leaf names, in the map key's order
	entryKeys  []*Field     // list: the entry's leaf for each key (nil: none)
	configKeys []*Field     // list: the entry's config leaf for each key
	vEntry     *yang.Entry  // leaf: the schema to check values against (leafrefs resolved)
	check      *leafCheck
}

var (
	typeInfo = map[reflect.Type]*Type{} // complete after init, then read-only
	rootType *Type
)

func init() {
	rootType = buildType(reflect.TypeOf(gen.Device{}))
}

// Root is the type of gen.Device, the root of every tree.
func Root() *Type { return rootType }

// RootSchema is the schema of gen.Device.
func RootSchema() *yang.Entry { return rootType.Schema }

// TypeOf returns the metadata of a generated struct type (or a pointer to
// one), or nil if t is not reachable from gen.Device.
func TypeOf(t reflect.Type) *Type {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return typeInfo[t]
}

func buildType(t reflect.Type) *Type {
	if ti, ok := typeInfo[t]; ok {
		return ti
	}
	e := gen.SchemaTree[t.Name()]
	if e == nil {
		panic("ytree: no schema for " + t.Name())
	}
	ti := &Type{Go: t, Schema: e, byName: map[string]*Field{}}
	typeInfo[t] = ti
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, ok := sf.Tag.Lookup("path")
		if !ok || strings.Contains(name, "/") {
			continue
		}
		ce := e.Dir[name]
		if ce == nil {
			panic(fmt.Sprintf("ytree: no schema for %s/%s", t.Name(), name))
		}
		f := &Field{Name: name, Index: i, Schema: ce, State: ce.ReadOnly(), Secret: IsSecret(ce),
			Module: sf.Tag.Get("module"), vEntry: ce}
		switch {
		case ce.IsLeafList():
			f.Kind = KindLeafList
			f.vEntry = resolveLeafref(ce)
		case ce.IsLeaf():
			f.Kind = KindLeaf
			f.vEntry = resolveLeafref(ce)
		case ce.IsList():
			f.Kind = KindList
			f.mapKey = sf.Type.Key()
			f.Elem = buildType(sf.Type.Elem().Elem())
			f.keyNames = keyNamesOf(f.mapKey, ce)
		default:
			f.Kind = KindContainer
			f.Elem = buildType(sf.Type.Elem())
		}
		if f.Kind == KindLeaf || f.Kind == KindLeafList {
			f.check = newLeafCheck(f.vEntry)
		}
		ti.Fields = append(ti.Fields, f)
		ti.byName[name] = f
	}
	if e.IsList() {
		for _, k := range strings.Fields(e.Key) {
			ti.keys = append(ti.keys, ti.byName[k])
		}
	}
	if cf := ti.byName["config"]; cf != nil && cf.Kind == KindContainer {
		ti.config = cf
	}
	for _, f := range ti.Fields {
		if f.Kind != KindList {
			continue
		}
		for _, name := range f.keyNames {
			f.entryKeys = append(f.entryKeys, f.Elem.byName[name])
			var ck *Field
			if f.Elem.config != nil {
				ck = f.Elem.config.Elem.byName[name]
			}
			f.configKeys = append(f.configKeys, ck)
		}
	}
	for _, f := range ti.Fields {
		if f.Secret || (f.Elem != nil && f.Elem.secrets) {
			ti.secrets = true
		}
	}
	return ti
}

// keyNamesOf lists a list's key names in the order of its Go map key: the
// one key, or the fields of the generated key struct.
func keyNamesOf(kt reflect.Type, e *yang.Entry) []string {
	if kt.Kind() != reflect.Struct {
		return []string{e.Key}
	}
	out := make([]string, kt.NumField())
	for i := range out {
		out[i] = kt.Field(i).Tag.Get("path")
	}
	return out
}

// resolveLeafref returns the leaf a leafref points at (for its type), once,
// rather than on every validation as ytypes would; e itself otherwise.
func resolveLeafref(e *yang.Entry) *yang.Entry {
	if e.Type == nil || e.Type.Kind != yang.Yleafref {
		return e
	}
	r, err := util.ResolveIfLeafRef(e)
	if err != nil || r == nil {
		return e
	}
	if e.IsLeafList() && !r.IsLeafList() {
		c := *r
		c.ListAttr = e.ListAttr
		return &c
	}
	return r
}

// Field returns the schema child called name (no module prefix), or nil.
func (t *Type) Field(name string) *Field { return t.byName[name] }

// KeyFields returns a list entry type's key leaves in the schema's key
// order (nil for a container).
func (t *Type) KeyFields() []*Field { return t.keys }

// HasSecrets reports whether a secret leaf is at or below t.
func (t *Type) HasSecrets() bool { return t.secrets }

// New returns a new, empty struct of type t (a pointer).
func (t *Type) New() reflect.Value { return reflect.New(t.Go) }

// IsLeaf reports whether f is a leaf or a leaf-list.
func (f *Field) IsLeaf() bool { return f.Kind == KindLeaf || f.Kind == KindLeafList }

// KeyNames returns a list's key names in the order of its Go map key.
func (f *Field) KeyNames() []string { return f.keyNames }

// MapKey returns a list's Go map key type.
func (f *Field) MapKey() reflect.Type { return f.mapKey }

// IsSecret reports whether a schema node is marked with the spt:secret
// extension (the pre-shared key).
func IsSecret(e *yang.Entry) bool {
	if e == nil {
		return false
	}
	for _, x := range e.Exts {
		if x.Keyword == "secret" || strings.HasSuffix(x.Keyword, ":secret") {
			return true
		}
	}
	return false
}

// IsSecretPath reports whether a path names a leaf marked spt:secret
// (/crypto/isakmp/keys/key[address=A]/config/key). Module prefixes and keys
// are ignored; an unknown path is not secret.
func IsSecretPath(p []*gpb.PathElem) bool {
	ti := rootType
	for i, e := range p {
		f := ti.byName[stripPrefix(e.GetName())]
		if f == nil {
			return false
		}
		if f.IsLeaf() {
			return f.Secret && i == len(p)-1
		}
		ti = f.Elem
	}
	return false
}

// StripModule removes an optional "spiagent-crypto:" qualifier from a path
// element name and rejects any other module.
func StripModule(name string) (string, error) {
	mod, local, ok := strings.Cut(name, ":")
	if !ok {
		return name, nil
	}
	if mod != Module {
		return "", fmt.Errorf("unknown module %q in %q", mod, name)
	}
	return local, nil
}

// stripPrefix removes any module prefix ("spiagent-crypto:crypto" -> "crypto").
func stripPrefix(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[i+1:]
	}
	return s
}

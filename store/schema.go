package store

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/util"

	"github.com/spiagent/spiagent/gen"
)

// fieldKind says what a struct field of a generated type holds.
type fieldKind int

const (
	kLeaf      fieldKind = iota // *scalar, enum (int64), union interface
	kLeafList                   // []scalar
	kContainer                  // *struct
	kList                       // map[key]*struct
)

// typeInfo is the reflection and schema metadata of one generated struct type.
type typeInfo struct {
	typ     reflect.Type // the struct type (not the pointer)
	entry   *yang.Entry  // its schema node (a container or a list)
	fields  []*fieldInfo
	byName  map[string]*fieldInfo
	keyName string     // for a single-key list entry: the key leaf's name
	keyIdx  int        // index of the key leaf field in the entry struct
	secrets bool       // a secret leaf is at or below this type
	kind    entityKind // what a list entry of this type is, for semantic checks
}

// fieldInfo is one schema child of a generated struct.
type fieldInfo struct {
	name     string
	idx      int
	kind     fieldKind
	entry    *yang.Entry // the child's schema node
	elem     *typeInfo   // container or list entry type
	readOnly bool        // config false
	secret   bool        // leaf marked spt:secret
	mapKey   reflect.Type
	module   string      // the module of the node (struct tag)
	vEntry   *yang.Entry // schema to validate a leaf against (leafrefs resolved)
	check    *leafCheck
}

var (
	rootInfo  *typeInfo
	typeInfos = map[reflect.Type]*typeInfo{}
)

func init() {
	rootInfo = buildType(reflect.TypeOf(gen.Device{}))
}

func buildType(t reflect.Type) *typeInfo {
	if ti, ok := typeInfos[t]; ok {
		return ti
	}
	e := gen.SchemaTree[t.Name()]
	if e == nil {
		panic("store: no schema for " + t.Name())
	}
	ti := &typeInfo{typ: t, entry: e, byName: map[string]*fieldInfo{}, keyIdx: -1}
	typeInfos[t] = ti
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, ok := sf.Tag.Lookup("path")
		if !ok || strings.Contains(name, "/") {
			continue
		}
		ce := e.Dir[name]
		if ce == nil {
			panic(fmt.Sprintf("store: no schema for %s/%s", t.Name(), name))
		}
		f := &fieldInfo{name: name, idx: i, entry: ce, readOnly: ce.ReadOnly(), secret: hasSecretExt(ce),
			module: sf.Tag.Get("module"), vEntry: ce}
		switch {
		case ce.IsLeafList():
			f.kind = kLeafList
			f.vEntry = resolveLeafref(ce)
		case ce.IsLeaf():
			f.kind = kLeaf
			f.vEntry = resolveLeafref(ce)
		case ce.IsList():
			f.kind = kList
			f.mapKey = sf.Type.Key()
			f.elem = buildType(sf.Type.Elem().Elem())
		default:
			f.kind = kContainer
			f.elem = buildType(sf.Type.Elem())
		}
		if f.kind == kLeaf || f.kind == kLeafList {
			f.check = newLeafCheck(f.vEntry)
		}
		ti.fields = append(ti.fields, f)
		ti.byName[name] = f
	}
	if e.IsList() && !strings.Contains(e.Key, " ") {
		ti.keyName = e.Key
		ti.keyIdx = ti.byName[e.Key].idx
	}
	for _, f := range ti.fields {
		if f.secret || (f.elem != nil && f.elem.secrets) {
			ti.secrets = true
		}
	}
	ti.kind = entityOf(e)
	return ti
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

func hasSecretExt(e *yang.Entry) bool {
	for _, x := range e.Exts {
		if x.Keyword == "spt:secret" || strings.HasSuffix(x.Keyword, ":secret") {
			return true
		}
	}
	return false
}

// configField returns the "config" container field of a list entry type.
func (ti *typeInfo) configField() *fieldInfo { return ti.byName["config"] }

// stripPrefix removes a module prefix ("spiagent-crypto:crypto" -> "crypto").
func stripPrefix(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// parseKey converts a path key string to a map key of type t.
func parseKey(t reflect.Type, s string) (reflect.Value, error) {
	v := reflect.New(t).Elem()
	switch t.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, t.Bits())
		if err != nil {
			return v, fmt.Errorf("key %q is not a %s", s, t.Kind())
		}
		v.SetUint(n)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, t.Bits())
		if err != nil {
			return v, fmt.Errorf("key %q is not a %s", s, t.Kind())
		}
		v.SetInt(n)
	default:
		return v, fmt.Errorf("list keyed by %s cannot be written", t)
	}
	return v, nil
}

// keyString formats a map key for a path.
func keyString(k reflect.Value) string {
	switch k.Kind() {
	case reflect.String:
		return k.String()
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(k.Uint(), 10)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(k.Int(), 10)
	}
	return fmt.Sprint(k.Interface())
}

// keyElem builds the path element of a list entry.
func keyElem(f *fieldInfo, k reflect.Value) *gpb.PathElem {
	if k.Kind() != reflect.Struct {
		return &gpb.PathElem{Name: f.name, Key: map[string]string{f.elem.keyName: keyString(k)}}
	}
	keys := map[string]string{}
	for i := 0; i < k.NumField(); i++ {
		name := k.Type().Field(i).Tag.Get("path")
		fv := k.Field(i)
		if fv.Kind() == reflect.Int64 { // enum
			keys[name] = fmt.Sprint(fv.Interface())
		} else {
			keys[name] = keyString(fv)
		}
	}
	return &gpb.PathElem{Name: f.name, Key: keys}
}

// PathString formats a gNMI path as /a/b[k=v]/c (keys sorted).
func PathString(p *gpb.Path) string {
	if p == nil {
		return "/"
	}
	return elemsString(p.GetElem())
}

func elemsString(elems []*gpb.PathElem) string {
	if len(elems) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, e := range elems {
		b.WriteByte('/')
		b.WriteString(e.GetName())
		if len(e.GetKey()) == 0 {
			continue
		}
		ks := make([]string, 0, len(e.GetKey()))
		for k := range e.GetKey() {
			ks = append(ks, k)
		}
		if len(ks) > 1 {
			sortStrings(ks)
		}
		for _, k := range ks {
			fmt.Fprintf(&b, "[%s=%s]", k, e.GetKey()[k])
		}
	}
	return b.String()
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// IsSecret reports whether path names a leaf marked spt:secret (the
// pre-shared key, /crypto/isakmp/keys/key[address=A]/config/key). Module
// prefixes and keys are ignored; an unknown path is not secret.
func IsSecret(p *gpb.Path) bool {
	ti := rootInfo
	elems := p.GetElem()
	for i, e := range elems {
		f := ti.byName[stripPrefix(e.GetName())]
		if f == nil {
			return false
		}
		if f.kind == kLeaf || f.kind == kLeafList {
			return f.secret && i == len(elems)-1
		}
		ti = f.elem
	}
	return false
}

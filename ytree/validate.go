package ytree

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"
)

// Problem is one reason a tree is invalid. Path is a schema path such as
// /crypto/isakmp/policies/policy[priority=1]/config/lifetime.
type Problem struct {
	Path   string
	Reason string
}

func (p Problem) String() string { return p.Path + ": " + p.Reason }

// SortProblems sorts problems by path (stable) and drops duplicates.
func SortProblems(ps []Problem) []Problem {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Path < ps[j].Path })
	out := ps[:0]
	for i, p := range ps {
		if i > 0 && p == ps[i-1] {
			continue
		}
		out = append(out, p)
	}
	return out
}

// Validate checks a whole tree against the YANG schema: every leaf's type
// (ranges, patterns, lengths, enums), list key leaves equal to their keys,
// mandatory leaves, and no config false data (when config is true: the
// tree is a configuration). Problems are sorted by path; secret values
// never appear in them.
func Validate(root ygot.GoStruct, config bool) []Problem {
	v := reflect.ValueOf(root)
	if v.IsNil() {
		return nil
	}
	w := &walker{config: config}
	w.hereFn = w.here
	w.tree(TypeOf(v.Type()), v)
	return SortProblems(w.problems)
}

// walker collects problems. The path of the node being checked is kept as a
// stack of frames and rendered only for a problem.
type walker struct {
	config   bool
	problems []Problem
	stack    []frame
	hereFn   func() string // w.here, made once
}

type frame struct {
	f   *Field // a list, with key; else elm names a container
	key reflect.Value
	elm string
}

func (w *walker) here() string {
	elems := make([]*gpb.PathElem, len(w.stack))
	for i, fr := range w.stack {
		if fr.f != nil {
			elems[i] = fr.f.KeyElem(fr.key)
		} else {
			elems[i] = &gpb.PathElem{Name: fr.elm}
		}
	}
	if len(elems) == 0 {
		return ""
	}
	return PathString(elems)
}

func (w *walker) tree(ti *Type, n reflect.Value) {
	if n.IsNil() {
		return
	}
	for _, f := range ti.Fields {
		fv := n.Elem().Field(f.Index)
		if !isSet(fv) {
			continue
		}
		if w.config && f.State {
			w.problems = append(w.problems, Problem{Path: w.here() + "/" + f.Name, Reason: "state (config false) data is not configuration"})
			continue
		}
		switch f.Kind {
		case KindLeaf, KindLeafList:
			if errs := f.check.check(f, fv); len(errs) > 0 {
				w.problems = append(w.problems, leafProblems(f, errs, w.here()+"/"+f.Name)...)
			}
		case KindContainer:
			w.stack = append(w.stack, frame{elm: f.Name})
			w.tree(f.Elem, fv)
			w.stack = w.stack[:len(w.stack)-1]
		case KindList:
			it := fv.MapRange()
			for it.Next() {
				w.stack = append(w.stack, frame{f: f, key: it.Key()})
				w.problems = append(w.problems, f.EntryProblems(it.Key(), it.Value(), w.hereFn)...)
				w.tree(f.Elem, it.Value())
				w.stack = w.stack[:len(w.stack)-1]
			}
		}
	}
}

// LeafProblems checks the value of leaf f (see Field.Check) and renders
// what is wrong at the path that path returns (called only then).
func LeafProblems(f *Field, v reflect.Value, path func() string) []Problem {
	errs := f.check.check(f, v)
	if len(errs) == 0 {
		return nil
	}
	return leafProblems(f, errs, path())
}

func leafProblems(f *Field, errs []error, p string) []Problem {
	if f.Secret {
		return []Problem{{Path: p, Reason: secretReason(f, errs)}}
	}
	out := make([]Problem, 0, len(errs))
	for _, err := range errs {
		msg := err.Error()
		if i := strings.LastIndex(msg, "\": "); i >= 0 && strings.Contains(msg[:i], "schema \"") {
			msg = msg[i+3:]
		}
		out = append(out, Problem{Path: p, Reason: msg + restriction(f.Schema)})
	}
	return out
}

// secretReason says why a secret value is not valid without showing it:
// the reason of a prepared check (length, pattern, UTF-8), or none.
func secretReason(f *Field, errs []error) string {
	var ce *checkError
	if len(errs) == 1 && errors.As(errs[0], &ce) {
		return fmt.Sprintf("value %s is not valid: %s", Redacted, ce.blind)
	}
	return fmt.Sprintf("value %s is not valid%s", Redacted, restriction(f.Schema))
}

// restriction describes a leaf type's range or length, e.g. " (allowed 60..86400)".
func restriction(e *yang.Entry) string {
	t := e.Type
	if t == nil {
		return ""
	}
	switch {
	case len(t.Range) > 0:
		return " (allowed " + t.Range.String() + ")"
	case len(t.Length) > 0:
		return " (length " + t.Length.String() + ")"
	}
	return ""
}

// EntryProblems checks entry (the struct of map key key) of list f: its key
// leaves and its config container's key leaves equal the key, and the
// config container's mandatory leaves are set. path returns the entry's
// path (called only for a problem).
func (f *Field) EntryProblems(key, entry reflect.Value, path func() string) []Problem {
	var out []Problem
	add := func(suffix, format string, args ...any) {
		out = append(out, Problem{Path: path() + suffix, Reason: fmt.Sprintf(format, args...)})
	}
	cv := configOf(entry, f.Elem)
	hasConfig := cv.IsValid() && !cv.IsNil()
	for i, lf := range f.entryKeys {
		kv := keyPart(key, i)
		if lf != nil && !leafEquals(entry.Elem().Field(lf.Index), kv) {
			add("/"+f.keyNames[i], "list key leaf must equal the entry's key %s", FormatText(kv))
		}
		if ck := f.configKeys[i]; hasConfig && ck != nil && !leafEquals(cv.Elem().Field(ck.Index), kv) {
			add("/config/"+f.keyNames[i], "must equal the list key %s", FormatText(kv))
		}
	}
	if !cv.IsValid() {
		return out
	}
	if !hasConfig {
		add("/config", "missing config container (config/%s must equal the key)", strings.Join(f.keyNames, ", config/"))
		return out
	}
	for _, cf := range f.Elem.config.Elem.Fields {
		if cf.Schema.Mandatory == yang.TSTrue && !isSet(cv.Elem().Field(cf.Index)) {
			add("/config/"+cf.Name, "mandatory leaf is missing")
		}
	}
	return out
}

// leafEquals reports whether the leaf field fv is set to the key value kv.
func leafEquals(fv, kv reflect.Value) bool {
	if fv.Kind() == reflect.Pointer {
		if fv.IsNil() {
			return false
		}
		fv = fv.Elem()
	}
	switch kv.Kind() {
	case reflect.String:
		return fv.Kind() == reflect.String && fv.String() == kv.String()
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fv.CanUint() && fv.Uint() == kv.Uint()
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fv.CanInt() && fv.Int() == kv.Int()
	}
	return FormatText(fv) == FormatText(kv)
}

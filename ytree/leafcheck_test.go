package ytree

import (
	"reflect"
	"strings"
	"testing"

	"github.com/openconfig/ygot/ytypes"
)

// TestLeafCheckAgreesWithYtypes: for every leaf of the model and a spread of
// values, the prepared checks accept exactly what ytypes.Validate accepts.
func TestLeafCheckAgreesWithYtypes(t *testing.T) {
	strs := []string{"", "a", "10.0.0.1", "10.0.0.256", "192.0.2.0/24", "192.0.2.0/33", strings.Repeat("k", 64), strings.Repeat("k", 65), strings.Repeat("k", 129), strings.Repeat("k", 241)}
	nums := []uint64{0, 1, 2, 4, 5, 9, 10, 59, 60, 61, 100, 119, 120, 128, 129, 192, 255, 256, 2559, 2560, 3600, 3601, 10000, 10001, 65535, 86400, 86401, 2147483647, 2147483648, 4294967295}
	checked := 0
	for _, ti := range typeInfo {
		for _, f := range ti.Fields {
			if f.Kind != KindLeaf || f.check.fallback {
				continue
			}
			ft := ti.Go.Field(f.Index).Type
			if ft.Kind() != reflect.Pointer {
				continue
			}
			et := ft.Elem()
			var vals []reflect.Value
			switch et.Kind() {
			case reflect.String:
				for _, s := range strs {
					vals = append(vals, reflect.ValueOf(s).Convert(et))
				}
			case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				for _, n := range nums {
					v := reflect.New(et).Elem()
					if v.OverflowUint(n) {
						continue
					}
					v.SetUint(n)
					vals = append(vals, v)
				}
			default:
				continue
			}
			for _, v := range vals {
				p := reflect.New(et)
				p.Elem().Set(v)
				mine := f.check.check(f, p)
				theirs := ytypes.Validate(f.vEntry, p.Interface())
				if (len(mine) == 0) != (len(theirs) == 0) {
					t.Errorf("%s/%s = %v: ours %v, ytypes %v", ti.Schema.Name, f.Name, v, mine, theirs)
				}
				checked++
			}
		}
	}
	if checked < 500 {
		t.Errorf("only %d checks", checked)
	}
}

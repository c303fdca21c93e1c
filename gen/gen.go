// Package gen holds the Go structs that ygot generates from the YANG modules
// in yang/. Never edit spiagent.go by hand: change the YANG and run
// `go generate ./gen` (or `make gen`). The generator's version is the ygot
// version pinned in go.mod.
package gen

//go:generate go run github.com/openconfig/ygot/generator -path=../yang -output_file=spiagent.go -package_name=gen -generate_fakeroot -fakeroot_name=device -generate_getters -generate_delete -generate_append -generate_leaf_getters -generate_populate_defaults -generate_simple_unions -typedef_enum_with_defmod -enum_suffix_for_simple_union_enums -include_model_data -annotations=false ../yang/spiagent-types.yang ../yang/spiagent-crypto.yang
//go:generate gofmt -w spiagent.go

//go:build tools

package gen

// Keeps the ygot generator (run by go:generate) in go.mod.
import _ "github.com/openconfig/ygot/generator"

// Package yang holds spiagent's YANG modules; its test checks house rules
// that yanglint does not: every node has a description, and every list entry
// follows the OpenConfig config/state pattern.
package yang

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openconfig/goyang/pkg/yang"
)

func loadModules(t *testing.T) *yang.Modules {
	t.Helper()
	ms := yang.NewModules()
	files, err := filepath.Glob("*.yang")
	if err != nil || len(files) == 0 {
		t.Fatalf("no YANG files: %v", err)
	}
	for _, f := range files {
		if err := ms.Read(f); err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
	}
	if errs := ms.Process(); len(errs) > 0 {
		t.Fatalf("process: %v", errs)
	}
	return ms
}

// undescribed lists the nodes of the named modules (schema tree with
// groupings expanded, typedefs, groupings, RPCs) that have no description.
func undescribed(ms *yang.Modules, names ...string) []string {
	var missing []string
	var walk func(e *yang.Entry)
	walk = func(e *yang.Entry) {
		if strings.TrimSpace(e.Description) == "" {
			missing = append(missing, e.Path())
		}
		for _, c := range e.Dir {
			walk(c)
		}
	}
	for _, name := range names {
		m, ok := ms.Modules[name]
		if !ok {
			missing = append(missing, "module "+name+" (not loaded)")
			continue
		}
		if m.Description == nil {
			missing = append(missing, "module "+name)
		}
		for _, td := range m.Typedef {
			if td.Description == nil {
				missing = append(missing, name+" typedef "+td.Name)
			}
		}
		for _, g := range m.Grouping {
			if g.Description == nil {
				missing = append(missing, name+" grouping "+g.Name)
			}
		}
		for _, r := range m.RPC {
			if r.Description == nil {
				missing = append(missing, name+" rpc "+r.Name)
			}
		}
		walk(yang.ToEntry(m))
	}
	return missing
}

func TestEveryNodeHasDescription(t *testing.T) {
	ms := loadModules(t)
	if missing := undescribed(ms, "spiagent-crypto", "spiagent-types"); len(missing) > 0 {
		t.Errorf("nodes without a description:\n  %s", strings.Join(missing, "\n  "))
	}
}

// TestUndescribedCatchesGaps proves the check above can fail.
func TestUndescribedCatchesGaps(t *testing.T) {
	ms := yang.NewModules()
	const bad = `module bad { namespace "urn:bad"; prefix b; description "m";
	  container c { description "c"; leaf x { type string; } } }`
	if err := ms.Parse(bad, "bad.yang"); err != nil {
		t.Fatal(err)
	}
	if errs := ms.Process(); len(errs) > 0 {
		t.Fatal(errs)
	}
	got := undescribed(ms, "bad")
	if len(got) != 1 || !strings.HasSuffix(got[0], "/c/x") {
		t.Fatalf("undescribed = %v, want just the leaf /c/x", got)
	}
}

// TestListsAreOpenConfigStyle checks that each list's keys are leafrefs into
// its config (or, for state-only lists, state) container.
func TestListsAreOpenConfigStyle(t *testing.T) {
	ms := loadModules(t)
	var walk func(e *yang.Entry)
	walk = func(e *yang.Entry) {
		if e.IsList() {
			for _, k := range strings.Fields(e.Key) {
				leaf := e.Dir[k]
				if leaf == nil || leaf.Type == nil || leaf.Type.Kind != yang.Yleafref {
					t.Errorf("%s: key %q is not a leafref", e.Path(), k)
					continue
				}
				want := []string{"../config/" + k, "../state/" + k}
				if leaf.Type.Path != want[0] && leaf.Type.Path != want[1] {
					t.Errorf("%s: key %q refers to %q, want one of %v", e.Path(), k, leaf.Type.Path, want)
				}
			}
		}
		for _, c := range e.Dir {
			walk(c)
		}
	}
	walk(yang.ToEntry(ms.Modules["spiagent-crypto"]))
}

// TestYanglintClean runs libyang's yanglint (Debian package libyang-tools,
// installed by scripts/deps.sh) over the modules and fails on any error or
// warning.
func TestYanglintClean(t *testing.T) {
	bin, err := exec.LookPath("yanglint")
	if err != nil {
		t.Fatalf("yanglint missing (Debian package libyang-tools; run scripts/deps.sh): %v", err)
	}
	files, _ := filepath.Glob("*.yang")
	var out bytes.Buffer
	cmd := exec.Command(bin, append([]string{"-p", "."}, files...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Fatalf("yanglint %v: %v\n%s", files, err, out.String())
	}
}

// TestExamplesValidateWithYanglint checks examples/ against the modules with
// libyang, a validator independent of ygot and the store.
func TestExamplesValidateWithYanglint(t *testing.T) {
	bin, err := exec.LookPath("yanglint")
	if err != nil {
		t.Fatalf("yanglint missing (Debian package libyang-tools; run scripts/deps.sh): %v", err)
	}
	files, _ := filepath.Glob("../examples/*/*.json")
	if len(files) < 4 {
		t.Fatalf("found %d example files, want the seed and lab routers", len(files))
	}
	for _, f := range files {
		var out bytes.Buffer
		cmd := exec.Command(bin, "-f", "json", "-t", "config", "-p", ".", "spiagent-crypto.yang", "spiagent-types.yang", f)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Errorf("yanglint %s: %v\n%s", f, err, out.String())
		}
	}
	// And it must be able to fail: a lifetime out of range.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"spiagent-crypto:crypto":{"isakmp":{"policies":{"policy":[{"priority":1,"config":{"priority":1,"lifetime":59}}]}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(bin, "-f", "json", "-t", "config", "-p", ".", "spiagent-crypto.yang", "spiagent-types.yang", bad).Run(); err == nil {
		t.Error("yanglint accepted lifetime 59")
	}
}

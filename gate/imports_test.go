package gate

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sluice-ci/sluice"

// TestImportDirection keeps the package layout honest: budgets imports
// nothing of sluice's; gate imports only budgets and never a scanner,
// signer or CI library; fastpath, slowpath and actions never import each
// other.
func TestImportDirection(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not on PATH")
	}
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Deps", module+"/...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		deps[p.ImportPath] = p.Deps
	}
	top := func(pkg string) string {
		rest, ok := strings.CutPrefix(pkg, module+"/")
		if !ok {
			return ""
		}
		first, _, _ := strings.Cut(rest, "/")
		return first
	}
	forbidden := map[string][]string{
		"budgets":  {"gate", "fastpath", "slowpath", "actions", "cmd"},
		"gate":     {"fastpath", "slowpath", "actions", "cmd"},
		"fastpath": {"slowpath", "actions", "cmd"},
		"slowpath": {"fastpath", "actions", "cmd"},
		"actions":  {"fastpath", "slowpath", "cmd"},
	}
	foreign := []string{"github.com/aquasecurity/trivy", "github.com/sigstore/cosign", "github.com/sethvargo/go-githubactions"}
	checked := 0
	for pkg, ds := range deps {
		from := top(pkg)
		if from == "" {
			continue
		}
		checked++
		for _, d := range ds {
			to := top(d)
			for _, bad := range forbidden[from] {
				if to == bad {
					t.Errorf("%s imports %s: %s must not depend on %s", pkg, d, from, bad)
				}
			}
			if from == "gate" || from == "budgets" {
				for _, f := range foreign {
					if strings.HasPrefix(d, f) {
						t.Errorf("%s depends on %s", pkg, d)
					}
				}
			}
		}
	}
	if checked < 5 {
		t.Fatalf("go list found only %d sluice packages", checked)
	}
}

package lint

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/gate"
)

var update = flag.Bool("update", false, "rewrite the golden .out files")

// shared compiles Trivy's checks once for all tests.
var shared = New(Options{})

// caseTarget is where a golden case is placed in its tree: workflows must
// lie under .github/workflows to be one.
func caseTarget(kind, name string) string {
	if kind == "github-workflow" {
		return ".github/workflows/" + name
	}
	return name
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGolden lints each testdata/lint/<kind>/<name> (a file, or a folder
// for a Helm chart) alone in a tree of its own, and compares the findings
// with <name>.out.
func TestGolden(t *testing.T) {
	root := filepath.Join("..", "..", "testdata", "lint")
	kinds, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		if !k.IsDir() {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(root, k.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".out") {
				continue
			}
			name := e.Name()
			t.Run(k.Name()+"/"+name, func(t *testing.T) {
				src := filepath.Join(root, k.Name(), name)
				tmp := t.TempDir()
				dst := filepath.Join(tmp, filepath.FromSlash(caseTarget(k.Name(), name)))
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					t.Fatal(err)
				}
				copyTree(t, src, dst)
				ch, err := gate.ChangeFromPaths(tmp, []string{tmp})
				if err != nil {
					t.Fatal(err)
				}
				rep, err := shared.Lint(context.Background(), ch)
				if err != nil {
					t.Fatalf("lint: %v", err)
				}
				var b strings.Builder
				for _, f := range rep.Findings {
					b.WriteString(f.String())
					b.WriteByte('\n')
				}
				golden := filepath.Join(root, k.Name(), strings.TrimSuffix(name, filepath.Ext(name))+".out")
				if e.IsDir() {
					golden = filepath.Join(root, k.Name(), name+".out")
				}
				if *update {
					if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if got := b.String(); got != string(want) {
					t.Errorf("findings differ from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
				}
				if strings.HasPrefix(name, "pass") && b.Len() > 0 {
					t.Errorf("a passing case has findings:\n%s", b.String())
				}
				if strings.HasPrefix(name, "fail") && b.Len() == 0 {
					t.Errorf("a failing case has no findings")
				}
			})
		}
	}
}

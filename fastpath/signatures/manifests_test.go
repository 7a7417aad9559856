package signatures_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/fastpath/signatures"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestManifestImages reads each testdata/signatures/*.yaml and compares
// what it finds, one line per image or problem, with the .out beside it.
func TestManifestImages(t *testing.T) {
	files, err := filepath.Glob("../../testdata/signatures/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		base := filepath.Base(file)
		t.Run(strings.TrimSuffix(base, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			must(t, err)
			imgs, probs := signatures.ManifestImages(base, data)
			var b strings.Builder
			for _, im := range imgs {
				fmt.Fprintf(&b, "%s:%d:%d: %s (%s)\n", im.File, im.Line, im.Column, im.Ref, im.Workload)
			}
			for _, p := range probs {
				fmt.Fprintf(&b, "%s\n", p)
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".out"
			if *update {
				must(t, os.WriteFile(golden, []byte(b.String()), 0o644))
				return
			}
			want, err := os.ReadFile(golden)
			must(t, err)
			if b.String() != string(want) {
				t.Errorf("%s: got\n%s\nwant\n%s", base, b.String(), want)
			}
		})
	}
}

func TestIsManifest(t *testing.T) {
	for f, want := range map[string]bool{"a.yaml": true, "b/c.YML": true, "d.json": false, "Dockerfile": false} {
		if got := signatures.IsManifest(f); got != want {
			t.Errorf("IsManifest(%q) = %v, want %v", f, got, want)
		}
	}
}

package lint

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/gate"
)

// BenchmarkTree lints the tree named by LINT_TREE (made by
// bench/lint-tree.sh); skipped without it.
func BenchmarkTree(b *testing.B) {
	dir := os.Getenv("LINT_TREE")
	if dir == "" {
		b.Skip("set LINT_TREE to a tree made by bench/lint-tree.sh")
	}
	ch, err := gate.ChangeFromPaths(dir, []string{dir})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := shared.Warm(); err != nil {
		b.Fatal(err)
	}
	b.Logf("compiling checks: %v", time.Since(start))
	for b.Loop() {
		rep, err := shared.Lint(context.Background(), ch)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(rep.Findings)), "findings")
	}
}

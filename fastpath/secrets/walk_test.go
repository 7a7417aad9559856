package secrets

import (
	"testing"

	"github.com/sluice-ci/sluice/gate"
)

// walkTree lists the files under root as the CLI's paths mode does, as targets
// with paths relative to root.
func walkTree(tb testing.TB, root string) ([]Target, []Skipped) {
	tb.Helper()
	ch, err := gate.ChangeFromPaths(root, []string{root})
	if err != nil {
		tb.Fatal(err)
	}
	targets := make([]Target, len(ch.Files))
	for i, f := range ch.Files {
		targets[i] = Target{Path: f.Path, Abs: f.Abs}
	}
	skipped := make([]Skipped, len(ch.Skipped))
	for i, s := range ch.Skipped {
		skipped[i] = Skipped{File: s.File, Reason: s.Reason}
	}
	return targets, skipped
}

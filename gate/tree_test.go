package gate

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sluice-ci/sluice/internal/testrepo"
)

func paths(fs []*File) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Path)
	}
	slices.Sort(out)
	return out
}

// TestListDirAndExistingSeeHeadInRangeModeAndDiskInPathsMode: files beside
// a change come from the head commit in range mode, whatever the working
// tree holds, and from disk in paths mode.
func TestListDirAndExistingSeeHeadInRangeModeAndDiskInPathsMode(t *testing.T) {
	r := testrepo.New(t)
	dir := r.Dir
	testrepo.WriteFiles(t, dir, map[string]string{"chart/Chart.yaml": "name: a\n", "chart/templates/a.yaml": "a: 1\n", "chart/values.yaml": "v: 1\n"})
	r.Commit("one")
	testrepo.WriteFiles(t, dir, map[string]string{"chart/values.yaml": "v: 2\n", "chart/templates/b.yaml": "b: 1\n"})
	r.Commit("two")
	// The working tree differs from head: an untracked file and a deletion.
	r.Write("chart/untracked.yaml", "u: 1\n")
	if err := os.Remove(filepath.Join(dir, "chart", "templates", "a.yaml")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	rng, err := ChangeFromRange(ctx, RangeOptions{Dir: dir, Base: "HEAD^"})
	if err != nil {
		t.Fatal(err)
	}
	all, err := rng.ListDir(ctx, "chart", true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := paths(all), []string{"chart/Chart.yaml", "chart/templates/a.yaml", "chart/templates/b.yaml", "chart/values.yaml"}; !slices.Equal(got, want) {
		t.Errorf("range ListDir = %v, want %v", got, want)
	}
	top, err := rng.ListDir(ctx, "chart", false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := paths(top), []string{"chart/Chart.yaml", "chart/values.yaml"}; !slices.Equal(got, want) {
		t.Errorf("range ListDir, not recursive = %v, want %v", got, want)
	}
	var contents []string
	if err := rng.ReadFiles(ctx, top, func(f *File, b []byte) error { contents = append(contents, string(b)); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(contents, "v: 2\n") {
		t.Errorf("ReadFiles of listed files = %q", contents)
	}
	has, err := rng.Existing(ctx, []string{"chart/Chart.yaml", "chart/untracked.yaml", "other/Chart.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if !has["chart/Chart.yaml"] || has["chart/untracked.yaml"] || has["other/Chart.yaml"] {
		t.Errorf("range Existing = %v", has)
	}

	disk, err := ChangeFromPaths(dir, []string{filepath.Join(dir, "chart")})
	if err != nil {
		t.Fatal(err)
	}
	all, err = disk.ListDir(ctx, "chart", true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := paths(all), []string{"chart/Chart.yaml", "chart/templates/b.yaml", "chart/untracked.yaml", "chart/values.yaml"}; !slices.Equal(got, want) {
		t.Errorf("paths ListDir = %v, want %v", got, want)
	}
	has, err = disk.Existing(ctx, []string{"chart/untracked.yaml", "chart/templates/a.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if !has["chart/untracked.yaml"] || has["chart/templates/a.yaml"] {
		t.Errorf("paths Existing = %v", has)
	}
}

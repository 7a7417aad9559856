package gate

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

func gitIn(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.test", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

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
	dir := t.TempDir()
	gitIn(t, dir, "init", "-q")
	writeFiles(t, dir, map[string]string{"chart/Chart.yaml": "name: a\n", "chart/templates/a.yaml": "a: 1\n", "chart/values.yaml": "v: 1\n"})
	gitIn(t, dir, "add", "-A")
	gitIn(t, dir, "commit", "-q", "-m", "one")
	writeFiles(t, dir, map[string]string{"chart/values.yaml": "v: 2\n", "chart/templates/b.yaml": "b: 1\n"})
	gitIn(t, dir, "add", "-A")
	gitIn(t, dir, "commit", "-q", "-m", "two")
	// The working tree differs from head: an untracked file and a deletion.
	writeFiles(t, dir, map[string]string{"chart/untracked.yaml": "u: 1\n"})
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

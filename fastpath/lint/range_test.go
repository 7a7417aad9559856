package lint

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testrepo"
)

// In range mode a chart is read whole from the head commit although the
// change touches only its values, and untouched files are neither read nor
// reported.
func TestRangeModeReadsChartAtHead(t *testing.T) {
	repo := testrepo.New(t)
	root := repo.Dir
	chart, _ := os.ReadFile(filepath.Join("..", "..", "testdata", "lint", "helm", "fail", "templates", "pod.yaml"))
	repo.Write("deploy/app/Chart.yaml", "apiVersion: v2\nname: app\nversion: 0.1.0\n")
	repo.Write("deploy/app/values.yaml", "image: gcr.io/x/app:1.0\nprivileged: false\n")
	repo.Write("deploy/app/templates/pod.yaml", string(chart))
	repo.Write("other/Dockerfile", "FROM ubuntu:latest\n")
	repo.Git("add", ".")
	repo.Git("commit", "-q", "-m", "one")
	repo.Write("deploy/app/values.yaml", "image: gcr.io/x/app:1.0\nprivileged: true\n")
	repo.Git("commit", "-q", "-am", "two")
	// The working tree differs from head: head is what is checked.
	repo.Write("deploy/app/templates/pod.yaml", "not: [valid")

	ch, err := gate.ChangeFromRange(context.Background(), gate.RangeOptions{Dir: root})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := shared.Lint(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, f.Check)
		if !strings.HasPrefix(f.File, "deploy/app/") {
			t.Errorf("finding outside the chart: %s", f)
		}
	}
	if !strings.Contains(strings.Join(got, " "), "KSV-0017") {
		t.Errorf("want the privileged container (KSV-0017) found in the chart at head, got %v", got)
	}
	if rep.Files[Helm] != 1 || rep.Files[Dockerfile] != 0 {
		t.Errorf("files linted = %v, want one chart and no Dockerfile", rep.Files)
	}
}

// A change that touches nothing lintable reads nothing and compiles nothing.
func TestNothingLintable(t *testing.T) {
	l := New(Options{})
	ch := &gate.Change{Mode: gate.PathsMode, Root: t.TempDir()}
	for _, p := range []string{"main.go", "README.md", "docs/x.png", "go.sum"} {
		ch.Files = append(ch.Files, &gate.File{Path: p, Abs: "/nonexistent/" + p})
	}
	rep, err := l.Lint(context.Background(), ch)
	if err != nil {
		t.Fatalf("lint read a file it had no use for: %v", err)
	}
	if len(rep.Findings) != 0 || l.trivy != nil {
		t.Errorf("findings %v, engine compiled %v", rep.Findings, l.trivy != nil)
	}
}

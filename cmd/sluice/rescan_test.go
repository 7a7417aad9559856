package main

import (
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/internal/testrepo"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

func TestRescanQueuesReleasedImagesOnTheBulkLane(t *testing.T) {
	url := testdb.For(t, "sqlite")
	repo := testrepo.New(t)
	repo.Write("main.go", "package main\n")
	repo.Commit("first")
	repo.Write("deploy.yaml", "image: x\n")
	head := repo.Commit("second")
	if res := sluice(t, repo.Dir, "check", "--queue", url, "--base", "HEAD^", "--image", digestRef); res.code != exitPass {
		t.Fatalf("check: exit %d\n%s", res.code, res.stderr)
	}
	other := "registry.example/other@sha256:" + strings.Repeat("b", 64)

	res := sluice(t, repo.Dir, "rescan", "--queue", url, "--since", "7d", "--image", other, "--label", "night-1")
	if res.code != exitPass || !strings.Contains(res.stdout, "sluice rescan night-1: 2 image scan(s) queued on the bulk lane") ||
		!strings.Contains(res.stdout, "queued\t"+digestRef) || !strings.Contains(res.stdout, "queued\t"+other) {
		t.Fatalf("rescan: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = sluice(t, repo.Dir, "rescan", "--queue", url, "--since", "7d", "--label", "night-1")
	if res.code != exitPass || !strings.Contains(res.stdout, "0 image scan(s) queued on the bulk lane") || !strings.Contains(res.stdout, "1 already queued") {
		t.Errorf("the same rescan again: exit %d\n%s", res.code, res.stdout)
	}

	rep := statusJSON(t, repo.Dir, url, head)
	img := runEnv(t, repo.Dir, nil, "status", "--queue", url, "--image", digestRef, "--format", "json")
	lanes := []string{}
	for _, j := range rep.Jobs {
		if j.Kind == queue.KindImageScan {
			lanes = append(lanes, j.Lane)
		}
	}
	if len(lanes) != 1 || lanes[0] != queue.LaneRelease || !strings.Contains(img.stdout, `"lane": "bulk"`) || !strings.Contains(img.stdout, `"lane": "release"`) {
		t.Errorf("the commit keeps its release scan (%v); the image has a release and a bulk job:\n%s", lanes, img.stdout)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"rescan", "--queue", url}, "give --image"},
		{[]string{"rescan", "--queue", url, "--image", "registry.example/app:latest"}, "want a reference by digest"},
		{[]string{"rescan", "--queue", url, "--since", "a week"}, "want a positive number of days"},
		{[]string{"rescan", "--queue", url, "--since", "-1d"}, "want a positive number of days"},
	} {
		if res := sluice(t, repo.Dir, tt.args...); res.code != exitUsage || !strings.Contains(res.stderr, tt.want) {
			t.Errorf("%v: exit %d, want 2 with %q\n%s", tt.args[2:], res.code, tt.want, res.stderr)
		}
	}
}

func TestWorkerCheckRunsNeedAToken(t *testing.T) {
	dir := t.TempDir()
	res := runEnv(t, dir, nil, "worker", "--queue", testdb.For(t, "sqlite"), "--drain", "--check-runs")
	if res.code != exitUsage || !strings.Contains(res.stderr, "--check-runs: GITHUB_TOKEN is not set") {
		t.Errorf("exit %d, want 2 naming the missing token\n%s", res.code, res.stderr)
	}
}

package main

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/sluice-ci/sluice/internal/testrepo"
	"github.com/sluice-ci/sluice/internal/vulnfixture"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

// TestDeepScansThroughTheQueue follows a release through the slow path with
// the real scanners: a DB built from fixture advisories is imported with
// `sluice db import`; `sluice check` defers the image scan of an image of
// this machine's dpkg database, served by an in-process registry, and the
// dependency scan of the commit's lockfiles; `sluice worker --drain` runs
// both with Trivy; `sluice status` shows the vulnerabilities the fixtures
// make of the installed packages, and a repeat check joins the finished
// work instead of queueing it again.
func TestDeepScansThroughTheQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("scans an image with Trivy")
	}
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		t.Skip("needs a Debian machine: /var/lib/dpkg/status")
	}
	ctx := context.Background()
	fixtures := "../../slowpath/deep/testdata"
	pkgs, err := vulnfixture.Installed("/var/lib/dpkg/status", "libc6", "zlib1g", "openssl", "bash", "tar")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	rendered := filepath.Join(work, "debian.yaml")
	if err := vulnfixture.Render(filepath.Join(fixtures, "debian.yaml.tmpl"), rendered, pkgs); err != nil {
		t.Fatal(err)
	}
	built := filepath.Join(work, "built")
	if err := vulnfixture.BuildDB(built, []string{rendered, filepath.Join(fixtures, "lang.yaml")}, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	archive, err := vulnfixture.PackDB(built)
	if err != nil {
		t.Fatal(err)
	}
	dbFile := filepath.Join(work, "db.tar.gz")
	if err := os.WriteFile(dbFile, archive, 0o644); err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	img, err := vulnfixture.DebianImage("/")
	if err != nil {
		t.Fatal(err)
	}
	tag := strings.TrimPrefix(srv.URL, "http://") + "/app/debian:12"
	if err := vulnfixture.Push(ctx, tag, img); err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimSuffix(tag, ":12") + "@" + digest.String()

	repo := testrepo.New(t)
	repo.Write("main.go", "package main\n")
	repo.Commit("first")
	lock, err := os.ReadFile(filepath.Join(fixtures, "repo/web/package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(fixtures, "repo/go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	repo.Write(".sluice.yaml", "version: 1\nqueue:\n  max_attempts: 1\n")
	repo.Write("go.mod", string(mod))
	repo.Write("web/package-lock.json", string(lock))
	head := repo.Commit("dependencies")
	// The working tree moves on: the dependency scan must read the commit.
	repo.Write("web/package-lock.json", "{}\n")

	envs := map[string]string{"XDG_CACHE_HOME": filepath.Join(work, "xdg")}
	if r := sluiceEnv(t, repo.Dir, envs, "db", "import", dbFile); r.code != exitPass {
		t.Fatalf("db import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	url := filepath.Join(work, "queue.db")
	res := sluiceEnv(t, repo.Dir, envs, "check", "--queue", url, "--base", "HEAD^", "--head", head, "--format", "json", "--image", ref)
	v := decodeVerdict(t, res.stdout)
	if res.code != exitPass || len(v.Deferred) != 2 {
		t.Fatalf("check: exit %d, deferred %+v\n%s", res.code, v.Deferred, res.stderr)
	}
	dr := sluiceEnv(t, repo.Dir, envs, "worker", "--queue", url, "--drain", "--insecure")
	if dr.code != exitPass || !strings.Contains(dr.stdout, "2 completed, 0 failed") {
		t.Fatalf("drain: exit %d\n%s\n%s", dr.code, dr.stdout, dr.stderr)
	}

	st := sluiceEnv(t, repo.Dir, envs, "status", "--queue", url, "--commit", head, "--format", "json")
	var rep queue.Report
	if err := json.Unmarshal([]byte(st.stdout), &rep); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, st.stdout)
	}
	got := map[string][]string{}
	for _, j := range rep.Jobs {
		if j.Result == nil || j.State != "completed" {
			t.Fatalf("job %s %s: state %s, errors %q", j.Kind, j.Subject, j.State, j.Errors)
		}
		if !strings.HasPrefix(j.DBVersion, "v2 ") {
			t.Errorf("job %s: DB version %q", j.Kind, j.DBVersion)
		}
		for _, f := range j.Result.Findings {
			if !slices.Contains(got[j.Kind], f.Rule) {
				got[j.Kind] = append(got[j.Kind], f.Rule)
			}
		}
		if j.Kind == queue.KindImageScan && j.Result.SBOMBytes == 0 {
			t.Errorf("image scan stored no SBOM")
		}
	}
	want := map[string][]string{
		queue.KindImageScan:      {"CVE-2099-0001", "CVE-2099-0003", "CVE-2099-0004"},
		queue.KindDependencyScan: {"CVE-2021-23337", "CVE-2022-32149"},
	}
	for kind, ids := range want {
		slices.Sort(got[kind])
		if !slices.Equal(got[kind], ids) {
			t.Errorf("%s found %v, want %v", kind, got[kind], ids)
		}
	}
	if rep.Pending != 0 || rep.Failed != 0 || rep.ExposureOpen {
		t.Errorf("status after the worker: %d pending, %d failed, exposure open %v", rep.Pending, rep.Failed, rep.ExposureOpen)
	}

	// The same image and commit under the same policy and DB: joined, not
	// queued again, and nothing is left for a worker.
	again := decodeVerdict(t, sluiceEnv(t, repo.Dir, envs, "check", "--queue", url, "--base", "HEAD^", "--head", head, "--format", "json", "--image", ref).stdout)
	for _, d := range again.Deferred {
		if !d.Enqueued || !strings.Contains(d.Reason, "already") {
			t.Errorf("repeat check: %s %s: %+v", d.Kind, d.Subject, d)
		}
	}
	// By tag, the image may be another one next time: its scan is queued
	// for this check, and the verdict says why.
	byTag := decodeVerdict(t, sluiceEnv(t, repo.Dir, envs, "check", "--queue", url, "--base", "HEAD^", "--head", head, "--format", "json", "--image", tag).stdout)
	for _, d := range byTag.Deferred {
		switch d.Kind {
		case queue.KindImageScan:
			if !d.Enqueued || !strings.Contains(d.Reason, "given by tag") {
				t.Errorf("image by tag: %+v", d)
			}
		default:
			if !strings.Contains(d.Reason, "already") {
				t.Errorf("repeat check by tag: %s was not joined: %+v", d.Kind, d)
			}
		}
	}
	dr = sluiceEnv(t, repo.Dir, envs, "worker", "--queue", url, "--drain", "--insecure")
	if dr.code != exitPass || !strings.Contains(dr.stdout, "1 completed, 0 failed") {
		t.Errorf("second drain: want only the image by tag scanned: exit %d\n%s%s", dr.code, dr.stdout, dr.stderr)
	}
}

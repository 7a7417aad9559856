package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/internal/testrepo"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

const digestRef = "registry.example/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestCheckWorkerStatus follows one change through the slow path with the
// CLI: check enqueues what it defers, a repeat joins it, status shows it
// pending, worker --drain runs it, status shows the results.
func TestCheckWorkerStatus(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			url := testdb.For(t, driver)
			repo := testrepo.New(t)
			repo.Write("main.go", "package main\n")
			repo.Commit("first")
			// secrets overruns a 1µs budget and is deferred; go.mod calls
			// for a dependency scan; the image for an image scan.
			repo.Write(".sluice.yaml", "version: 1\nqueue:\n  max_attempts: 1\ncontrols:\n  secrets:\n    budget: 1us\n    on_overrun: defer\n")
			repo.Write("go.mod", "module example.test/x\n")
			head := repo.Commit("second")

			res := sluice(t, repo.Dir, "check", "--queue", url, "--base", "HEAD^", "--format", "json", "--image", digestRef)
			v := decodeVerdict(t, res.stdout)
			if res.code != exitPass || len(v.Deferred) != 3 {
				t.Fatalf("check: exit %d, deferred %+v\n%s", res.code, v.Deferred, res.stderr)
			}
			jobs := map[string]string{}
			for _, d := range v.Deferred {
				if !d.Enqueued || d.Job == "" {
					t.Errorf("deferred %s %s not enqueued: %s", d.Kind, d.Subject, d.Reason)
				}
				jobs[d.Kind] = d.Job
			}
			again := decodeVerdict(t, sluice(t, repo.Dir, "check", "--queue", url, "--base", "HEAD^", "--format", "json", "--image", digestRef).stdout)
			for _, d := range again.Deferred {
				if d.Job != jobs[d.Kind] || !strings.HasPrefix(d.Reason, "already queued") {
					t.Errorf("repeat check: %s got job %s (%s), want to join %s", d.Kind, d.Job, d.Reason, jobs[d.Kind])
				}
			}

			st := sluice(t, repo.Dir, "status", "--queue", url, "--format", "json")
			var rep queue.Report
			if err := json.Unmarshal([]byte(st.stdout), &rep); err != nil {
				t.Fatalf("status JSON: %v\n%s", err, st.stdout)
			}
			if st.code != exitPending || rep.Query != "commit:"+head || len(rep.Jobs) != 3 || rep.Pending != 3 || !rep.ExposureOpen || len(rep.Verdicts) != 2 {
				t.Fatalf("status before the worker: exit %d %+v", st.code, rep)
			}

			dr := sluice(t, repo.Dir, "worker", "--queue", url, "--drain")
			// No vulnerability DB is installed: the deep scans fail after
			// max_attempts (1), saying how to install one, and drain says so.
			if dr.code != exitBlocked || !strings.Contains(dr.stdout, "1 completed, 2 failed") {
				t.Fatalf("drain: exit %d\n%s\n%s", dr.code, dr.stdout, dr.stderr)
			}

			st = sluice(t, repo.Dir, "status", "--queue", url, "--commit", head)
			for _, want := range []string{
				"slow-path status of commit:" + head,
				"deferred", "completed", "failed",
				"run `sluice db fetch`",
				"3 job(s): 0 pending, 2 failed",
			} {
				if !strings.Contains(st.stdout, want) {
					t.Errorf("status text lacks %q:\n%s", want, st.stdout)
				}
			}
			if st.code != exitBlocked {
				t.Errorf("status with failed jobs: exit %d, want %d", st.code, exitBlocked)
			}
			img := sluice(t, repo.Dir, "status", "--queue", url, "--format", "json", "--image", "other.example/app@"+strings.Split(digestRef, "@")[1])
			var ir queue.Report
			if err := json.Unmarshal([]byte(img.stdout), &ir); err != nil || len(ir.Jobs) != 1 || ir.Jobs[0].Kind != queue.KindImageScan {
				t.Errorf("status by digest: %v %+v", err, ir)
			}
		})
	}
}

func TestCheckResolvesAnUnreachableQueueByThePolicy(t *testing.T) {
	const down = "postgres://sluice:s3cret-pw@127.0.0.1:1/sluice?sslmode=disable&connect_timeout=1"
	for _, tt := range []struct {
		mode     string
		wantCode int
		want     string
	}{
		{"fail-closed", exitBlocked, "could not be enqueued"},
		{"fail-open", exitPass, "were NOT enqueued"},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			dir := t.TempDir()
			testrepo.WriteFiles(t, dir, map[string]string{
				".sluice.yaml": "version: 1\nqueue:\n  on_unreachable: " + tt.mode + "\n",
				"go.mod":       "module x\n",
			})
			res := sluice(t, dir, "check", "--queue", down, "--format", "json", "--image", digestRef, filepath.Join(dir, "go.mod"))
			v := decodeVerdict(t, res.stdout)
			if res.code != tt.wantCode || !strings.Contains(strings.Join(v.Warnings, "\n"), tt.want) {
				t.Errorf("exit %d (want %d), warnings %q", res.code, tt.wantCode, v.Warnings)
			}
			for _, d := range v.Deferred {
				if d.Enqueued || !strings.Contains(d.Reason, "queue unreachable") {
					t.Errorf("deferred %s: %+v", d.Kind, d)
				}
			}
			if strings.Contains(res.stdout+res.stderr, "s3cret-pw") {
				t.Errorf("the queue password appears in the output")
			}
		})
	}
}

func TestStatusWritesStoredSBOMs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	url := filepath.Join(dir, "q.db")
	q, err := queue.Open(ctx, url, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	job := queue.Job{Kind: queue.KindImageScan, Subject: digestRef, Control: "image-scan"}
	rs, err := q.Enqueue(ctx, []queue.Job{job})
	if err != nil {
		t.Fatal(err)
	}
	job.Key = queue.KeyFor(job.Kind, job.Subject, job.Control, "", "")
	sbom := `{"bomFormat":"CycloneDX","specVersion":"1.6"}`
	if _, _, err := q.Complete(ctx, queue.Run{Job: job, Attempt: 1, Started: time.Now().UnixMilli(), Finished: time.Now().UnixMilli(), Status: "passed"}, queue.Result{SBOM: []byte(sbom)}); err != nil {
		t.Fatal(err)
	}
	q.Close()
	out := filepath.Join(dir, "sboms")
	res := sluice(t, dir, "status", "--queue", url, "--image", digestRef, "--sbom-dir", out)
	if res.code != exitPass {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	got, err := os.ReadFile(filepath.Join(out, "job-"+rs[0].Job+".cdx.json"))
	if err != nil || string(got) != sbom {
		t.Errorf("SBOM file: %q, %v", got, err)
	}
	if !strings.Contains(res.stdout, fmt.Sprintf("SBOM %d bytes", len(sbom))) {
		t.Errorf("status text does not mention the SBOM:\n%s", res.stdout)
	}
}

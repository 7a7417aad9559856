package queue_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

// TestCheckRunPublication: a check in a GitHub repository records where
// each job's check run goes; a conclusion awaits publication; a failed
// publish is retried at most MaxPublishAttempts times; a new conclusion
// (the job run again after failing for good) is published anew.
func TestCheckRunPublication(t *testing.T) {
	head := strings.Repeat("a", 40)
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			q, err := queue.Open(ctx, testdb.For(t, driver), queue.Options{Repository: "acme/app"})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			ch := &gate.Change{Mode: gate.RangeMode, Head: head}
			v := &gate.Verdict{Verdict: "pass", Deferred: []gate.Deferred{{Kind: queue.KindImageScan, Subject: "r.example/a@sha256:1", Control: "image-scan"}}}
			if _, err := q.Record(ctx, v, ch); err != nil {
				t.Fatal(err)
			}
			// A paths-mode check has no commit: nothing to publish on.
			if _, err := q.Record(ctx, &gate.Verdict{Verdict: "pass", Deferred: []gate.Deferred{{Kind: queue.KindDependencyScan, Subject: "paths:x", Control: "dependency-scan"}}},
				&gate.Change{Mode: gate.PathsMode, Paths: []string{"x"}}); err != nil {
				t.Fatal(err)
			}
			pj := queue.Job{Kind: queue.KindDependencyScan, Subject: "paths:x", Control: "dependency-scan"}
			pj.Key = queue.KeyFor(pj.Kind, pj.Subject, pj.Control, "", "")
			if err := q.Fail(ctx, queue.Run{Job: pj, Attempt: 1, Started: 1, Finished: 2, Status: "errored"}, errors.New("x"), true); err != nil {
				t.Fatal(err)
			}
			if _, ok, err := q.Concluded(ctx, pj.Key); ok || err != nil {
				t.Fatalf("a paths-mode job has no check run: ok %v, err %v", ok, err)
			}
			job := queue.Job{Kind: queue.KindImageScan, Subject: "r.example/a@sha256:1", Control: "image-scan"}
			job.Key = queue.KeyFor(job.Kind, job.Subject, job.Control, "", "")
			if _, ok, err := q.Concluded(ctx, job.Key); ok || err != nil {
				t.Fatalf("a queued job has nothing to publish: ok %v, err %v", ok, err)
			}
			if err := q.Fail(ctx, queue.Run{Job: job, Attempt: 5, Started: 1, Finished: 2, Status: "errored"}, errors.New("scanner down"), true); err != nil {
				t.Fatal(err)
			}
			c, ok, err := q.Concluded(ctx, job.Key)
			if !ok || err != nil || c.State != queue.StateFailed || c.Repo != "acme/app" || c.HeadSHA != head || c.Error != "scanner down" {
				t.Fatalf("after failing for good: %+v %v %v", c, ok, err)
			}
			for i := 1; i <= queue.MaxPublishAttempts; i++ {
				keys, err := q.Unpublished(ctx)
				if err != nil || len(keys) != 1 || keys[0] != job.Key {
					t.Fatalf("before publish attempt %d: unpublished %v %v", i, keys, err)
				}
				if err := q.Published(ctx, job.Key, 0, errors.New("GitHub API: 502")); err != nil {
					t.Fatal(err)
				}
			}
			if keys, _ := q.Unpublished(ctx); len(keys) != 0 {
				t.Fatalf("after %d failed publishes it must give up, still listed: %v", queue.MaxPublishAttempts, keys)
			}
			if c, _, _ := q.Concluded(ctx, job.Key); c.Publish != queue.PublishFailed {
				t.Fatalf("publish state %q, want failed", c.Publish)
			}
			// Run again from River's UI, it completes: published anew.
			if _, _, err := q.Complete(ctx, queue.Run{Job: job, Attempt: 6, Started: 3, Finished: 4, Status: "passed"}, queue.Result{}); err != nil {
				t.Fatal(err)
			}
			c, ok, _ = q.Concluded(ctx, job.Key)
			if !ok || c.State != queue.StateCompleted || c.Status != "passed" || c.Publish != queue.PublishAwaiting {
				t.Fatalf("after a new result: %+v", c)
			}
			if err := q.Published(ctx, job.Key, 77, nil); err != nil {
				t.Fatal(err)
			}
			rep, err := q.Status(ctx, queue.Query{Subject: "commit:" + head})
			if err != nil || len(rep.Jobs) != 1 || rep.Jobs[0].CheckRun == nil || *rep.Jobs[0].CheckRun != (queue.CheckRun{Repo: "acme/app", HeadSHA: head, State: queue.PublishDone, Attempts: 1, ID: 77}) {
				t.Fatalf("status: %+v %v", rep, err)
			}
			if keys, _ := q.Unpublished(ctx); len(keys) != 0 {
				t.Errorf("published, still listed: %v", keys)
			}
		})
	}
}

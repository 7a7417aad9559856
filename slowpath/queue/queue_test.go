package queue_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

func openQ(t testing.TB, driver string) *queue.Queue {
	t.Helper()
	q, err := queue.Open(context.Background(), testdb.For(t, driver), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}

func TestStore(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()

			t.Run("a verdict and its deferred work are recorded together or not at all", func(t *testing.T) {
				q := openQ(t, driver)
				ch := &gate.Change{Mode: gate.RangeMode, Head: "h1"}
				v := &gate.Verdict{Verdict: "pass", Controls: []gate.ControlRun{{Name: "secrets", Path: gate.Fast, Status: "passed"}},
					Deferred: []gate.Deferred{
						{Kind: queue.KindDependencyScan, Subject: "commit:h1", Control: "dependency-scan"},
						{Kind: "no-such-kind", Subject: "commit:h1", Control: "x"},
					}}
				if _, err := q.Record(ctx, v, ch); err == nil || !strings.Contains(err.Error(), `unknown job kind "no-such-kind"`) {
					t.Fatalf("record: want the unknown kind refused, got %v", err)
				}
				rep, err := q.Status(ctx, queue.Query{Subject: "commit:h1"})
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Verdicts) != 0 || len(rep.Jobs) != 0 {
					t.Fatalf("a failed record left %d verdicts and %d jobs behind", len(rep.Verdicts), len(rep.Jobs))
				}
				v.Deferred = v.Deferred[:1]
				if _, err := q.Record(ctx, v, ch); err != nil {
					t.Fatal(err)
				}
				rep, err = q.Status(ctx, queue.Query{Subject: "commit:h1"})
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Verdicts) != 1 || len(rep.Jobs) != 1 || rep.Pending != 1 || !rep.ExposureOpen || rep.Jobs[0].State != queue.StateQueued {
					t.Fatalf("want one verdict and one queued job with an open exposure, got %+v", rep)
				}
			})

			t.Run("a job's result is stored once however often it completes", func(t *testing.T) {
				q := openQ(t, driver)
				job := queue.Job{Kind: queue.KindImageScan, Subject: "r.example/a@sha256:1", Control: "image-scan"}
				rs, err := q.Enqueue(ctx, []queue.Job{job})
				if err != nil {
					t.Fatal(err)
				}
				job.Key = queue.KeyFor(job.Kind, job.Subject, job.Control, "", "")
				first := queue.Run{Job: job, Attempt: 1, Started: 1000, Finished: 2000, Status: "passed"}
				stored, _, err := q.Complete(ctx, first, queue.Result{Notes: []string{"first"}})
				if err != nil || !stored {
					t.Fatalf("first completion: stored %v, err %v", stored, err)
				}
				second := queue.Run{Job: job, Attempt: 2, Started: 3000, Finished: 4000, Status: "failed"}
				stored, _, err = q.Complete(ctx, second, queue.Result{Notes: []string{"second"}})
				if err != nil || stored {
					t.Fatalf("second completion: stored %v, err %v; want the first result kept", stored, err)
				}
				rep, err := q.Status(ctx, queue.Query{Subject: job.Subject})
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Jobs) != 1 || rep.Jobs[0].Job != rs[0].Job || rep.Jobs[0].Result == nil || rep.Jobs[0].Result.Notes[0] != "first" || rep.Jobs[0].Result.Attempt != 1 {
					t.Fatalf("want the first result only, got %+v", rep.Jobs)
				}
			})

			t.Run("status needs a subject", func(t *testing.T) {
				q := openQ(t, driver)
				if _, err := q.Status(ctx, queue.Query{}); err == nil {
					t.Fatal("want an error")
				}
			})
		})
	}
}

func TestOpenRefusesAnUnreachablePostgres(t *testing.T) {
	ctx := context.Background()
	_, err := queue.Open(ctx, "postgres://sluice:hunter2-secret@127.0.0.1:1/sluice?sslmode=disable&connect_timeout=2", queue.Options{})
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), "hunter2-secret") {
		t.Errorf("the error shows the password: %v", err)
	}
	if !strings.Contains(err.Error(), "opening queue postgres://sluice:xxxxx@127.0.0.1:1/sluice") {
		t.Errorf("the error does not name the queue: %v", err)
	}
}

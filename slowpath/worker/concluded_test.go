package worker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/slowpath/queue"
	"github.com/sluice-ci/sluice/slowpath/worker"
)

// TestOnConcludedSeesStoredConclusions: the hook is called once per job,
// after its conclusion is stored (completed, or failed for good), never for
// an attempt that will be retried.
func TestOnConcludedSeesStoredConclusions(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			head := strings.Repeat("c", 40)
			q := open(t, driver, queue.Options{MaxAttempts: 2, Repository: "acme/app"})
			ctx := context.Background()
			v, ch := verdict(head)
			if _, err := q.Record(ctx, v, ch); err != nil {
				t.Fatal(err)
			}
			deferredRuns := 0
			rec := &recorder{fn: func(ctx context.Context, j queue.Job, _ int) (worker.Outcome, error) {
				if j.Kind == queue.KindImageScan {
					return worker.Outcome{}, errors.New("scanner down")
				}
				if deferredRuns++; deferredRuns == 1 {
					return worker.Outcome{}, errors.New("flaky")
				}
				return worker.Outcome{Findings: []gate.Finding{{Rule: "r", Severity: "HIGH", File: "a.go", Line: 2, Message: "m"}}}, nil
			}}
			var mu sync.Mutex
			got := map[string]queue.Conclusion{}
			calls := 0
			w := newWorker(t, q, worker.Options{Concurrency: 1, Analyzers: rec.all(), OnConcluded: func(ctx context.Context, j queue.Job) {
				c, ok, err := q.Concluded(ctx, j.Key)
				mu.Lock()
				defer mu.Unlock()
				calls++
				if err != nil || !ok {
					t.Errorf("job %s %s: concluded %v, err %v: the conclusion must be stored before the hook runs", j.Kind, j.Subject, ok, err)
				}
				got[j.Kind] = c
			}})
			if failed := drain(t, w); failed != 1 {
				t.Errorf("drain: %d failed, want 1", failed)
			}
			if n := len(rec.ran()); n != 4 || calls != 2 {
				t.Fatalf("%d attempts and %d notifications; want 4 attempts (two per job) and 2 notifications", n, calls)
			}
			img, def := got[queue.KindImageScan], got[queue.KindDeferred]
			if img.State != queue.StateFailed || img.Status != "errored" || !strings.Contains(img.Error, "scanner down") || img.Attempts != 2 {
				t.Errorf("image-scan conclusion %+v", img)
			}
			if def.State != queue.StateCompleted || def.Status != "failed" || len(def.Findings) != 1 || def.HeadSHA != head || def.Repo != "acme/app" {
				t.Errorf("deferred conclusion %+v", def)
			}
			keys, err := q.Unpublished(ctx)
			if err != nil || len(keys) != 2 {
				t.Errorf("unpublished: %v %v; want both jobs awaiting their check runs", keys, err)
			}
		})
	}
}

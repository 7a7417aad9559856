package worker_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/riverqueue/river/rivertype"
	"github.com/sourcegraph/conc"
	"github.com/sourcegraph/conc/pool"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/slowpath/queue"
	"github.com/sluice-ci/sluice/slowpath/worker"
)

// fastRetry retries after 10ms, so that tests do not wait on River's
// default backoff.
type fastRetry struct{}

func (fastRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(10 * time.Millisecond) }

func open(t testing.TB, driver string, opts queue.Options) *queue.Queue {
	t.Helper()
	q, err := queue.Open(context.Background(), testdb.For(t, driver), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}

func newWorker(t testing.TB, q *queue.Queue, opts worker.Options) *worker.Worker {
	t.Helper()
	if opts.RetryPolicy == nil {
		opts.RetryPolicy = fastRetry{}
	}
	opts.PollInterval = 50 * time.Millisecond
	w, err := worker.New(q, opts)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func drain(t testing.TB, w *worker.Worker) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	failed, err := w.Drain(ctx)
	if err != nil {
		t.Fatalf("draining: %v", err)
	}
	return failed
}

// verdict is what a check of commit head with an image and an overrun
// fast control defers.
func verdict(head string) (*gate.Verdict, *gate.Change) {
	ch := &gate.Change{Mode: gate.RangeMode, Root: "/repo", Base: "base", Head: head}
	v := &gate.Verdict{
		Schema: gate.Schema, Verdict: "pass",
		Policy: gate.PolicyInfo{Source: ".sluice.yaml", Digest: "sha256:p1", Version: 1},
		Controls: []gate.ControlRun{
			{Name: "secrets", Path: gate.Fast, Status: budgets.Passed, DurationMS: 12, BudgetMS: 2000},
			{Name: "lint", Path: gate.Fast, Status: budgets.Deferred, DurationMS: 50, BudgetMS: 50, ModeApplied: budgets.Defer},
		},
		Deferred: []gate.Deferred{
			{Kind: queue.KindImageScan, Subject: "reg.example/app@sha256:aaaa", Control: "image-scan", Why: "slow placement"},
			{Kind: queue.KindDeferred, Subject: ch.Subject(), Control: "lint", Why: "overran its budget"},
		},
	}
	return v, ch
}

// recorder is a controlled analyzer: it records what ran and answers by
// a function.
type recorder struct {
	mu   sync.Mutex
	runs []string
	fn   func(ctx context.Context, j queue.Job, n int) (worker.Outcome, error)
}

func (r *recorder) analyze(ctx context.Context, j queue.Job) (worker.Outcome, error) {
	r.mu.Lock()
	r.runs = append(r.runs, j.Kind+" "+j.Subject)
	n := len(r.runs)
	r.mu.Unlock()
	if r.fn == nil {
		return worker.Outcome{}, nil
	}
	return r.fn(ctx, j, n)
}

func (r *recorder) all() map[string]worker.Analyzer {
	return map[string]worker.Analyzer{queue.KindImageScan: r.analyze, queue.KindDependencyScan: r.analyze, queue.KindDeferred: r.analyze}
}

func (r *recorder) ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.runs)
}

func TestJobSemantics(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			t.Run("a check's deferred work is queued once and analysed once", func(t *testing.T) {
				q := open(t, driver, queue.Options{DBVersion: "db-1"})
				ctx := context.Background()
				v, ch := verdict("c1")
				first, err := q.Record(ctx, v, ch)
				if err != nil {
					t.Fatal(err)
				}
				if len(first) != 2 || first[0].Duplicate || first[1].Duplicate || first[0].Job == first[1].Job {
					t.Fatalf("first record: want two new jobs, got %+v", first)
				}
				again, err := q.Record(ctx, v, ch)
				if err != nil {
					t.Fatal(err)
				}
				for i := range again {
					if !again[i].Duplicate || again[i].Job != first[i].Job {
						t.Errorf("second record of item %d: want duplicate of job %s, got %+v", i, first[i].Job, again[i])
					}
				}
				rec := &recorder{fn: func(_ context.Context, j queue.Job, _ int) (worker.Outcome, error) {
					if j.Kind == queue.KindImageScan {
						return worker.Outcome{
							Findings:  []gate.Finding{{Rule: "CVE-2024-0001", Severity: "HIGH", Message: "openssl 3.0.1"}},
							SBOM:      []byte(`{"bomFormat":"CycloneDX"}`),
							DBVersion: "db-1",
						}, nil
					}
					return worker.Outcome{}, nil
				}}
				reg := prometheus.NewRegistry()
				m, err := worker.NewMetrics(reg, q, nil)
				if err != nil {
					t.Fatal(err)
				}
				w := newWorker(t, q, worker.Options{Concurrency: 2, Analyzers: rec.all(), Metrics: m})
				if failed := drain(t, w); failed != 0 {
					t.Errorf("drain: %d failed, want 0", failed)
				}
				if got := rec.ran(); len(got) != 2 {
					t.Errorf("analysed %d times, want 2 (one per unit of work): %v", len(got), got)
				}
				if n := testutil.CollectAndCount(reg, "sluice_exposure_window_seconds"); n != 2 {
					t.Errorf("exposure window: %d series, want one per kind (2)", n)
				}
				ledger, err := q.Ledger(ctx, "commit:c1")
				if err != nil {
					t.Fatal(err)
				}
				var fast, slow []string
				for _, l := range ledger {
					if l.Placement == "fast" {
						fast = append(fast, l.Control+" "+l.Status)
					} else {
						slow = append(slow, fmt.Sprintf("%s %s attempt %d budget %d", l.Control, l.Status, l.Attempt, l.BudgetMS))
					}
				}
				if want := []string{"secrets passed", "lint deferred", "secrets passed", "lint deferred"}; !slices.Equal(fast, want) {
					t.Errorf("ledger, fast: %v, want %v (one pair per recorded verdict)", fast, want)
				}
				if want := []string{"lint passed attempt 1 budget 600000"}; !slices.Equal(slow, want) {
					t.Errorf("ledger, slow runs of the change: %v, want %v", slow, want)
				}
				// A third check after the work is done joins it too.
				third, err := q.Record(ctx, v, ch)
				if err != nil {
					t.Fatal(err)
				}
				if !third[0].Duplicate || third[0].Job != first[0].Job {
					t.Errorf("record after completion: want duplicate of %s, got %+v", first[0].Job, third[0])
				}
				rep, err := q.Status(ctx, queue.Query{Subject: "commit:c1"})
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Verdicts) != 3 || len(rep.Jobs) != 2 || rep.Pending != 0 || rep.Failed != 0 || rep.ExposureOpen {
					t.Fatalf("status: want 3 verdicts, 2 finished jobs, exposure closed; got %+v", rep)
				}
				byDigest, err := q.Status(ctx, queue.Query{Digest: "sha256:aaaa"})
				if err != nil {
					t.Fatal(err)
				}
				if len(byDigest.Jobs) != 1 || byDigest.Jobs[0].Result == nil {
					t.Fatalf("status by digest: want the image job with its result, got %+v", byDigest)
				}
				res := byDigest.Jobs[0].Result
				if res.Status != "failed" || len(res.Findings) != 1 || res.Findings[0].Rule != "CVE-2024-0001" || string(res.SBOM) != `{"bomFormat":"CycloneDX"}` || res.SBOMBytes != len(res.SBOM) || res.DBVersion != "db-1" {
					t.Errorf("stored result: got %+v", res)
				}
				if byDigest.Jobs[0].State != queue.StateCompleted || byDigest.Jobs[0].RiverState != "completed" {
					t.Errorf("state: got %s (river %s), want completed", byDigest.Jobs[0].State, byDigest.Jobs[0].RiverState)
				}
				if byDigest.Jobs[0].ExposureMS < 0 || byDigest.Jobs[0].Open {
					t.Errorf("exposure: got %dms open=%v, want a closed window", byDigest.Jobs[0].ExposureMS, byDigest.Jobs[0].Open)
				}
			})

			t.Run("a new DB version queues the same subject again", func(t *testing.T) {
				ctx := context.Background()
				url := testdb.For(t, driver)
				v, ch := verdict("c2")
				var jobs []string
				for _, db := range []string{"db-1", "db-2"} {
					q, err := queue.Open(ctx, url, queue.Options{DBVersion: db})
					if err != nil {
						t.Fatal(err)
					}
					rs, err := q.Record(ctx, v, ch)
					q.Close()
					if err != nil {
						t.Fatal(err)
					}
					if rs[0].Duplicate {
						t.Errorf("DB %s: image scan joined an earlier job; want a new one", db)
					}
					jobs = append(jobs, rs[0].Job)
				}
				if jobs[0] == jobs[1] {
					t.Errorf("both DB versions got job %s", jobs[0])
				}
			})

			t.Run("a failing job is retried with backoff up to its limit, then reported failed", func(t *testing.T) {
				q := open(t, driver, queue.Options{MaxAttempts: 3})
				ctx := context.Background()
				v, ch := verdict("c3")
				v.Deferred = v.Deferred[:1]
				if _, err := q.Record(ctx, v, ch); err != nil {
					t.Fatal(err)
				}
				rec := &recorder{fn: func(_ context.Context, _ queue.Job, n int) (worker.Outcome, error) {
					return worker.Outcome{}, fmt.Errorf("registry said no (try %d)", n)
				}}
				reg := prometheus.NewRegistry()
				m, err := worker.NewMetrics(reg, q, nil)
				if err != nil {
					t.Fatal(err)
				}
				w := newWorker(t, q, worker.Options{Analyzers: rec.all(), Metrics: m})
				if failed := drain(t, w); failed != 1 {
					t.Errorf("drain: %d failed, want 1", failed)
				}
				if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP sluice_job_failures_total Failed slow-path job attempts, by kind and whether the failure was final.
# TYPE sluice_job_failures_total counter
sluice_job_failures_total{final="false",kind="image-scan"} 2
sluice_job_failures_total{final="true",kind="image-scan"} 1
# HELP sluice_job_retries_total Slow-path job attempts after the first, by kind.
# TYPE sluice_job_retries_total counter
sluice_job_retries_total{kind="image-scan"} 2
`), "sluice_job_failures_total", "sluice_job_retries_total"); err != nil {
					t.Errorf("metrics: %v", err)
				}
				if n := len(rec.ran()); n != 3 {
					t.Errorf("ran %d times, want 3 (max_attempts)", n)
				}
				rep, err := q.Status(ctx, queue.Query{Subject: "commit:c3"})
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Jobs) != 1 {
					t.Fatalf("want one job, got %+v", rep.Jobs)
				}
				j := rep.Jobs[0]
				if j.State != queue.StateFailed || j.RiverState != "discarded" || j.Attempts != 3 || len(j.Errors) != 3 || rep.Failed != 1 || !rep.ExposureOpen {
					t.Errorf("status: want failed after 3 attempts with 3 errors and an open exposure; got %+v", j)
				}
				if j.Result != nil {
					t.Errorf("a failed job has no result, got %+v", j.Result)
				}
			})

			t.Run("a job past its budget is cancelled, recorded overran, and retried", func(t *testing.T) {
				q := open(t, driver, queue.Options{MaxAttempts: 2, DeferredBudget: 200 * time.Millisecond})
				ctx := context.Background()
				v, ch := verdict("c4")
				v.Deferred = v.Deferred[1:]
				if _, err := q.Record(ctx, v, ch); err != nil {
					t.Fatal(err)
				}
				rec := &recorder{fn: func(ctx context.Context, _ queue.Job, n int) (worker.Outcome, error) {
					if n == 1 {
						<-ctx.Done() // overrun: only the budget ends it
						return worker.Outcome{}, ctx.Err()
					}
					return worker.Outcome{Notes: []string{"second try"}}, nil
				}}
				w := newWorker(t, q, worker.Options{Analyzers: rec.all()})
				if failed := drain(t, w); failed != 0 {
					t.Errorf("drain: %d failed, want 0", failed)
				}
				rep, err := q.Status(ctx, queue.Query{Subject: "commit:c4"})
				if err != nil {
					t.Fatal(err)
				}
				j := rep.Jobs[0]
				if j.Result == nil || j.Result.Attempt != 2 || len(j.Errors) != 1 {
					t.Fatalf("want a result from attempt 2 after one overrun; got %+v", j)
				}
				if !containsAll(j.Errors[0], "ran past its budget of 200ms") {
					t.Errorf("first attempt's error: %q", j.Errors[0])
				}
			})

			t.Run("release-path jobs run ahead of a bulk rescan", func(t *testing.T) {
				q := open(t, driver, queue.Options{})
				ctx := context.Background()
				var bulk []queue.Job
				for i := range 12 {
					bulk = append(bulk, queue.Job{Kind: queue.KindImageScan, Subject: "reg.example/old@sha256:" + strconv.Itoa(i), Control: "image-scan", Lane: queue.LaneBulk})
				}
				if _, err := q.Enqueue(ctx, bulk); err != nil {
					t.Fatal(err)
				}
				v, ch := verdict("c5")
				v.Deferred = v.Deferred[:1]
				if _, err := q.Record(ctx, v, ch); err != nil {
					t.Fatal(err)
				}
				// A second release arrives while the rescan is under way: it
				// runs next, not after the rest of the rescan.
				late, lateCh := verdict("c5-late")
				late.Deferred = late.Deferred[1:]
				rec := &recorder{}
				rec.fn = func(ctx context.Context, j queue.Job, n int) (worker.Outcome, error) {
					if n == 3 {
						if _, err := q.Record(ctx, late, lateCh); err != nil {
							return worker.Outcome{}, err
						}
					}
					return worker.Outcome{}, nil
				}
				w := newWorker(t, q, worker.Options{Concurrency: 1, Analyzers: rec.all()})
				drain(t, w)
				got := rec.ran()
				if len(got) != 14 || got[0] != "image-scan reg.example/app@sha256:aaaa" || got[3] != "deferred commit:c5-late" {
					t.Errorf("order: want the release job first and the late release 4th of 14, got %v", got)
				}
			})

			t.Run("concurrent checks of the same work join one job", func(t *testing.T) {
				url := testdb.For(t, driver)
				ctx := context.Background()
				v, ch := verdict("c6")
				p := pool.NewWithResults[string]().WithErrors()
				for range 4 {
					p.Go(func() (string, error) {
						q, err := queue.Open(ctx, url, queue.Options{})
						if err != nil {
							return "", err
						}
						defer q.Close()
						rs, err := q.Record(ctx, v, ch)
						if err != nil {
							return "", err
						}
						return rs[0].Job, nil
					})
				}
				jobs, err := p.Wait()
				if err != nil {
					t.Fatal(err)
				}
				for _, j := range jobs[1:] {
					if j != jobs[0] {
						t.Errorf("concurrent records got jobs %v, want one", jobs)
						break
					}
				}
				q, err := queue.Open(ctx, url, queue.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer q.Close()
				rep, err := q.Status(ctx, queue.Query{Subject: "commit:c6"})
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Verdicts) != 4 || len(rep.Jobs) != 2 {
					t.Errorf("want 4 verdicts and 2 jobs, got %d and %d", len(rep.Verdicts), len(rep.Jobs))
				}
			})

			t.Run("a stopping worker lets a running job finish within its grace", func(t *testing.T) {
				q := open(t, driver, queue.Options{})
				ctx, cancel := context.WithCancel(context.Background())
				v, ch := verdict("c7")
				v.Deferred = v.Deferred[:1]
				if _, err := q.Record(ctx, v, ch); err != nil {
					t.Fatal(err)
				}
				started, release := make(chan struct{}), make(chan struct{})
				rec := &recorder{fn: func(context.Context, queue.Job, int) (worker.Outcome, error) {
					close(started)
					<-release // finishes after the stop began, ignoring nothing
					return worker.Outcome{Notes: []string{"finished during shutdown"}}, nil
				}}
				w := newWorker(t, q, worker.Options{Analyzers: rec.all()})
				var run conc.WaitGroup
				var runErr error
				run.Go(func() { runErr = w.Run(ctx, time.Minute) })
				<-started
				cancel() // SIGTERM
				close(release)
				run.Wait()
				if runErr != nil {
					t.Fatalf("run: %v", runErr)
				}
				rep, err := q.Status(context.Background(), queue.Query{Subject: "commit:c7"})
				if err != nil {
					t.Fatal(err)
				}
				if j := rep.Jobs[0]; j.Result == nil || j.RiverState != "completed" {
					t.Errorf("the job running at shutdown: want completed with a result, got %+v", j)
				}
			})

			t.Run("migrations are idempotent", func(t *testing.T) {
				url := testdb.For(t, driver)
				for range 2 {
					q, err := queue.Open(context.Background(), url, queue.Options{})
					if err != nil {
						t.Fatalf("opening twice: %v", err)
					}
					q.Close()
				}
			})
		})
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

package queue_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

// clock is a settable time source for the queue.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func openAt(t testing.TB, driver string, c *clock) *queue.Queue {
	t.Helper()
	q, err := queue.Open(context.Background(), testdb.For(t, driver), queue.Options{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// record stores one fast verdict whose single control ran as given.
func record(t testing.TB, q *queue.Queue, subject string, run gate.ControlRun) {
	t.Helper()
	v := &gate.Verdict{Verdict: "pass", Controls: []gate.ControlRun{run}, Deferred: []gate.Deferred{}}
	if _, err := q.Record(context.Background(), v, &gate.Change{Mode: gate.RangeMode, Head: subject}); err != nil {
		t.Fatal(err)
	}
}

func TestReportFiguresAgainstHandComputedValues(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			c := &clock{t: t0.Add(-30 * 24 * time.Hour)}
			q := openAt(t, driver, c)

			// Outside the window: a 9-second secrets run a month ago.
			record(t, q, "old", gate.ControlRun{Name: "secrets", Path: gate.Fast, Status: budgets.Passed, DurationMS: 9000, BudgetMS: 100})
			c.t = t0

			// secrets: 20 fast runs of 10, 20, ... 200 ms, budget 100ms.
			// Nearest rank: p50 is the 10th (100), p95 the 19th (190),
			// p99 the 20th (200). 50ms errored, 60ms failed, 180ms
			// overran (fail-open), 190 and 200ms deferred.
			for i := 1; i <= 20; i++ {
				d := int64(10 * i)
				run := gate.ControlRun{Name: "secrets", Path: gate.Fast, Status: budgets.Passed, DurationMS: d, BudgetMS: 100}
				switch d {
				case 50:
					run.Status, run.ModeApplied = budgets.Errored, budgets.FailClosed
				case 60:
					run.Status = budgets.Failed
				case 180:
					run.Status, run.ModeApplied = budgets.Overran, budgets.FailOpen
				case 190, 200:
					run.Status, run.ModeApplied = budgets.Deferred, budgets.Defer
				}
				record(t, q, fmt.Sprintf("s%d", i), run)
				c.advance(time.Second)
			}
			// lint: 5, 5, 7, 9 ms: p50 is the 2nd (5), p95 and p99 the 4th (9).
			for _, d := range []int64{7, 5, 9, 5} {
				record(t, q, "l", gate.ControlRun{Name: "lint", Path: gate.Fast, Status: budgets.Passed, DurationMS: d, BudgetMS: 20000})
			}

			// Slow path: three jobs deferred at t1; exposures 10s, 2s, 5s
			// (p50 5s, p95 and max 10s); the image scan failed once (a
			// retry) before it completed; a fourth job is still queued.
			t1 := c.t
			jobs := []queue.Job{
				{Kind: queue.KindImageScan, Subject: "r.example/a@sha256:1", Control: "image-scan", ChangeSubject: "commit:aa"},
				{Kind: queue.KindDependencyScan, Subject: "commit:bb", Control: "dependency-scan"},
				{Kind: queue.KindDependencyScan, Subject: "commit:cc", Control: "dependency-scan"},
				{Kind: queue.KindImageScan, Subject: "r.example/b@sha256:2", Control: "image-scan", ChangeSubject: "commit:dd"},
			}
			if _, err := q.Enqueue(ctx, jobs); err != nil {
				t.Fatal(err)
			}
			for i := range jobs {
				jobs[i].BudgetMS = 600000
				jobs[i].Key = queue.KeyFor(jobs[i].Kind, jobs[i].Subject, jobs[i].Control, "", "")
			}
			ms := func(d time.Duration) int64 { return t1.Add(d).UnixMilli() }
			if err := q.Fail(ctx, queue.Run{Job: jobs[0], Attempt: 1, Started: ms(time.Second), Finished: ms(3 * time.Second), Status: "errored", ModeApplied: "fail-closed"}, errors.New("registry down"), false); err != nil {
				t.Fatal(err)
			}
			for _, r := range []queue.Run{
				{Job: jobs[0], Attempt: 2, Started: ms(4 * time.Second), Finished: ms(10 * time.Second), Status: "passed"},
				{Job: jobs[1], Attempt: 1, Started: ms(0), Finished: ms(2 * time.Second), Status: "failed"},
				{Job: jobs[2], Attempt: 1, Started: ms(1 * time.Second), Finished: ms(5 * time.Second), Status: "passed"},
			} {
				if _, _, err := q.Complete(ctx, r, queue.Result{}); err != nil {
					t.Fatal(err)
				}
			}
			c.t = t1.Add(time.Minute)

			rep, err := q.Report(ctx, queue.ReportOptions{Since: t0.Add(-7 * 24 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			rep.Finish(false, func(string) bool { return true })
			want := []budgets.ControlFigures{
				{Control: "dependency-scan", Placement: "slow", Runs: 2, BudgetMS: 600000, P50MS: 2000, P95MS: 4000, P99MS: 4000, MaxMS: 4000, Failed: 1},
				{Control: "image-scan", Placement: "slow", Runs: 2, BudgetMS: 600000, P50MS: 2000, P95MS: 6000, P99MS: 6000, MaxMS: 6000, Errored: 1, Retries: 1, FailureRate: 0.5},
				{Control: "lint", Placement: "fast", Runs: 4, BudgetMS: 20000, P50MS: 5, P95MS: 9, P99MS: 9, MaxMS: 9},
				{Control: "secrets", Placement: "fast", Runs: 20, BudgetMS: 100, P50MS: 100, P95MS: 190, P99MS: 200, MaxMS: 200,
					Failed: 1, Errored: 1, Overran: 3, Deferred: 2, FailureRate: 0.05, OverrunRate: 0.15, DeferralRate: 0.1},
			}
			if !slices.Equal(rep.Controls, want) {
				t.Errorf("controls:\n got %+v\nwant %+v", rep.Controls, want)
			}
			if len(rep.OverBudget) != 1 || rep.OverBudget[0].Control != "secrets" || !strings.Contains(rep.OverBudget[0].Advice, "reprofile secrets") {
				t.Errorf("over budget: want secrets with the advice to reprofile, got %+v", rep.OverBudget)
			}
			e := rep.Exposure
			if e.Closed != 3 || e.P50MS != 5000 || e.P95MS != 10000 || e.MaxMS != 10000 {
				t.Errorf("exposure: want 3 closed, p50 5s, p95 10s, max 10s; got %+v", e)
			}
			if e.Open != 1 || len(e.Inside) != 1 || e.Inside[0].Subject != "r.example/b@sha256:2" || e.Inside[0].Change != "commit:dd" || e.Inside[0].AgeMS != 60000 || e.Inside[0].State != queue.StateQueued {
				t.Errorf("inside the window: want the queued image, a minute old, for commit:dd; got %d %+v", e.Open, e.Inside)
			}
			var img budgets.QueueDepth
			for _, d := range rep.Queue {
				if d.Kind == queue.KindImageScan {
					img = d
				}
			}
			if img.Waiting != 1 || img.OldestAgeMS != 60000 {
				t.Errorf("queue depth of image-scan: want 1 waiting for a minute, got %+v", img)
			}
		})
	}
}

// demotionPolicy is a catalog of one fast control that counts its runs.
func demotionGate(t *testing.T, q *queue.Queue, onOverrun budgets.Mode, runs *int, reviewEvery ...string) *gate.Gate {
	t.Helper()
	cat := gate.Catalog{{
		Name: "secrets", Placement: gate.Fast, Enabled: true, Kind: "secrets",
		Budget: budgets.Budget{Time: 100 * time.Millisecond, OnOverrun: onOverrun, OnError: budgets.FailClosed},
		Build: func(any, gate.Env) (gate.Control, error) {
			return gate.ControlFunc(func(context.Context, *gate.Change) (gate.Result, error) { *runs++; return gate.Result{}, nil }), nil
		},
	}}
	every := "0s" // every check reviews, unless the test says otherwise
	if len(reviewEvery) > 0 {
		every = reviewEvery[0]
	}
	pol, err := gate.ParsePolicy(".sluice.yaml", []byte("version: 1\nbudgets:\n  auto_demote: true\n  window: 7d\n  min_runs: 3\n  review_every: "+every+"\n"), cat)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gate.New(pol, gate.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g.WithQueue(q).WithDemotions(q)
}

func TestDemotionAndItsReversal(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			c := &clock{t: t0}
			q := openAt(t, driver, c)
			runs := 0
			g := demotionGate(t, q, budgets.Defer, &runs)
			ch := &gate.Change{Mode: gate.PathsMode, Root: t.TempDir(), Paths: []string{"a"}}

			// Two slow fast runs: fewer than min_runs, no move.
			for i := range 2 {
				record(t, q, fmt.Sprint("x", i), gate.ControlRun{Name: "secrets", Path: gate.Fast, Status: budgets.Passed, DurationMS: 500, BudgetMS: 100})
			}
			c.advance(time.Second)
			v := g.Check(ctx, ch)
			if runs != 1 || len(v.Demoted) != 0 {
				t.Fatalf("under min_runs: want the control run fast and nothing demoted, got %d runs, %+v", runs, v.Demoted)
			}
			// The check itself recorded a fast run (a few ms): 3 runs,
			// p95 500ms over the 100ms budget.
			c.advance(time.Second)
			v = g.Check(ctx, ch)
			if runs != 1 {
				t.Errorf("a demoted control ran on the release path (%d runs)", runs)
			}
			if len(v.Demoted) != 1 || v.Demoted[0].Control != "secrets" || v.Demoted[0].P95MS != 500 || v.Demoted[0].BudgetMS != 100 || v.Demoted[0].Runs != 3 {
				t.Fatalf("want secrets demoted with p95 500ms over 3 runs against 100ms, got %+v", v.Demoted)
			}
			if len(v.Deferred) != 1 || v.Deferred[0].Control != "secrets" || v.Deferred[0].Why != gate.WhyDemoted || !v.Deferred[0].Enqueued {
				t.Errorf("want the demoted control deferred to the slow path and enqueued, got %+v", v.Deferred)
			}
			if !slices.ContainsFunc(v.Warnings, func(w string) bool { return strings.Contains(w, "secrets is demoted to the slow path") }) {
				t.Errorf("want a warning naming the demotion, got %q", v.Warnings)
			}
			if !v.Pass() {
				t.Errorf("a demoted control's change passes (its work is deferred), got %s", v.Verdict)
			}

			// Still demoted on the next check while no slow runs came in.
			c.advance(time.Second)
			if v = g.Check(ctx, ch); runs != 1 || len(v.Demoted) != 1 {
				t.Fatalf("want secrets still demoted, got %d runs, %+v", runs, v.Demoted)
			}

			// Three slow re-runs of 40ms each: back within budget.
			job := queue.Job{Kind: queue.KindDeferred, Subject: ch.Subject(), Control: "secrets", BudgetMS: 600000}
			job.Key = queue.KeyFor(job.Kind, job.Subject, job.Control, "", "")
			if _, err := q.Enqueue(ctx, []queue.Job{job}); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				at := c.t.Add(time.Duration(i) * time.Second).UnixMilli()
				if _, _, err := q.Complete(ctx, queue.Run{Job: job, Attempt: i + 1, Started: at, Finished: at + 40, Status: "passed"}, queue.Result{}); err != nil {
					t.Fatal(err)
				}
			}
			c.advance(5 * time.Second)
			v = g.Check(ctx, ch)
			if runs != 2 || len(v.Demoted) != 0 || len(v.Deferred) != 0 {
				t.Fatalf("want secrets restored and run fast, got %d runs, demoted %+v, deferred %+v", runs, v.Demoted, v.Deferred)
			}
			ms, err := q.Moves(ctx, t0)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 2 || ms[0].Action != "demote" || ms[0].By != "auto" || ms[0].P95MS != 500 || ms[0].Placement != "fast" ||
				ms[1].Action != "restore" || ms[1].P95MS != 40 || ms[1].Runs != 3 || ms[1].Placement != "slow" {
				t.Fatalf("want a demotion (p95 500ms fast) then a restoration (p95 40ms over 3 slow runs), got %+v", ms)
			}

			// A restored control needs min_runs new fast runs before it
			// can be demoted again; three slow ones demote it, and a
			// manual restore moves it back.
			for i := range 3 {
				record(t, q, fmt.Sprint("y", i), gate.ControlRun{Name: "secrets", Path: gate.Fast, Status: budgets.Passed, DurationMS: 800, BudgetMS: 100})
			}
			c.advance(time.Second)
			if v = g.Check(ctx, ch); len(v.Demoted) != 1 {
				t.Fatalf("want secrets demoted again, got %+v", v.Demoted)
			}
			if _, err := q.Restore(ctx, "secrets", 100*time.Millisecond, "reprofiled"); err != nil {
				t.Fatal(err)
			}
			if _, err := q.Restore(ctx, "secrets", 0, "again"); !errors.Is(err, queue.ErrNotDemoted) {
				t.Errorf("restoring a control that is not demoted: want ErrNotDemoted, got %v", err)
			}
			c.advance(time.Second)
			if v = g.Check(ctx, ch); len(v.Demoted) != 0 || runs != 3 {
				t.Fatalf("after a manual restore: want secrets run fast, got %d runs, %+v", runs, v.Demoted)
			}
			ms, _ = q.Moves(ctx, t0)
			if len(ms) != 4 || ms[3].By != "manual" || ms[3].Action != "restore" {
				t.Errorf("want the manual restore recorded, got %+v", ms)
			}
		})
	}
}

// TestReviewEveryReusesTheLastReview: between full reviews a check reads
// the last decision instead of the control's runs, so runs over budget
// that arrive in between demote the control only at the next review; a
// manual restore takes effect at once.
func TestReviewEveryReusesTheLastReview(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			c := &clock{t: t0}
			q := openAt(t, driver, c)
			runs := 0
			g := demotionGate(t, q, budgets.Defer, &runs, "1m")
			ch := &gate.Change{Mode: gate.PathsMode, Root: t.TempDir(), Paths: []string{"a"}}

			c.advance(time.Second)
			if v := g.Check(ctx, ch); runs != 1 || len(v.Demoted) != 0 {
				t.Fatalf("no runs yet: want the control run fast, got %d runs, %+v", runs, v.Demoted)
			}
			for i := range 3 {
				record(t, q, fmt.Sprint("x", i), gate.ControlRun{Name: "secrets", Path: gate.Fast, Status: budgets.Passed, DurationMS: 500, BudgetMS: 100})
			}
			c.advance(30 * time.Second)
			if v := g.Check(ctx, ch); runs != 2 || len(v.Demoted) != 0 {
				t.Fatalf("within review_every of the last review: want its decision reused, got %d runs, %+v", runs, v.Demoted)
			}
			c.advance(31 * time.Second)
			v := g.Check(ctx, ch)
			if runs != 2 || len(v.Demoted) != 1 || v.Demoted[0].Control != "secrets" {
				t.Fatalf("a minute after the last review: want secrets demoted, got %d runs, %+v", runs, v.Demoted)
			}
			c.advance(time.Second)
			if v := g.Check(ctx, ch); runs != 2 || len(v.Demoted) != 1 {
				t.Fatalf("between reviews: want the demotion kept, got %d runs, %+v", runs, v.Demoted)
			}
			if _, err := q.Restore(ctx, "secrets", 100*time.Millisecond, "reprofiled"); err != nil {
				t.Fatal(err)
			}
			c.advance(time.Second)
			if v := g.Check(ctx, ch); runs != 3 || len(v.Demoted) != 0 {
				t.Fatalf("after a manual restore: want the control run fast at once, got %d runs, %+v", runs, v.Demoted)
			}
		})
	}
}

func TestAFailClosedControlIsNeverDemoted(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: t0}
	q := openAt(t, "sqlite", c)
	runs := 0
	g := demotionGate(t, q, budgets.FailClosed, &runs)
	for i := range 5 {
		record(t, q, fmt.Sprint("x", i), gate.ControlRun{Name: "secrets", Path: gate.Fast, Status: budgets.Passed, DurationMS: 500, BudgetMS: 100})
	}
	c.advance(time.Second)
	v := g.Check(ctx, &gate.Change{Mode: gate.PathsMode, Root: t.TempDir(), Paths: []string{"a"}})
	if runs != 1 || len(v.Demoted) != 0 {
		t.Fatalf("want a fail-closed control run on the release path, got %d runs, %+v", runs, v.Demoted)
	}
	if !slices.ContainsFunc(v.Warnings, func(w string) bool {
		return strings.Contains(w, "secrets is over budget") && strings.Contains(w, "not demoted")
	}) {
		t.Errorf("want a warning that secrets is over budget but not demoted, got %q", v.Warnings)
	}
	if ms, _ := q.Moves(ctx, t0); len(ms) != 0 {
		t.Errorf("want no move recorded, got %+v", ms)
	}
}

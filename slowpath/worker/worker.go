// Package worker runs the slow-path queue's jobs: each kind by its
// Analyzer, under the job's budget, with bounded concurrency, retries with
// backoff up to a limit, results stored once, and metrics, health and
// River's web UI served over HTTP.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

// Analyzer does one kind of slow work. A returned error fails the attempt:
// the job is retried with backoff, and reported failed after its last
// attempt. Findings are data, not errors.
type Analyzer func(ctx context.Context, job queue.Job) (Outcome, error)

// Outcome is what an analyzer found.
type Outcome struct {
	Findings []gate.Finding
	// SBOM is a CycloneDX JSON document, when the kind makes one.
	SBOM      []byte
	Notes     []string
	DBVersion string
}

// Options configure a Worker. Zero values state their defaults.
type Options struct {
	// Concurrency is how many jobs run at once; 0 means 1.
	Concurrency int
	// Analyzers by job kind. A kind without one fails its jobs (retried,
	// then reported failed) with a message saying so.
	Analyzers map[string]Analyzer
	// RescueAfter is how long a job may stay running before another
	// worker takes it over (its worker presumably died); 0 means the
	// longest job budget plus one minute, and at least 10 minutes.
	RescueAfter time.Duration
	// RetryPolicy decides the backoff between attempts; nil means River's
	// default (attempt^4 seconds, with jitter).
	RetryPolicy river.ClientRetryPolicy
	// PollInterval is how often to look for new jobs besides
	// notifications; 0 means 1s.
	PollInterval time.Duration
	// FetchCooldown is the least time between two fetches of jobs; each
	// fetch takes as many jobs as there are free slots. 0 means 50ms (or
	// PollInterval if shorter).
	FetchCooldown time.Duration
	// OnConcluded, when set, is called after a job concluded and its
	// conclusion was stored: completed (also when an earlier run had
	// stored the result), or failed for good. It is not called for an
	// attempt that will be retried. It runs in the job's worker slot with
	// a context that outlives the job's budget but ends after
	// ConcludedTimeout; it must not fail the job (the result is already
	// stored), so it reports its own errors.
	OnConcluded func(ctx context.Context, job queue.Job)
	// ConcludedTimeout bounds each OnConcluded call, so that a slow
	// notification (GitHub rate-limiting a publish) neither holds a worker
	// slot nor a graceful stop for long; 0 means 1 minute.
	ConcludedTimeout time.Duration
	// Metrics receives job figures; nil records none.
	Metrics *Metrics
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Worker runs jobs from a queue.
type Worker struct {
	q       *queue.Queue
	opts    Options
	client  queue.Client
	failed  atomic.Int64
	done    atomic.Int64
	logger  *slog.Logger
	workers *river.Workers
}

// New makes a worker on q; Run or Drain starts it.
func New(q *queue.Queue, opts Options) (*Worker, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.FetchCooldown <= 0 {
		opts.FetchCooldown = min(50*time.Millisecond, opts.PollInterval)
	}
	if opts.RescueAfter <= 0 {
		opts.RescueAfter = 10 * time.Minute
	}
	if opts.ConcludedTimeout <= 0 {
		opts.ConcludedTimeout = time.Minute
	}
	w := &Worker{q: q, opts: opts, logger: opts.Logger}
	w.workers = river.NewWorkers()
	river.AddWorker(w.workers, &kindWorker[queue.ImageScanArgs]{w: w})
	river.AddWorker(w.workers, &kindWorker[queue.DependencyScanArgs]{w: w})
	river.AddWorker(w.workers, &kindWorker[queue.DeferredArgs]{w: w})
	c, err := q.NewClient(&river.Config{
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: opts.Concurrency}},
		Workers:              w.workers,
		RescueStuckJobsAfter: opts.RescueAfter,
		// Each job's own budget (Timeout below) bounds it; the client-wide
		// timeout must not undercut it.
		JobTimeout:        -1,
		RetryPolicy:       opts.RetryPolicy,
		FetchPollInterval: opts.PollInterval,
		FetchCooldown:     opts.FetchCooldown,
		Logger:            opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("making River client: %w", err)
	}
	w.client = c
	return w, nil
}

// Client is the worker's River client (for River's web UI).
func (w *Worker) Client() queue.Client { return w.client }

// Failed is how many jobs this worker saw fail for good.
func (w *Worker) Failed() int64 { return w.failed.Load() }

// Completed is how many jobs this worker completed.
func (w *Worker) Completed() int64 { return w.done.Load() }

// Run works jobs until ctx is done, then stops gracefully: no new jobs are
// fetched and running ones get grace to finish before they are cancelled
// (a cancelled job is retried later, by this or another worker).
func (w *Worker) Run(ctx context.Context, grace time.Duration) error {
	if err := w.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("starting worker: %w", err)
	}
	<-ctx.Done()
	return w.stop(grace)
}

func (w *Worker) stop(grace time.Duration) error {
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := w.client.Stop(sctx); err != nil {
		cctx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel2()
		if err2 := w.client.StopAndCancel(cctx); err2 != nil {
			return fmt.Errorf("stopping worker: %w", errors.Join(err, err2))
		}
	}
	return nil
}

// Drain works jobs until no job is queued, running or waiting to be
// retried, then stops. It returns how many jobs failed for good while it
// ran. Jobs whose retry is scheduled are waited for: nothing is dropped.
func (w *Worker) Drain(ctx context.Context) (failed int64, err error) {
	if err := w.client.Start(context.WithoutCancel(ctx)); err != nil {
		return 0, fmt.Errorf("starting worker: %w", err)
	}
	tick := time.NewTicker(w.opts.PollInterval / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return w.failed.Load(), errors.Join(ctx.Err(), w.stop(30*time.Second))
		case <-tick.C:
		}
		empty, err := w.empty(ctx)
		if err != nil {
			w.logger.Warn("checking whether the queue is empty", "error", err)
			continue
		}
		if empty {
			return w.failed.Load(), w.stop(30 * time.Second)
		}
	}
}

// unfinished are the states of a job that will still run.
var unfinished = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

func (w *Worker) empty(ctx context.Context) (bool, error) {
	res, err := w.client.JobList(ctx, river.NewJobListParams().States(unfinished...).First(1))
	if err != nil {
		return false, err
	}
	return len(res.Jobs) == 0, nil
}

// kindWorker runs one River kind.
type kindWorker[T interface {
	river.JobArgs
}] struct {
	river.WorkerDefaults[T]
	w *Worker
}

func jobOf(args any) queue.Job {
	switch a := args.(type) {
	case queue.ImageScanArgs:
		return a.Job
	case queue.DependencyScanArgs:
		return a.Job
	case queue.DeferredArgs:
		return a.Job
	}
	panic(fmt.Sprintf("unknown job args %T", args))
}

// Timeout is the job's slow-path budget.
func (k *kindWorker[T]) Timeout(j *river.Job[T]) time.Duration {
	if b := jobOf(j.Args).Budget(); b > 0 {
		return b
	}
	return 10 * time.Minute
}

// Work runs one attempt.
func (k *kindWorker[T]) Work(ctx context.Context, j *river.Job[T]) error {
	return k.w.work(ctx, jobOf(j.Args), j.JobRow)
}

func (w *Worker) work(ctx context.Context, job queue.Job, row *rivertype.JobRow) error {
	run := queue.Run{Job: job, RiverID: row.ID, Attempt: row.Attempt, Started: w.opts.Now().UnixMilli()}
	// Bookkeeping outlives the job's deadline: a job that overran is
	// still recorded.
	bctx := context.WithoutCancel(ctx)
	if err := w.q.Started(bctx, run); err != nil {
		return fmt.Errorf("recording start: %w", err)
	}
	if row.Attempt > 1 {
		w.opts.Metrics.retry(job.Kind)
	}
	out, err := w.analyze(ctx, job)
	run.Finished = w.opts.Now().UnixMilli()
	dur := time.Duration(run.Finished-run.Started) * time.Millisecond
	if err != nil {
		run.Status, run.ModeApplied = "errored", "fail-closed"
		if errors.Is(err, context.DeadlineExceeded) {
			run.Status = "overran"
			err = fmt.Errorf("ran past its budget of %v: %w", job.Budget(), err)
		}
		final := row.Attempt >= row.MaxAttempts
		if ferr := w.q.Fail(bctx, run, err, final); ferr != nil {
			w.logger.Error("recording failure", "job", row.ID, "error", ferr)
		}
		w.opts.Metrics.failure(job.Kind, run.Status, dur, final)
		if final {
			w.failed.Add(1)
			w.concluded(bctx, job)
		}
		w.logger.Warn("job failed", "job", row.ID, "kind", job.Kind, "subject", job.Subject, "attempt", row.Attempt, "of", row.MaxAttempts, "error", err)
		return err
	}
	run.Status = "passed"
	if len(out.Findings) > 0 {
		run.Status = "failed"
	}
	res := queue.Result{Findings: out.Findings, SBOM: out.SBOM, Notes: out.Notes, DBVersion: cmpOr(out.DBVersion, job.DBVersion)}
	stored, exposure, err := w.q.Complete(bctx, run, res)
	if err != nil {
		return fmt.Errorf("storing result: %w", err)
	}
	if !stored {
		w.logger.Info("result already stored by an earlier run; kept that one", "job", row.ID, "key", job.Key)
	}
	w.done.Add(1)
	w.opts.Metrics.completed(job.Kind, run.Status, dur, exposure)
	w.concluded(bctx, job)
	return nil
}

// concluded calls OnConcluded, containing a panic: the job's conclusion is
// stored, and a notification failing must not make River run it again.
func (w *Worker) concluded(ctx context.Context, job queue.Job) {
	if w.opts.OnConcluded == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			w.logger.Error("notifying a concluded job panicked", "key", job.Key, "panic", v)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, w.opts.ConcludedTimeout)
	defer cancel()
	w.opts.OnConcluded(ctx, job)
}

func (w *Worker) analyze(ctx context.Context, job queue.Job) (out Outcome, err error) {
	a := w.opts.Analyzers[job.Kind]
	if a == nil {
		return Outcome{}, fmt.Errorf("no analyzer for %s jobs in this build of sluice (a newer sluice may have queued it: run its worker)", job.Kind)
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("analyzer panicked: %v", v)
		}
	}()
	return a(ctx, job)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

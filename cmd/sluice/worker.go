package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sourcegraph/conc"

	"github.com/sluice-ci/sluice/actions/github"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/slowpath/queue"
	"github.com/sluice-ci/sluice/slowpath/vulndb"
	"github.com/sluice-ci/sluice/slowpath/worker"
)

// exitPending is sluice status's code while work is still queued or
// running.
const exitPending = 4

// publishRetry is how often a worker service retries the check runs it
// could not publish.
const publishRetry = 5 * time.Minute

// queueURL picks the queue: the flag, else SLUICE_QUEUE, else the policy's
// queue.url (a relative SQLite path is relative to the policy's directory),
// else fallback.
func queueURL(flagURL string, getenv env, pol *gate.Policy, policyDir, fallback string) string {
	switch {
	case flagURL != "":
		return flagURL
	case getenv("SLUICE_QUEUE") != "":
		return getenv("SLUICE_QUEUE")
	case pol != nil && pol.Queue.URL != "":
		u := pol.Queue.URL
		if isPostgres(u) {
			return u
		}
		p := strings.TrimPrefix(u, "sqlite:")
		if pol.Source != "" && !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(pol.Source), p)
		} else if !filepath.IsAbs(p) {
			p = filepath.Join(policyDir, p)
		}
		return p
	}
	return fallback
}

// openStore opens the queue at u for a command that only reads the store
// (status, budgets, batch). A SQLite file that does not exist is refused,
// exit 2, rather than made empty at a mistyped path; on failure the queue
// is nil and the exit code says why.
func openStore(ctx context.Context, cmd, u string, pol *gate.Policy, stderr io.Writer) (*queue.Queue, int) {
	if !isPostgres(u) {
		if _, err := os.Stat(strings.TrimPrefix(u, "sqlite:")); errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(stderr, "sluice %s: no queue at %s: give --queue or SLUICE_QUEUE (sluice check --queue records into it)\n", cmd, u)
			return nil, exitUsage
		}
	}
	q, err := queue.Open(ctx, u, queueOptions(pol, nil))
	if err != nil {
		return nil, fail(stderr, cmd, err)
	}
	return q, exitPass
}

func isPostgres(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// queueOptions carries the policy's queue section and slow budgets to the
// queue.
func queueOptions(pol *gate.Policy, logger *slog.Logger) queue.Options {
	budgets := map[string]time.Duration{}
	for _, c := range pol.Controls {
		if c.Placement == gate.Slow {
			budgets[c.Name] = c.Budget.Time
		}
	}
	return queue.Options{
		Logger: logger, MaxAttempts: pol.Queue.MaxAttempts, DeferredBudget: pol.Queue.DeferredBudget, Budgets: budgets,
	}
}

// checkQueue opens the queue a check records into, or returns nil when none
// is configured. A queue that cannot be opened becomes an UnreachableQueue,
// so that the policy's queue.on_unreachable decides.
func checkQueue(ctx context.Context, flagURL string, getenv env, pol *gate.Policy, policyDir string, logger *slog.Logger) (gate.Queue, func()) {
	u := queueURL(flagURL, getenv, pol, policyDir, "")
	if u == "" {
		return nil, func() {}
	}
	octx, cancel := context.WithTimeout(ctx, pol.Queue.Timeout)
	defer cancel()
	opts := queueOptions(pol, logger)
	opts.DBVersion = dbVersion(pol, policyDir, getenv)
	// In GitHub Actions, the repository goes with the jobs so that the
	// worker publishes their check runs there.
	if r := getenv("GITHUB_REPOSITORY"); queue.ValidRepository(r) {
		opts.Repository = r
	}
	q, err := queue.Open(octx, u, opts)
	if err != nil {
		return gate.UnreachableQueue{Err: err}, func() {}
	}
	return q, q.Close
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	fs := newFlagSet("sluice worker", stderr)
	var (
		queueFlag   = fs.String("queue", "", "the queue: `URL` postgres://... or a SQLite file (default $SLUICE_QUEUE, else the policy's queue.url, else "+queue.DefaultPath+" in the repository)")
		policy      = fs.String("policy", "", "policy `FILE` (default .sluice.yaml at the repository root or working directory)")
		concurrency = fs.Int("concurrency", 2, "how many jobs run at once")
		drain       = fs.Bool("drain", false, "run until the queue is empty, then exit (0 when every job succeeded, 1 if any failed for good)")
		listen      = fs.String("listen", "127.0.0.1:9464", "`ADDR` serving /healthz, /metrics and River's UI at /riverui/ (service mode; empty disables)")
		rescue      = fs.Duration("rescue-after", 0, "take over a job left running this long by a worker that died (default: 10m)")
		grace       = fs.Duration("grace", 30*time.Second, "on SIGTERM, how long running jobs may finish before they are cancelled (and retried later)")
		insecure    = fs.Bool("insecure", false, "allow plain-HTTP image registries (a local registry or mirror)")
		verbose     = fs.Bool("v", false, "log progress to stderr")
		checkRunsOn = fs.Bool("check-runs", getenv("GITHUB_TOKEN") != "", "publish each concluded job as a GitHub check run on the commit its check recorded (needs GITHUB_TOKEN with checks: write; GITHUB_API_URL for GitHub Enterprise Server; default on when GITHUB_TOKEN is set)")
	)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: sluice worker [flags]\n\nRuns slow-path jobs from the queue.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 || *concurrency < 1 {
		fmt.Fprintln(stderr, "sluice worker: takes no arguments, and --concurrency must be at least 1")
		return exitUsage
	}
	logger := newLogger(stderr, *verbose)
	slog.SetDefault(logger)
	pol, dir, err := workspacePolicy(ctx, *policy)
	if err != nil {
		return fail(stderr, "worker", err)
	}
	u := queueURL(*queueFlag, getenv, pol, dir, filepath.Join(dir, queue.DefaultPath))
	qopts := queueOptions(pol, logger)
	qopts.DBVersion = dbVersion(pol, dir, getenv)
	q, err := queue.Open(ctx, u, qopts)
	if err != nil {
		return fail(stderr, "worker", err)
	}
	defer q.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := worker.NewMetrics(reg, q, nil)
	if err != nil {
		return fail(stderr, "worker", err)
	}
	wopts := worker.Options{
		Concurrency: *concurrency, Analyzers: analyzers(pol, dir, getenv, *insecure, logger), RescueAfter: *rescue, Metrics: metrics, Logger: logger,
	}
	var publisher *checkRuns
	if *checkRunsOn {
		client, err := github.NewClient(getenv)
		if err != nil {
			return fail(stderr, "worker", fmt.Errorf("%w: --check-runs: %v", gate.ErrUsage, err))
		}
		publisher = &checkRuns{q: q, client: client, pol: pol, logger: logger}
		wopts.OnConcluded = publisher.onConcluded
		// What earlier runs concluded but could not publish goes first.
		publisher.sweep(ctx)
	}
	w, err := worker.New(q, wopts)
	if err != nil {
		return fail(stderr, "worker", err)
	}
	if *drain {
		failed, err := w.Drain(ctx)
		fmt.Fprintf(stdout, "sluice worker: drained %s: %d completed, %d failed\n", q.URL(), w.Completed(), failed)
		if err != nil {
			return fail(stderr, "worker", err)
		}
		if failed > 0 {
			return exitBlocked
		}
		return exitPass
	}

	var srv *http.Server
	if *listen != "" {
		h, err := w.Handler(ctx, reg)
		if err != nil {
			return fail(stderr, "worker", err)
		}
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fail(stderr, "worker", fmt.Errorf("listening on %s: %w", *listen, err))
		}
		srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		var serving conc.WaitGroup
		serving.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("serving HTTP", "error", err)
			}
		})
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			serving.Wait()
		}()
		fmt.Fprintf(stderr, "sluice worker: serving /healthz, /metrics and %s/ on http://%s\n", worker.UIPrefix, ln.Addr())
	}
	fmt.Fprintf(stderr, "sluice worker: running jobs from %s with concurrency %d; SIGTERM or SIGINT stops it gracefully\n", q.URL(), *concurrency)
	if publisher != nil {
		// A service retries the check runs it could not publish every
		// publishRetry, until it stops.
		sweeping, stopSweeping := context.WithCancel(ctx)
		var sweeper conc.WaitGroup
		sweeper.Go(func() {
			t := time.NewTicker(publishRetry)
			defer t.Stop()
			for {
				select {
				case <-sweeping.Done():
					return
				case <-t.C:
					publisher.sweep(sweeping)
				}
			}
		})
		defer sweeper.Wait()
		defer stopSweeping()
	}
	if err := w.Run(ctx, *grace); err != nil {
		return fail(stderr, "worker", err)
	}
	fmt.Fprintf(stderr, "sluice worker: stopped: %d completed, %d failed\n", w.Completed(), w.Failed())
	return exitPass
}

// analyzers are the job kinds this build runs. The deep scans read the
// vulnerability DB that `sluice db fetch` installed in the shared cache;
// they never download it.
func analyzers(pol *gate.Policy, repoDir string, getenv env, insecure bool, logger *slog.Logger) map[string]worker.Analyzer {
	dc := worker.DeepConfig{
		DBCache:   dbCache(pol, repoDir, getenv),
		Staleness: vulndb.Staleness{WarnAge: pol.VulnDB.WarnAge, FailAge: pol.VulnDB.FailAge},
		Catalog:   catalog(),
		Insecure:  insecure,
		Logger:    logger,
	}
	return map[string]worker.Analyzer{
		queue.KindDeferred:       worker.Deferred(catalog(), logger),
		queue.KindImageScan:      worker.ImageScan(dc),
		queue.KindDependencyScan: worker.DependencyScan(dc),
	}
}

// dbCache is the vulnerability DB cache of a policy: its vulndb.cache_dir
// (relative to the policy file), else the user's cache folder.
func dbCache(pol *gate.Policy, repoDir string, getenv env) string {
	dir := repoDir
	if pol.Source != "" && !strings.HasPrefix(pol.Source, "oci://") {
		dir = filepath.Dir(pol.Source)
	}
	return defaultDBCache(pol.VulnDB, dir, getenv)
}

// dbVersion names the installed vulnerability DB, as job keys carry it:
// the same work under a newer DB is queued again. "" when none is
// installed (a worker's job then fails, saying to run sluice db fetch).
func dbVersion(pol *gate.Policy, repoDir string, getenv env) string {
	info, err := vulndb.Load(dbCache(pol, repoDir, getenv))
	if err != nil {
		return ""
	}
	return info.String()
}

// workspacePolicy finds the policy of the repository around the working
// directory (or the directory itself outside one).
func workspacePolicy(ctx context.Context, path string) (*gate.Policy, string, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return nil, "", err
	}
	dir := cwd
	if top, err := gate.RepoRoot(ctx, cwd); err == nil {
		dir = top
	}
	pol, err := gate.FindPolicy(path, dir, catalog())
	return pol, dir, err
}

package worker_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/slowpath/queue"
	"github.com/sluice-ci/sluice/slowpath/worker"
)

// TestMain doubles as a worker process for the kill test: with
// SLUICE_TEST_WORKER_QUEUE set, the test binary runs a worker whose
// analyzer marks that it started (the file SLUICE_TEST_WORKER_MARK) and
// then works until killed.
func TestMain(m *testing.M) {
	if u := os.Getenv("SLUICE_TEST_WORKER_QUEUE"); u != "" {
		os.Exit(helperWorker(u, os.Getenv("SLUICE_TEST_WORKER_MARK")))
	}
	os.Exit(m.Run())
}

func helperWorker(url, mark string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	q, err := queue.Open(ctx, url, queue.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer q.Close()
	hang := func(ctx context.Context, j queue.Job) (worker.Outcome, error) {
		if err := os.WriteFile(mark, []byte(j.Key), 0o644); err != nil {
			return worker.Outcome{}, err
		}
		<-ctx.Done()
		return worker.Outcome{}, ctx.Err()
	}
	w, err := worker.New(q, worker.Options{PollInterval: 50 * time.Millisecond, Analyzers: map[string]worker.Analyzer{queue.KindImageScan: hang}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	if err := w.Run(ctx, time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	return 0
}

func TestAWorkerKilledMidJobLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for River's leader election and rescuer (about 20s per driver)")
	}
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			url := testdb.For(t, driver)
			q2, err := queue.Open(ctx, url, queue.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer q2.Close()
			job := queue.Job{Kind: queue.KindImageScan, Subject: "reg.example/app@sha256:" + fmt.Sprint(time.Now().UnixNano()), Control: "image-scan", BudgetMS: 2000}
			rs, err := q2.Enqueue(ctx, []queue.Job{job})
			if err != nil {
				t.Fatal(err)
			}

			mark := filepath.Join(t.TempDir(), "started")
			child := exec.Command(os.Args[0], "-test.run=^$")
			child.Env = append(os.Environ(), "SLUICE_TEST_WORKER_QUEUE="+url, "SLUICE_TEST_WORKER_MARK="+mark)
			child.Stderr = os.Stderr
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 60*time.Second, func() bool { _, err := os.Stat(mark); return err == nil })
			if err := child.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = child.Wait()
			if st := child.ProcessState; st == nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the child worker was not killed by SIGKILL: %v", st)
			}

			rec := &recorder{fn: func(context.Context, queue.Job, int) (worker.Outcome, error) {
				return worker.Outcome{Findings: []gate.Finding{{Rule: "CVE-2024-0002", Severity: "CRITICAL", Message: "x"}}}, nil
			}}
			w := newWorker(t, q2, worker.Options{Analyzers: rec.all(), RescueAfter: time.Second})
			if failed := drain(t, w); failed != 0 {
				t.Fatalf("drain: %d failed", failed)
			}
			if n := len(rec.ran()); n != 1 {
				t.Errorf("the second worker ran the job %d times, want 1", n)
			}
			rep, err := q2.Status(ctx, queue.Query{Subject: job.Subject})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Jobs) != 1 || rep.Jobs[0].Job != rs[0].Job {
				t.Fatalf("want the one job %s, got %+v", rs[0].Job, rep.Jobs)
			}
			j := rep.Jobs[0]
			if j.Result == nil || j.Result.Attempt != 2 || len(j.Result.Findings) != 1 || j.RiverState != "completed" {
				t.Fatalf("want one result, from attempt 2, job completed; got %+v", j)
			}
			if len(j.Errors) != 1 || !containsAll(j.Errors[0], "attempt 1", "Stuck job rescued") {
				t.Errorf("want the rescue recorded as attempt 1's error, got %q", j.Errors)
			}
		})
	}
}

// waitFor polls cond until it holds; the limit only guards against a hang.
func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package worker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/slowpath/queue"
	"github.com/sluice-ci/sluice/slowpath/worker"
)

// BenchmarkRecord is what a check pays for the queue: recording a verdict
// with two fast control runs and enqueueing its two deferred items, in one
// transaction. The budget is 20ms.
func BenchmarkRecord(b *testing.B) {
	for _, driver := range testdb.Drivers {
		b.Run(driver, func(b *testing.B) {
			q := open(b, driver, queue.Options{})
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				v, ch := verdict(fmt.Sprintf("bench-%d", i))
				v.Deferred[0].Subject = fmt.Sprintf("reg.example/app@sha256:%d", i)
				if _, err := q.Record(ctx, v, ch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenAndRecord adds opening the queue (and checking its
// migrations), as each `sluice check --queue` does.
func BenchmarkOpenAndRecord(b *testing.B) {
	for _, driver := range testdb.Drivers {
		b.Run(driver, func(b *testing.B) {
			url := testdb.For(b, driver)
			ctx := context.Background()
			q0, err := queue.Open(ctx, url, queue.Options{})
			if err != nil {
				b.Fatal(err)
			}
			q0.Close()
			b.ResetTimer()
			for i := range b.N {
				q, err := queue.Open(ctx, url, queue.Options{})
				if err != nil {
					b.Fatal(err)
				}
				v, ch := verdict(fmt.Sprintf("bench-%d", i))
				v.Deferred[0].Subject = fmt.Sprintf("reg.example/app@sha256:%d", i)
				if _, err := q.Record(ctx, v, ch); err != nil {
					b.Fatal(err)
				}
				q.Close()
			}
		})
	}
}

// BenchmarkThroughput enqueues b.N no-op jobs in one batch and drains them:
// ns/op is the enqueue-to-completion overhead per job, jobs/s the rate.
// The fetch cooldown is 1ms (the worker's default of 50ms caps a slot at
// 20 fetches a second, immaterial for scans that take seconds).
func BenchmarkThroughput(b *testing.B) {
	noop := func(context.Context, queue.Job) (worker.Outcome, error) { return worker.Outcome{}, nil }
	for _, driver := range testdb.Drivers {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/workers=%d", driver, workers), func(b *testing.B) {
				q := open(b, driver, queue.Options{})
				ctx := context.Background()
				jobs := make([]queue.Job, b.N)
				for i := range jobs {
					jobs[i] = queue.Job{Kind: queue.KindImageScan, Subject: fmt.Sprintf("r.example/a@sha256:%d-%d", time.Now().UnixNano(), i), Control: "image-scan"}
				}
				w, err := worker.New(q, worker.Options{Concurrency: workers, PollInterval: 20 * time.Millisecond, FetchCooldown: time.Millisecond,
					Analyzers: map[string]worker.Analyzer{queue.KindImageScan: noop}})
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				start := time.Now()
				if _, err := q.Enqueue(ctx, jobs); err != nil {
					b.Fatal(err)
				}
				failed, err := w.Drain(ctx)
				if err != nil || failed != 0 {
					b.Fatalf("drain: %d failed, %v", failed, err)
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
				if n := w.Completed(); n != int64(b.N) {
					b.Fatalf("completed %d of %d", n, b.N)
				}
			})
		}
	}
}

// BenchmarkRepeatFromStore is a repeat of an analysed image: a check
// deferring the same digest under the same policy and DB joins the
// finished job (nothing is queued or scanned again), and the deep result
// is read back from the store by digest, as `sluice status --image` and
// release approval do. The target is under 50 ms.
func BenchmarkRepeatFromStore(b *testing.B) {
	for _, driver := range testdb.Drivers {
		b.Run(driver, func(b *testing.B) {
			q := open(b, driver, queue.Options{})
			ctx := context.Background()
			v, ch := verdict("first")
			v.Deferred = v.Deferred[:1]
			if _, err := q.Record(ctx, v, ch); err != nil {
				b.Fatal(err)
			}
			finding := gate.Finding{Rule: "CVE-2099-0001", Severity: "HIGH", Message: "libc6: fixed in 2.36-9+deb12u99"}
			w := newWorker(b, q, worker.Options{Analyzers: map[string]worker.Analyzer{
				queue.KindImageScan: func(context.Context, queue.Job) (worker.Outcome, error) {
					return worker.Outcome{Findings: []gate.Finding{finding}}, nil
				},
			}})
			if failed := drain(b, w); failed != 0 || w.Completed() != 1 {
				b.Fatalf("drain: %d completed, %d failed; want 1 completed", w.Completed(), failed)
			}
			digest := "sha256:" + strings.Split(v.Deferred[0].Subject, "@sha256:")[1]
			b.ResetTimer()
			for i := range b.N {
				rv, rch := verdict(fmt.Sprintf("repeat-%d", i))
				rv.Deferred = rv.Deferred[:1]
				rec, err := q.Record(ctx, rv, rch)
				if err != nil {
					b.Fatal(err)
				}
				if len(rec) != 1 || !rec[0].Duplicate {
					b.Fatalf("repeat was not joined: %+v", rec)
				}
				rep, err := q.Status(ctx, queue.Query{Digest: digest})
				if err != nil {
					b.Fatal(err)
				}
				if len(rep.Jobs) != 1 || rep.Jobs[0].Result == nil || len(rep.Jobs[0].Result.Findings) != 1 {
					b.Fatalf("status by digest: %+v", rep)
				}
			}
		})
	}
}

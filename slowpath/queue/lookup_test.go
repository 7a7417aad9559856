package queue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

// TestLookupReadsResultsFromTheStore: the store answers gate.Results for
// sluice batch: missing, pending, passed, failed, errored; by job kind or
// control name; an image by any reference with its digest; the newest job
// of a subject wins; the fast verdict from the recorded verdicts.
func TestLookupReadsResultsFromTheStore(t *testing.T) {
	const digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			now := int64(1_000_000)
			q, err := queue.Open(ctx, testdb.For(t, driver), queue.Options{Now: func() time.Time { return time.UnixMilli(now) }})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			var results gate.Results = q

			job := func(kind, subject, control, db string) queue.Job {
				j := queue.Job{Kind: kind, Subject: subject, Control: control, DBVersion: db}
				if _, err := q.Enqueue(ctx, []queue.Job{j}); err != nil {
					t.Fatal(err)
				}
				now += 1000
				j.Key = queue.KeyFor(kind, subject, control, "", db)
				return j
			}
			complete := func(j queue.Job, status string, fs ...gate.Finding) {
				if _, _, err := q.Complete(ctx, queue.Run{Job: j, Attempt: 1, Started: now, Finished: now + 5, Status: status}, queue.Result{Findings: fs}); err != nil {
					t.Fatal(err)
				}
			}
			clean := job(queue.KindImageScan, "reg.example/clean@"+digest, "image-scan", "db1")
			complete(clean, "passed")
			dirty := job(queue.KindImageScan, "reg.example/dirty@sha256:2222222222222222222222222222222222222222222222222222222222222222", "image-scan", "db1")
			complete(dirty, "failed", gate.Finding{Rule: "CVE-1", Severity: "high"}, gate.Finding{Rule: "CVE-2", Severity: "CRITICAL"}, gate.Finding{Rule: "CVE-3", Severity: "HIGH"})
			broken := job(queue.KindDependencyScan, "commit:b", "dependency-scan", "db1")
			if err := q.Fail(ctx, queue.Run{Job: broken, Attempt: 5, Started: now, Finished: now + 5, Status: "errored"}, errors.New("lockfile unreadable\nmore"), true); err != nil {
				t.Fatal(err)
			}
			job(queue.KindDependencyScan, "commit:p", "dependency-scan", "db1")
			// Newer jobs on the same subject: rescans with a new DB.
			old := job(queue.KindDeferred, "commit:r", "lint", "db1")
			complete(old, "passed")
			job(queue.KindDeferred, "commit:r", "lint", "db2")
			complete(job(queue.KindDeferred, "commit:s", "lint", "db1"), "passed")
			complete(job(queue.KindDeferred, "commit:s", "lint", "db2"), "failed", gate.Finding{Rule: "L1", Severity: "low"})

			for _, tt := range []struct {
				name, kind, subject string
				want                gate.ResultState
				summary             string
			}{
				{"a subject never queued is missing", "image-scan", "reg.example/none@" + digest[:10], gate.ResultMissing, ""},
				{"a clean stored result passed", "image-scan", "reg.example/clean@" + digest, gate.ResultPassed, ""},
				{"another reference to the same digest passed too", "image-scan", "mirror.example/clean@" + digest, gate.ResultPassed, ""},
				{"findings failed, counted by severity", "image-scan", dirty.Subject, gate.ResultFailed, "1 CRITICAL, 2 HIGH"},
				{"a job failed for good errored", "dependency-scan", "commit:b", gate.ResultErrored, "lockfile unreadable"},
				{"a queued job is pending", "dependency-scan", "commit:p", gate.ResultPending, "queued"},
				{"a control name finds its deferred job; a rescan still queued does not hide its stored result", "lint", "commit:r", gate.ResultPassed, ""},
				{"the newest stored result decides", "lint", "commit:s", gate.ResultFailed, "1 LOW"},
				{"another kind of the same subject is missing", "image-scan", "commit:p", gate.ResultMissing, ""},
			} {
				t.Run(tt.name, func(t *testing.T) {
					st, err := results.Lookup(ctx, tt.kind, tt.subject)
					if err != nil || st.State != tt.want || st.Summary != tt.summary {
						t.Errorf("Lookup(%s, %s) = %+v, %v; want %s %q", tt.kind, tt.subject, st, err, tt.want, tt.summary)
					}
				})
			}

			t.Run("the fast verdict is the latest recorded for the change", func(t *testing.T) {
				ch := &gate.Change{Mode: gate.RangeMode, Head: "h9"}
				for _, verdict := range []string{"fail", "pass"} {
					if _, err := q.Record(ctx, &gate.Verdict{Verdict: verdict}, ch); err != nil {
						t.Fatal(err)
					}
					st, err := results.Lookup(ctx, gate.FastVerdict, "commit:h9")
					want := gate.ResultFailed
					if verdict == "pass" {
						want = gate.ResultPassed
					}
					if err != nil || st.State != want {
						t.Errorf("after a %s verdict: %+v %v", verdict, st, err)
					}
				}
				if st, _ := results.Lookup(ctx, gate.FastVerdict, "commit:none"); st.State != gate.ResultMissing {
					t.Errorf("no verdict: %+v", st)
				}
			})
		})
	}
}

package queue_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

// BenchmarkLookup: one required result looked up by sluice batch --queue,
// in a store of 2,000 image-scan jobs, half with results.
func BenchmarkLookup(b *testing.B) {
	for _, driver := range testdb.Drivers {
		b.Run(driver, func(b *testing.B) {
			ctx := context.Background()
			q, err := queue.Open(ctx, testdb.For(b, driver), queue.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			var jobs []queue.Job
			for i := range 2000 {
				jobs = append(jobs, queue.Job{Kind: queue.KindImageScan, Subject: fmt.Sprintf("reg.example/app@sha256:%064d", i), Control: "image-scan"})
			}
			if _, err := q.Enqueue(ctx, jobs); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < len(jobs); i += 2 {
				j := jobs[i]
				j.Key = queue.KeyFor(j.Kind, j.Subject, j.Control, "", "")
				if _, _, err := q.Complete(ctx, queue.Run{Job: j, Attempt: 1, Started: 1, Finished: 2, Status: "passed"}, queue.Result{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := q.Lookup(ctx, "image-scan", jobs[i%len(jobs)].Subject); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package worker_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/slowpath/queue"
	"github.com/sluice-ci/sluice/slowpath/worker"
)

// TestRescanNeverRunsAheadOfARelease: a nightly rescan queued first still
// waits for the release jobs queued after it, and a release arriving while
// the rescan is under way runs next.
func TestRescanNeverRunsAheadOfARelease(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			q := open(t, driver, queue.Options{})
			ctx := context.Background()
			var images []string
			for i := range 8 {
				images = append(images, fmt.Sprintf("reg.example/old@sha256:%064d", i))
			}
			rs, err := q.Rescan(ctx, images, queue.Rescan{Label: "2026-11-29", Control: "image-scan"})
			if err != nil || len(rs) != 8 {
				t.Fatalf("rescan: %v %v", rs, err)
			}
			v, ch := verdict("r1")
			if _, err := q.Record(ctx, v, ch); err != nil {
				t.Fatal(err)
			}
			late, lateCh := verdict("r1-late")
			late.Deferred = late.Deferred[1:]
			rec := &recorder{}
			rec.fn = func(ctx context.Context, j queue.Job, n int) (worker.Outcome, error) {
				if n == 4 { // the second rescan job
					if _, err := q.Record(ctx, late, lateCh); err != nil {
						return worker.Outcome{}, err
					}
				}
				return worker.Outcome{}, nil
			}
			w := newWorker(t, q, worker.Options{Concurrency: 1, Analyzers: rec.all()})
			if failed := drain(t, w); failed != 0 {
				t.Fatalf("drain: %d failed", failed)
			}
			got := rec.ran()
			release := []int{}
			for i, r := range got {
				if !strings.Contains(r, "reg.example/old@") {
					release = append(release, i)
				}
			}
			if len(got) != 11 || !slices.Equal(release, []int{0, 1, 4}) {
				t.Errorf("order: want the two release jobs first and the late one 5th of 11, got %v", got)
			}
		})
	}
}

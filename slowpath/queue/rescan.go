package queue

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Rescan describes a bulk rescan of images already released.
type Rescan struct {
	// Label makes the rescan's jobs distinct from the release scans and
	// from other rescans: an image is rescanned once per label (a nightly
	// rescan labels by date, so running it twice a night queues nothing
	// new).
	Label string
	// Control is the deep control the jobs run ("image-scan").
	Control string
	// PolicyDigest and PolicySource are the policy the jobs run under.
	PolicyDigest, PolicySource string
	// Budget is each job's slow-path budget.
	Budget time.Duration
}

// Rescan queues an image scan of each image on the bulk lane, where it
// never runs ahead of release-path work, idempotently by image, policy, DB
// version and r.Label, in one transaction. Receipts are in images' sorted
// order.
func (q *Queue) Rescan(ctx context.Context, images []string, r Rescan) ([]Receipt, error) {
	if r.Label == "" {
		return nil, fmt.Errorf("queueing a rescan: no label")
	}
	images = slices.Clone(images)
	slices.Sort(images)
	images = slices.Compact(images)
	jobs := make([]Job, 0, len(images))
	for _, img := range images {
		jobs = append(jobs, Job{
			Key:  KeyFor(KindImageScan, img, r.Control, r.PolicyDigest, q.opts.DBVersion+"\x00rescan:"+r.Label),
			Kind: KindImageScan, Subject: img, Control: r.Control, ChangeSubject: img,
			PolicyDigest: r.PolicyDigest, PolicySource: absPath(r.PolicySource), DBVersion: q.opts.DBVersion,
			Lane: LaneBulk, BudgetMS: r.Budget.Milliseconds(),
		})
	}
	return q.Enqueue(ctx, jobs)
}

// Released lists the image references a check deferred a scan of (the
// release lane) at or after since: the images a nightly rescan looks at
// again. Sorted, each once.
func (q *Queue) Released(ctx context.Context, since time.Time) ([]string, error) {
	var out []string
	err := q.inTx(ctx, func(tx txn) error {
		r, err := tx.query(ctx, `SELECT DISTINCT subject FROM sluice_job
			WHERE kind = $1 AND lane = $2 AND deferred_at_ms >= $3 ORDER BY subject`,
			KindImageScan, LaneRelease, since.UnixMilli())
		if err != nil {
			return err
		}
		defer r.Close()
		for r.Next() {
			var s string
			if err := r.Scan(&s); err != nil {
				return err
			}
			out = append(out, s)
		}
		return r.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing released images: %w", err)
	}
	return out, nil
}

package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/sluice-ci/sluice/gate"
)

// Job kinds: one River kind per kind of slow work.
const (
	KindImageScan      = "image-scan"
	KindDependencyScan = "dependency-scan"
	// KindDeferred re-runs in full a fast control that overran its budget
	// with on_overrun: defer.
	KindDeferred = "deferred"
)

// Kinds lists every job kind, sorted.
var Kinds = []string{KindDependencyScan, KindDeferred, KindImageScan}

// Lanes: River priorities, 1 running first. Work a check defers is on the
// release path; bulk rescans (nightly, new DB) never starve it.
const (
	LaneRelease = "release"
	LaneBulk    = "bulk"
)

func priority(lane string) int {
	if lane == LaneBulk {
		return 4
	}
	return 1
}

// Job is what every slow-path job carries: what to analyse, under which
// policy and DB, and how to re-derive the change.
type Job struct {
	// Key identifies the work for idempotency: a hash of kind, subject,
	// control, policy digest and DB version.
	Key     string `json:"key" river:"unique"`
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	Control string `json:"control"`
	// ChangeSubject is the change the work came from ("commit:SHA").
	ChangeSubject string `json:"change_subject"`
	PolicyDigest  string `json:"policy_digest"`
	PolicySource  string `json:"policy_source,omitempty"`
	DBVersion     string `json:"db_version"`
	Lane          string `json:"lane"`
	// BudgetMS is the job's slow-path budget: its context deadline.
	BudgetMS int64 `json:"budget_ms"`
	// The change, to re-derive it: a range of the repository at Root, or
	// paths under Root.
	Mode  string   `json:"mode"`
	Root  string   `json:"root"`
	Base  string   `json:"base,omitempty"`
	Head  string   `json:"head,omitempty"`
	Paths []string `json:"paths,omitempty"`
}

// Budget is the job's budget as a duration.
func (j Job) Budget() time.Duration { return time.Duration(j.BudgetMS) * time.Millisecond }

// KeyFor is the idempotency key of a unit of work.
func KeyFor(kind, subject, control, policyDigest, dbVersion string) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{kind, subject, control, policyDigest, dbVersion}, "\x00")))
	return hex.EncodeToString(sum[:16])
}

// River job args, one type per kind.

// ImageScanArgs is an image-scan job.
type ImageScanArgs struct{ Job }

// Kind is the River kind.
func (ImageScanArgs) Kind() string { return KindImageScan }

// DependencyScanArgs is a dependency-scan job.
type DependencyScanArgs struct{ Job }

// Kind is the River kind.
func (DependencyScanArgs) Kind() string { return KindDependencyScan }

// DeferredArgs is a deferred fast control's full run.
type DeferredArgs struct{ Job }

// Kind is the River kind.
func (DeferredArgs) Kind() string { return KindDeferred }

func riverArgs(j Job) (river.JobArgs, error) {
	switch j.Kind {
	case KindImageScan:
		return ImageScanArgs{j}, nil
	case KindDependencyScan:
		return DependencyScanArgs{j}, nil
	case KindDeferred:
		return DeferredArgs{j}, nil
	}
	return nil, fmt.Errorf("unknown job kind %q (known: %s)", j.Kind, strings.Join(Kinds, ", "))
}

// Receipt is Enqueue's answer for one job.
type Receipt = gate.Receipt

// Enqueue queues jobs (bulk rescans, or anything not from a check) in one
// transaction, idempotently by Job.Key.
func (q *Queue) Enqueue(ctx context.Context, jobs []Job) ([]Receipt, error) {
	var out []Receipt
	err := q.inTx(ctx, func(tx txn) error {
		out = out[:0]
		now := q.opts.Now().UnixMilli()
		for _, j := range jobs {
			r, err := q.enqueueTx(ctx, tx, j, nil, now)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

func (q *Queue) enqueueTx(ctx context.Context, tx txn, j Job, verdictID *int64, now int64) (Receipt, error) {
	if j.Key == "" {
		j.Key = KeyFor(j.Kind, j.Subject, j.Control, j.PolicyDigest, j.DBVersion)
	}
	if j.Lane == "" {
		j.Lane = LaneRelease
	}
	if j.ChangeSubject == "" {
		j.ChangeSubject = j.Subject
	}
	r, err := tx.query(ctx, "SELECT river_job_id FROM sluice_job WHERE key = $1", j.Key)
	if err != nil {
		return Receipt{}, fmt.Errorf("looking up job %s: %w", j.Key, err)
	}
	var existing int64
	found := r.Next()
	if found {
		err = r.Scan(&existing)
	}
	r.Close()
	if err != nil {
		return Receipt{}, fmt.Errorf("looking up job %s: %w", j.Key, err)
	}
	if found {
		return Receipt{Job: strconv.FormatInt(existing, 10), Duplicate: true}, nil
	}
	args, err := riverArgs(j)
	if err != nil {
		return Receipt{}, err
	}
	res, err := tx.insert(ctx, args, &river.InsertOpts{
		MaxAttempts: q.opts.MaxAttempts,
		Priority:    priority(j.Lane),
		UniqueOpts:  river.UniqueOpts{ByArgs: true},
	})
	if err != nil {
		return Receipt{}, fmt.Errorf("inserting %s job for %s: %w", j.Kind, j.Subject, err)
	}
	if _, err := tx.exec(ctx, `INSERT INTO sluice_job
		(key, river_job_id, kind, subject, change_subject, control, policy_digest, db_version, lane, verdict_id, deferred_at_ms, state)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued') ON CONFLICT (key) DO NOTHING`,
		j.Key, res.Job.ID, j.Kind, j.Subject, j.ChangeSubject, j.Control, j.PolicyDigest, j.DBVersion, j.Lane, verdictID, now); err != nil {
		return Receipt{}, fmt.Errorf("recording job %s: %w", j.Key, err)
	}
	if _, digest, ok := strings.Cut(j.Subject, "@sha256:"); ok {
		if _, err := tx.exec(ctx, `INSERT INTO sluice_job_digest (digest, key) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			"sha256:"+digest, j.Key); err != nil {
			return Receipt{}, fmt.Errorf("recording job %s by digest: %w", j.Key, err)
		}
	}
	return Receipt{Job: strconv.FormatInt(res.Job.ID, 10), Duplicate: res.UniqueSkippedAsDuplicate}, nil
}

// Record implements gate.Queue: it stores the verdict, a ledger row for
// each of its fast controls, and enqueues its deferred work on the release
// lane, all in one transaction.
func (q *Queue) Record(ctx context.Context, v *gate.Verdict, ch *gate.Change) ([]gate.Receipt, error) {
	doc, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding verdict: %w", err)
	}
	pol := q.policyFor(v)
	var out []gate.Receipt
	err = q.inTx(ctx, func(tx txn) error {
		out = out[:0]
		now := q.opts.Now().UnixMilli()
		subject := ch.Subject()
		r, err := tx.query(ctx, `INSERT INTO sluice_verdict (subject, policy_digest, verdict, recorded_at_ms, doc)
			VALUES ($1, $2, $3, $4, $5) RETURNING id`, subject, v.Policy.Digest, v.Verdict, now, string(doc))
		if err != nil {
			return fmt.Errorf("recording verdict: %w", err)
		}
		var id int64
		if r.Next() {
			err = r.Scan(&id)
		} else {
			err = r.Err()
		}
		r.Close()
		if err != nil {
			return fmt.Errorf("recording verdict: %w", err)
		}
		for _, c := range v.Controls {
			if _, err := tx.exec(ctx, `INSERT INTO sluice_ledger
				(control, placement, subject, status, mode_applied, duration_ms, budget_ms, started_at_ms, finished_at_ms, verdict_id)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
				c.Name, string(c.Path), subject, string(c.Status), string(c.ModeApplied), c.DurationMS, c.BudgetMS, now-c.DurationMS, now, id); err != nil {
				return fmt.Errorf("recording ledger: %w", err)
			}
		}
		for _, d := range v.Deferred {
			j := Job{
				Kind: d.Kind, Subject: d.Subject, Control: d.Control, ChangeSubject: subject,
				PolicyDigest: v.Policy.Digest, PolicySource: absPath(v.Policy.Source), DBVersion: q.opts.DBVersion,
				Lane: LaneRelease, BudgetMS: pol(d).Milliseconds(),
				Mode: string(ch.Mode), Root: absPath(ch.Root), Base: ch.Base, Head: ch.Head, Paths: absPaths(ch.Paths),
			}
			j.Key = KeyFor(j.Kind, j.Subject, j.Control, j.PolicyDigest, j.DBVersion)
			perCheck := !Immutable(d.Subject)
			if perCheck {
				// A tag or a working tree may hold something else next
				// time: this check's work is its own.
				j.Key += "/verdict-" + strconv.FormatInt(id, 10)
			}
			rc, err := q.enqueueTx(ctx, tx, j, &id, now)
			if err != nil {
				return err
			}
			rc.PerCheck = perCheck
			if err := q.recordTargetTx(ctx, tx, j.Key, subject, id, now); err != nil {
				return err
			}
			out = append(out, rc)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Immutable reports whether a subject names content that cannot change: an
// image by digest (REF@sha256:...) or a commit ("commit:SHA"). Only such
// work is analysed once and joined by later checks; an image given by tag
// or a set of paths in a working tree is analysed for each check that
// defers it.
func Immutable(subject string) bool {
	return strings.Contains(subject, "@sha256:") || strings.HasPrefix(subject, "commit:")
}

// absPath makes a path from the check's working directory usable by a
// worker elsewhere; "defaults" and "" stay as they are.
func absPath(p string) string {
	if p == "" || p == "defaults" || filepath.IsAbs(p) {
		return p
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func absPaths(ps []string) []string {
	if ps == nil {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = absPath(p)
	}
	return out
}

// policyFor returns the slow-path budget of a deferred item: the policy's
// budget for a slow control, the deferred budget for a fast one re-run.
func (q *Queue) policyFor(v *gate.Verdict) func(d gate.Deferred) time.Duration {
	return func(d gate.Deferred) time.Duration {
		if d.Kind == KindDeferred {
			return q.opts.DeferredBudget
		}
		if b, ok := q.opts.Budgets[d.Control]; ok && b > 0 {
			return b
		}
		return 10 * time.Minute
	}
}

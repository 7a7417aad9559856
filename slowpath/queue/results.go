package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/sluice-ci/sluice/gate"
)

// Job states sluice records beside River's own.
const (
	StateQueued    = "queued"
	StateRunning   = "running"
	StateRetrying  = "retrying"
	StateCompleted = "completed"
	StateFailed    = "failed"
)

// Run is one attempt of a job, as the worker reports it.
type Run struct {
	Job      Job
	RiverID  int64
	Attempt  int
	Started  int64 // Unix ms
	Finished int64 // Unix ms
	// Status is the control status: "passed", "failed" (findings that
	// block), "errored" or "overran".
	Status string
	// ModeApplied is the budget mode that decided an error or overrun.
	ModeApplied string
}

// Result is what a completed job found.
type Result struct {
	Findings  []gate.Finding `json:"findings"`
	SBOM      []byte         `json:"-"`
	Notes     []string       `json:"notes,omitempty"`
	DBVersion string         `json:"db_version,omitempty"`
}

// Started records that an attempt began.
func (q *Queue) Started(ctx context.Context, r Run) error {
	return q.inTx(ctx, func(tx txn) error {
		_, err := tx.exec(ctx, `UPDATE sluice_job SET state = $1, attempts = $2, started_at_ms = $3 WHERE key = $4`,
			StateRunning, r.Attempt, r.Started, r.Job.Key)
		return err
	})
}

// Complete stores a job's result, its ledger row and its final state in one
// transaction. A result already stored for the key (the job ran again after
// a worker died between storing and River marking it done) is kept and the
// new one dropped: one result per job. It reports whether this call stored
// the result.
func (q *Queue) Complete(ctx context.Context, r Run, res Result) (stored bool, exposure time.Duration, err error) {
	findings := res.Findings
	if findings == nil {
		findings = []gate.Finding{}
	}
	fj, err := json.Marshal(findings)
	if err != nil {
		return false, 0, fmt.Errorf("encoding findings: %w", err)
	}
	notes := res.Notes
	if notes == nil {
		notes = []string{}
	}
	nj, err := json.Marshal(notes)
	if err != nil {
		return false, 0, fmt.Errorf("encoding notes: %w", err)
	}
	err = q.inTx(ctx, func(tx txn) error {
		deferredAt, err := q.deferredAt(ctx, tx, r.Job.Key)
		if err != nil {
			return err
		}
		exposure = time.Duration(r.Finished-deferredAt) * time.Millisecond
		n, err := tx.exec(ctx, `INSERT INTO sluice_result
			(key, river_job_id, attempt, status, findings, sbom, notes, db_version, started_at_ms, finished_at_ms, duration_ms, exposure_ms)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (key) DO NOTHING`,
			r.Job.Key, r.RiverID, r.Attempt, r.Status, string(fj), string(res.SBOM), string(nj), res.DBVersion,
			r.Started, r.Finished, r.Finished-r.Started, r.Finished-deferredAt)
		if err != nil {
			return fmt.Errorf("storing result: %w", err)
		}
		stored = n == 1
		if stored {
			if err := q.concludedTx(ctx, tx, r.Job.Key, r.Finished); err != nil {
				return err
			}
		}
		if err := q.ledgerTx(ctx, tx, r); err != nil {
			return err
		}
		_, err = tx.exec(ctx, `UPDATE sluice_job SET state = $1, attempts = $2, finished_at_ms = $3, last_error = '' WHERE key = $4`,
			StateCompleted, r.Attempt, r.Finished, r.Job.Key)
		return err
	})
	return stored, exposure, err
}

// Fail records a failed attempt: retrying, or failed for good when final.
func (q *Queue) Fail(ctx context.Context, r Run, cause error, final bool) error {
	state, finished := StateRetrying, any(nil)
	if final {
		state, finished = StateFailed, r.Finished
	}
	return q.inTx(ctx, func(tx txn) error {
		if err := q.ledgerTx(ctx, tx, r); err != nil {
			return err
		}
		if final {
			if err := q.concludedTx(ctx, tx, r.Job.Key, r.Finished); err != nil {
				return err
			}
		}
		_, err := tx.exec(ctx, `UPDATE sluice_job SET state = $1, attempts = $2, last_error = $3, finished_at_ms = $4 WHERE key = $5`,
			state, r.Attempt, cause.Error(), finished, r.Job.Key)
		return err
	})
}

func (q *Queue) ledgerTx(ctx context.Context, tx txn, r Run) error {
	_, err := tx.exec(ctx, `INSERT INTO sluice_ledger
		(control, placement, subject, status, mode_applied, duration_ms, budget_ms, started_at_ms, finished_at_ms, job_key, attempt)
		VALUES ($1, 'slow', $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		cmpOr(r.Job.Control, r.Job.Kind), r.Job.Subject, r.Status, r.ModeApplied, r.Finished-r.Started, r.Job.BudgetMS,
		r.Started, r.Finished, r.Job.Key, r.Attempt)
	if err != nil {
		return fmt.Errorf("recording ledger: %w", err)
	}
	return nil
}

func (q *Queue) deferredAt(ctx context.Context, tx txn, key string) (int64, error) {
	r, err := tx.query(ctx, "SELECT deferred_at_ms FROM sluice_job WHERE key = $1", key)
	if err != nil {
		return 0, fmt.Errorf("reading job %s: %w", key, err)
	}
	defer r.Close()
	var at int64
	if !r.Next() {
		if err := r.Err(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("reading job %s: not recorded in sluice_job", key)
	}
	if err := r.Scan(&at); err != nil {
		return 0, err
	}
	return at, nil
}

// Depth is the work not yet finished of one kind.
type Depth struct {
	Kind string
	// Waiting counts jobs queued or retrying; Running those started.
	Waiting, Running int64
	// OldestMS is when the oldest unfinished job was deferred (Unix ms;
	// 0 when none).
	OldestMS int64
}

// Depths reports unfinished work by kind, for every kind, sorted.
func (q *Queue) Depths(ctx context.Context) ([]Depth, error) {
	byKind := map[string]*Depth{}
	for _, k := range Kinds {
		byKind[k] = &Depth{Kind: k}
	}
	err := q.inTx(ctx, func(tx txn) error {
		r, err := tx.query(ctx, `SELECT kind, state, count(*), min(deferred_at_ms) FROM sluice_job
			WHERE state IN ('queued', 'running', 'retrying') GROUP BY kind, state`)
		if err != nil {
			return err
		}
		defer r.Close()
		for r.Next() {
			var kind, state string
			var n, oldest int64
			if err := r.Scan(&kind, &state, &n, &oldest); err != nil {
				return err
			}
			d := byKind[kind]
			if d == nil {
				d = &Depth{Kind: kind}
				byKind[kind] = d
			}
			if state == StateRunning {
				d.Running += n
			} else {
				d.Waiting += n
			}
			if d.OldestMS == 0 || oldest < d.OldestMS {
				d.OldestMS = oldest
			}
		}
		return r.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("reading queue depth: %w", err)
	}
	out := make([]Depth, 0, len(byKind))
	for _, d := range byKind {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Depth) int { return cmpString(a.Kind, b.Kind) })
	return out, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// LedgerRow is one control run: a fast control of a recorded verdict, or
// one attempt of a slow job.
type LedgerRow struct {
	Control     string `json:"control"`
	Placement   string `json:"placement"`
	Subject     string `json:"subject"`
	Status      string `json:"status"`
	ModeApplied string `json:"mode_applied,omitempty"`
	DurationMS  int64  `json:"duration_ms"`
	BudgetMS    int64  `json:"budget_ms"`
	StartedMS   int64  `json:"started_at_ms"`
	FinishedMS  int64  `json:"finished_at_ms"`
	Attempt     int    `json:"attempt,omitempty"`
}

// Ledger returns the control runs recorded for subject, oldest first.
func (q *Queue) Ledger(ctx context.Context, subject string) ([]LedgerRow, error) {
	var out []LedgerRow
	err := q.inTx(ctx, func(tx txn) error {
		r, err := tx.query(ctx, `SELECT control, placement, subject, status, mode_applied, duration_ms, budget_ms, started_at_ms, finished_at_ms, attempt
			FROM sluice_ledger WHERE subject = $1 ORDER BY id`, subject)
		if err != nil {
			return err
		}
		defer r.Close()
		for r.Next() {
			var l LedgerRow
			var attempt sql.NullInt64
			if err := r.Scan(&l.Control, &l.Placement, &l.Subject, &l.Status, &l.ModeApplied, &l.DurationMS, &l.BudgetMS, &l.StartedMS, &l.FinishedMS, &attempt); err != nil {
				return err
			}
			l.Attempt = int(attempt.Int64)
			out = append(out, l)
		}
		return r.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("reading ledger of %s: %w", subject, err)
	}
	return out, nil
}

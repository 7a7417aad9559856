package queue_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

// fillLedger writes n ledger runs over the six days before now into the
// SQLite queue at path, in one transaction with a prepared statement, and
// 10,000 slow jobs (9,900 with a result, 100 still queued).
func fillLedger(tb testing.TB, path string, n int, now time.Time) {
	tb.Helper()
	ctx := context.Background()
	q, err := queue.Open(ctx, path, queue.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	q.Close()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, `INSERT INTO sluice_ledger
		(control, placement, subject, status, mode_applied, duration_ms, budget_ms, started_at_ms, finished_at_ms, verdict_id, job_key, attempt)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		tb.Fatal(err)
	}
	type ctl struct {
		name, placement string
		median, budget  int64
	}
	ctls := []ctl{{"secrets", "fast", 800, 5000}, {"lint", "fast", 3000, 20000}, {"signatures", "fast", 1200, 10000},
		{"image-scan", "slow", 90000, 600000}, {"dependency-scan", "slow", 40000, 600000}}
	r := rand.New(rand.NewPCG(1, 2))
	span := (6 * 24 * time.Hour).Milliseconds()
	statuses := []string{"passed", "passed", "passed", "passed", "passed", "passed", "passed", "failed", "errored", "overran"}
	for i := range n {
		c := ctls[i%len(ctls)]
		d := int64(float64(c.median) * r.ExpFloat64())
		fin := now.UnixMilli() - r.Int64N(span)
		st := statuses[r.IntN(len(statuses))]
		var verdict, key, attempt any
		if c.placement == "fast" {
			verdict = int64(i)
		} else {
			key, attempt = fmt.Sprintf("k%d", i), int64(1+r.IntN(2))
		}
		if _, err := ins.ExecContext(ctx, c.name, c.placement, fmt.Sprintf("commit:%040d", i/5), st, "", d, c.budget, fin-d, fin, verdict, key, attempt); err != nil {
			tb.Fatal(err)
		}
	}
	jobs, err := tx.PrepareContext(ctx, `INSERT INTO sluice_job (key, river_job_id, kind, subject, change_subject, control, policy_digest, db_version, lane, deferred_at_ms, state)
		VALUES (?, ?, 'image-scan', ?, ?, 'image-scan', '', '', 'release', ?, ?)`)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := tx.PrepareContext(ctx, `INSERT INTO sluice_result (key, river_job_id, attempt, status, findings, sbom, notes, db_version, started_at_ms, finished_at_ms, duration_ms, exposure_ms)
		VALUES (?, ?, 1, 'passed', '[]', '', '[]', '', ?, ?, ?, ?)`)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range 10000 {
		at := now.UnixMilli() - r.Int64N(span)
		key, state := fmt.Sprintf("j%d", i), queue.StateCompleted
		if i < 100 {
			state = queue.StateQueued
		}
		if _, err := jobs.ExecContext(ctx, key, int64(i), fmt.Sprintf("r.example/app@sha256:%064d", i), fmt.Sprintf("commit:%040d", i), at, state); err != nil {
			tb.Fatal(err)
		}
		if state == queue.StateCompleted {
			exp := int64(float64(120000) * r.ExpFloat64())
			if _, err := res.ExecContext(ctx, key, int64(i), at+exp/2, at+exp, exp/2, exp); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE"); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkReport times the budgets report over a SQLite ledger of
// 1,000,000 runs (filled once per run of the benchmark). The bar
// is under 1 s.
func BenchmarkReport(b *testing.B) {
	ctx := context.Background()
	now := time.Now()
	path := filepath.Join(b.TempDir(), "ledger.db")
	fillLedger(b, path, 1_000_000, now)
	q, err := queue.Open(ctx, path, queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	b.Run("report-1M", func(b *testing.B) {
		for b.Loop() {
			rep, err := q.Report(ctx, queue.ReportOptions{Since: now.Add(-7 * 24 * time.Hour)})
			if err != nil {
				b.Fatal(err)
			}
			if len(rep.Controls) != 5 || rep.Controls[0].Runs == 0 {
				b.Fatalf("unexpected report: %+v", rep.Controls)
			}
		}
	})
	// What auto-demotion adds to a check: three fast controls reviewed in
	// full (review_every: 0s, or the first check after review_every), and
	// between full reviews (the default review_every: 1m), the last
	// decision read back.
	cands := []gate.Candidate{
		{Control: "secrets", Budget: budgets.Budget{Time: 5 * time.Second, OnOverrun: budgets.Defer}},
		{Control: "lint", Budget: budgets.Budget{Time: 20 * time.Second, OnOverrun: budgets.Defer}},
		{Control: "signatures", Budget: budgets.Budget{Time: 10 * time.Second, OnOverrun: budgets.FailClosed}},
	}
	for _, every := range []time.Duration{0, time.Hour} {
		name := "review-1M"
		if every > 0 {
			name = "review-between-1M"
		}
		b.Run(name, func(b *testing.B) {
			rule := budgets.Rule{AutoDemote: true, Window: 7 * 24 * time.Hour, MinRuns: 20, ReviewEvery: every}
			for b.Loop() {
				if _, err := q.Review(ctx, rule, cands); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package queue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
)

// The budgets report and auto-demotion read the ledger with SQL only:
// counts by grouped queries, percentiles by walking the index on
// (control, placement, duration_ms, finished_at_ms) to the row at the
// percentile's rank, so a report over a million runs reads a few thousand
// index entries per figure instead of streaming the rows into Go.
//
// Percentiles are nearest-rank: the p-th percentile of n runs is the
// ceil(p*n)-th shortest.

// ReportOptions select what Report covers.
type ReportOptions struct {
	// Since is the start of the window; runs finished before it are not
	// counted.
	Since time.Time
	// Inside is how many of the artifacts inside the exposure window the
	// report lists, oldest first (0 means 50). All are counted.
	Inside int
}

// ErrNotDemoted is Restore's error for a control that is not demoted.
var ErrNotDemoted = errors.New("not demoted")

// rank is the 1-based nearest rank of percentile p (0 < p <= 1) in n.
func rank(p float64, n int64) int64 {
	k := int64(math.Ceil(p*float64(n) - 1e-9))
	return min(max(k, 1), n)
}

// percentile returns the value at the nearest rank of p among the n rows
// that query selects, given the query ordered ascending (asc) and
// descending (desc), each ending in "LIMIT 1 OFFSET $k". It walks from
// whichever end is nearer.
func percentile(ctx context.Context, tx txn, asc, desc string, p float64, n int64, args ...any) (int64, error) {
	if n == 0 {
		return 0, nil
	}
	k := rank(p, n)
	q, off := asc, k-1
	if k > n/2 {
		q, off = desc, n-k
	}
	r, err := tx.query(ctx, q, append(args, off)...)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var v int64
	if !r.Next() {
		if err := r.Err(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("no row at rank %d of %d", k, n)
	}
	return v, r.Scan(&v)
}

const (
	durAsc  = `SELECT duration_ms FROM sluice_ledger WHERE control = $1 AND placement = $2 AND finished_at_ms >= $3 ORDER BY duration_ms LIMIT 1 OFFSET $4`
	durDesc = `SELECT duration_ms FROM sluice_ledger WHERE control = $1 AND placement = $2 AND finished_at_ms >= $3 ORDER BY duration_ms DESC LIMIT 1 OFFSET $4`
	durN    = `SELECT count(*), coalesce(max(duration_ms), 0) FROM sluice_ledger WHERE control = $1 AND placement = $2 AND finished_at_ms >= $3`
	expAsc  = `SELECT exposure_ms FROM sluice_result WHERE finished_at_ms >= $1 ORDER BY exposure_ms LIMIT 1 OFFSET $2`
	expDesc = `SELECT exposure_ms FROM sluice_result WHERE finished_at_ms >= $1 ORDER BY exposure_ms DESC LIMIT 1 OFFSET $2`
)

// openStates are the job states whose artifact is inside the exposure
// window: not analysed yet, or failed for good (never analysed).
const openStates = `('queued', 'running', 'retrying', 'failed')`

// Report computes the budgets report over the ledger, queue and results:
// figures per control and placement, queue depth, the exposure window and
// the demotions. The caller finishes it (budgets.Report.Finish) with what
// the policy says.
func (q *Queue) Report(ctx context.Context, o ReportOptions) (*budgets.Report, error) {
	if o.Inside <= 0 {
		o.Inside = 50
	}
	now := q.opts.Now()
	since := o.Since.UnixMilli()
	rep := &budgets.Report{Schema: budgets.ReportSchema, GeneratedAt: now.UTC().Truncate(time.Millisecond), Since: o.Since.UTC(), Store: q.URL()}
	err := q.inTx(ctx, func(tx txn) error {
		// Grouped by status too, so that the covering index
		// sluice_ledger_control_status answers it without the table.
		r, err := tx.query(ctx, `SELECT control, placement, status, count(*), max(budget_ms),
			sum(CASE WHEN attempt > 1 THEN 1 ELSE 0 END)
			FROM sluice_ledger WHERE finished_at_ms >= $1 GROUP BY control, placement, status ORDER BY control, placement, status`, since)
		if err != nil {
			return fmt.Errorf("counting runs: %w", err)
		}
		for r.Next() {
			var (
				control, placement, status string
				n, budget, retries         int64
			)
			if err := r.Scan(&control, &placement, &status, &n, &budget, &retries); err != nil {
				r.Close()
				return fmt.Errorf("counting runs: %w", err)
			}
			if k := len(rep.Controls) - 1; k < 0 || rep.Controls[k].Control != control || rep.Controls[k].Placement != placement {
				rep.Controls = append(rep.Controls, budgets.ControlFigures{Control: control, Placement: placement})
			}
			c := &rep.Controls[len(rep.Controls)-1]
			c.Runs += n
			c.BudgetMS = max(c.BudgetMS, budget)
			c.Retries += retries
			switch budgets.Status(status) {
			case budgets.Failed:
				c.Failed += n
			case budgets.Errored:
				c.Errored += n
			case budgets.Overran:
				c.Overran += n
			case budgets.Deferred:
				c.Overran += n
				c.Deferred += n
			}
		}
		r.Close()
		if err := r.Err(); err != nil {
			return fmt.Errorf("counting runs: %w", err)
		}
		for i := range rep.Controls {
			c := &rep.Controls[i]
			for _, f := range []struct {
				p   float64
				dst *int64
			}{{0.50, &c.P50MS}, {0.95, &c.P95MS}, {0.99, &c.P99MS}, {1, &c.MaxMS}} {
				v, err := percentile(ctx, tx, durAsc, durDesc, f.p, c.Runs, c.Control, c.Placement, since)
				if err != nil {
					return fmt.Errorf("reading p%v of %s: %w", f.p*100, c.Control, err)
				}
				*f.dst = v
			}
		}
		if err := exposure(ctx, tx, &rep.Exposure, since, now.UnixMilli(), o.Inside); err != nil {
			return fmt.Errorf("reading the exposure window: %w", err)
		}
		if rep.Demoted, err = demoted(ctx, tx); err != nil {
			return err
		}
		rep.Moves, err = moves(ctx, tx, since)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the ledger: %w", err)
	}
	depths, err := q.Depths(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range depths {
		qd := budgets.QueueDepth{Kind: d.Kind, Waiting: d.Waiting, Running: d.Running}
		if d.OldestMS > 0 {
			qd.OldestAgeMS = max(0, now.UnixMilli()-d.OldestMS)
		}
		rep.Queue = append(rep.Queue, qd)
	}
	return rep, nil
}

func exposure(ctx context.Context, tx txn, e *budgets.Exposure, since, now int64, limit int) error {
	if err := scanOne(ctx, tx, []any{&e.Closed}, `SELECT count(*) FROM sluice_result WHERE finished_at_ms >= $1`, since); err != nil {
		return err
	}
	for _, f := range []struct {
		p   float64
		dst *int64
	}{{0.50, &e.P50MS}, {0.95, &e.P95MS}, {1, &e.MaxMS}} {
		v, err := percentile(ctx, tx, expAsc, expDesc, f.p, e.Closed, since)
		if err != nil {
			return err
		}
		*f.dst = v
	}
	if err := scanOne(ctx, tx, []any{&e.Open}, `SELECT count(*) FROM sluice_job WHERE state IN `+openStates); err != nil {
		return err
	}
	r, err := tx.query(ctx, `SELECT subject, change_subject, kind, control, state, deferred_at_ms FROM sluice_job
		WHERE state IN `+openStates+` ORDER BY deferred_at_ms, subject, control LIMIT $1`, limit)
	if err != nil {
		return err
	}
	defer r.Close()
	for r.Next() {
		var x budgets.Exposed
		var at int64
		if err := r.Scan(&x.Subject, &x.Change, &x.Kind, &x.Control, &x.State, &at); err != nil {
			return err
		}
		x.AgeMS = max(0, now-at)
		e.Inside = append(e.Inside, x)
	}
	return r.Err()
}

func scanOne(ctx context.Context, tx txn, dst []any, query string, args ...any) error {
	r, err := tx.query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer r.Close()
	if !r.Next() {
		if err := r.Err(); err != nil {
			return err
		}
		return errors.New("no row")
	}
	return r.Scan(dst...)
}

const moveColumns = `control, action, by_whom, at_ms, placement, runs, p95_ms, budget_ms, reason`

func scanMoves(r rows) ([]budgets.Move, error) {
	defer r.Close()
	out := []budgets.Move{}
	for r.Next() {
		var m budgets.Move
		var at int64
		if err := r.Scan(&m.Control, &m.Action, &m.By, &at, &m.Placement, &m.Runs, &m.P95MS, &m.BudgetMS, &m.Reason); err != nil {
			return nil, err
		}
		m.At = time.UnixMilli(at).UTC()
		out = append(out, m)
	}
	return out, r.Err()
}

// demoted returns each control whose latest move is a demotion.
func demoted(ctx context.Context, tx txn) ([]budgets.Move, error) {
	r, err := tx.query(ctx, `SELECT `+moveColumns+` FROM sluice_demotion d
		WHERE action = 'demote' AND id = (SELECT max(id) FROM sluice_demotion e WHERE e.control = d.control) ORDER BY control`)
	if err != nil {
		return nil, fmt.Errorf("reading demotions: %w", err)
	}
	ms, err := scanMoves(r)
	if err != nil {
		return nil, fmt.Errorf("reading demotions: %w", err)
	}
	return ms, nil
}

func moves(ctx context.Context, tx txn, since int64) ([]budgets.Move, error) {
	r, err := tx.query(ctx, `SELECT `+moveColumns+` FROM sluice_demotion WHERE at_ms >= $1 ORDER BY id`, since)
	if err != nil {
		return nil, fmt.Errorf("reading demotions: %w", err)
	}
	ms, err := scanMoves(r)
	if err != nil {
		return nil, fmt.Errorf("reading demotions: %w", err)
	}
	return ms, nil
}

// Moves returns every demotion and restoration since the given time,
// oldest first.
func (q *Queue) Moves(ctx context.Context, since time.Time) ([]budgets.Move, error) {
	var out []budgets.Move
	err := q.inTx(ctx, func(tx txn) error {
		var err error
		out, err = moves(ctx, tx, since.UnixMilli())
		return err
	})
	return out, err
}

// lastMove is a control's latest move, or the zero Move.
func lastMove(ctx context.Context, tx txn, control string) (budgets.Move, error) {
	r, err := tx.query(ctx, `SELECT `+moveColumns+` FROM sluice_demotion WHERE control = $1 ORDER BY id DESC LIMIT 1`, control)
	if err != nil {
		return budgets.Move{}, err
	}
	ms, err := scanMoves(r)
	if err != nil || len(ms) == 0 {
		return budgets.Move{}, err
	}
	return ms[0], nil
}

// sample is a control's runs at placement since from: how many, and
// their p95.
func sample(ctx context.Context, tx txn, control, placement string, from int64) (budgets.Sample, error) {
	var s budgets.Sample
	var maxMS int64
	if err := scanOne(ctx, tx, []any{&s.Runs, &maxMS}, durN, control, placement, from); err != nil {
		return s, err
	}
	p95, err := percentile(ctx, tx, durAsc, durDesc, 0.95, s.Runs, control, placement, from)
	s.P95 = time.Duration(p95) * time.Millisecond
	return s, err
}

func insertMove(ctx context.Context, tx txn, m budgets.Move) error {
	_, err := tx.exec(ctx, `INSERT INTO sluice_demotion (`+moveColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		m.Control, m.Action, m.By, m.At.UnixMilli(), m.Placement, m.Runs, m.P95MS, m.BudgetMS, m.Reason)
	if err != nil {
		return fmt.Errorf("recording %s of %s: %w", m.Action, m.Control, err)
	}
	return nil
}

// lockDemotions serialises reviews: on SQLite the BEGIN IMMEDIATE
// transaction already does; on Postgres a transaction advisory lock.
func (q *Queue) lockDemotions(ctx context.Context, tx txn) error {
	if q.be.name() != "postgres" {
		return nil
	}
	_, err := tx.exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock+1)
	return err
}

// Review implements gate.Demotions. For each candidate it takes the runs
// since the later of the window's start and the control's last move: fast
// runs while it is not demoted, slow runs (its deferred re-runs) while it
// is. It records a move when budgets.Review decides one, in the same
// transaction, with the figures that caused it.
func (q *Queue) Review(ctx context.Context, rule budgets.Rule, cands []gate.Candidate) (gate.Review, error) {
	var out gate.Review
	now := q.opts.Now()
	err := q.inTx(ctx, func(tx txn) error {
		out = gate.Review{}
		if err := q.lockDemotions(ctx, tx); err != nil {
			return err
		}
		for _, c := range cands {
			last, err := lastMove(ctx, tx, c.Control)
			if err != nil {
				return fmt.Errorf("reading demotions of %s: %w", c.Control, err)
			}
			isDemoted := last.Action == "demote"
			if rule.ReviewEvery > 0 {
				rv, ok, err := lastReview(ctx, tx, c.Control)
				if err != nil {
					return fmt.Errorf("reading the last review of %s: %w", c.Control, err)
				}
				if ok && rv.budgetMS == c.Budget.Time.Milliseconds() && now.Sub(rv.at) < rule.ReviewEvery && !rv.at.After(now) {
					switch {
					case isDemoted:
						out.Demoted = append(out.Demoted, demotion(last))
					case rv.held:
						out.Held = append(out.Held, gate.Demotion{Control: c.Control, Since: rv.at, Runs: rv.runs, P95MS: rv.p95MS, BudgetMS: rv.budgetMS, Reason: rv.reason})
					}
					continue
				}
			}
			from := now.Add(-rule.Window).UnixMilli()
			if !last.At.IsZero() {
				from = max(from, last.At.UnixMilli())
			}
			placement := string(gate.Fast)
			if isDemoted {
				placement = string(gate.Slow)
			}
			s, err := sample(ctx, tx, c.Control, placement, from)
			if err != nil {
				return fmt.Errorf("reading the runs of %s: %w", c.Control, err)
			}
			d := budgets.Review(rule, c.Budget, isDemoted, s)
			m := budgets.Move{Control: c.Control, Action: d.Action, By: "auto", At: now.UTC().Truncate(time.Millisecond), Placement: placement,
				Runs: s.Runs, P95MS: s.P95.Milliseconds(), BudgetMS: c.Budget.Time.Milliseconds(), Reason: d.Reason}
			if d.Action != "" {
				if err := insertMove(ctx, tx, m); err != nil {
					return err
				}
			}
			if err := saveReview(ctx, tx, m, d.Held); err != nil {
				return err
			}
			switch {
			case d.Action == "demote":
				out.Demoted = append(out.Demoted, demotion(m))
			case isDemoted && d.Action == "":
				out.Demoted = append(out.Demoted, demotion(last))
			case d.Held:
				out.Held = append(out.Held, demotion(m))
			}
		}
		return nil
	})
	if err != nil {
		return gate.Review{}, fmt.Errorf("reviewing demotions: %w", err)
	}
	return out, nil
}

// review is a control's last full review.
type review struct {
	at          time.Time
	budgetMS    int64
	held        bool
	runs, p95MS int64
	reason      string
}

func lastReview(ctx context.Context, tx txn, control string) (review, bool, error) {
	r, err := tx.query(ctx, `SELECT at_ms, budget_ms, held, runs, p95_ms, reason FROM sluice_review WHERE control = $1`, control)
	if err != nil {
		return review{}, false, err
	}
	defer r.Close()
	if !r.Next() {
		return review{}, false, r.Err()
	}
	var rv review
	var at int64
	if err := r.Scan(&at, &rv.budgetMS, &rv.held, &rv.runs, &rv.p95MS, &rv.reason); err != nil {
		return review{}, false, err
	}
	rv.at = time.UnixMilli(at).UTC()
	return rv, true, nil
}

// saveReview records a full review's figures and whether it held the
// control back (over budget but not demotable).
func saveReview(ctx context.Context, tx txn, m budgets.Move, held bool) error {
	_, err := tx.exec(ctx, `INSERT INTO sluice_review (control, at_ms, budget_ms, held, runs, p95_ms, reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (control) DO UPDATE SET at_ms = excluded.at_ms, budget_ms = excluded.budget_ms, held = excluded.held,
			runs = excluded.runs, p95_ms = excluded.p95_ms, reason = excluded.reason`,
		m.Control, m.At.UnixMilli(), m.BudgetMS, held, m.Runs, m.P95MS, m.Reason)
	if err != nil {
		return fmt.Errorf("recording the review of %s: %w", m.Control, err)
	}
	return nil
}

func demotion(m budgets.Move) gate.Demotion {
	return gate.Demotion{Control: m.Control, Since: m.At, Runs: m.Runs, P95MS: m.P95MS, BudgetMS: m.BudgetMS, Reason: m.Reason}
}

// Restore moves a demoted control back to the fast path by hand, recording
// the move with the control's slow-path figures since its demotion. A
// control that is not demoted is ErrNotDemoted.
func (q *Queue) Restore(ctx context.Context, control string, budget time.Duration, reason string) (budgets.Move, error) {
	var m budgets.Move
	now := q.opts.Now()
	err := q.inTx(ctx, func(tx txn) error {
		if err := q.lockDemotions(ctx, tx); err != nil {
			return err
		}
		last, err := lastMove(ctx, tx, control)
		if err != nil {
			return err
		}
		if last.Action != "demote" {
			return fmt.Errorf("%s is %w", control, ErrNotDemoted)
		}
		s, err := sample(ctx, tx, control, string(gate.Slow), last.At.UnixMilli())
		if err != nil {
			return err
		}
		if budget <= 0 {
			budget = time.Duration(last.BudgetMS) * time.Millisecond
		}
		m = budgets.Move{Control: control, Action: "restore", By: "manual", At: now.UTC().Truncate(time.Millisecond), Placement: string(gate.Slow),
			Runs: s.Runs, P95MS: s.P95.Milliseconds(), BudgetMS: budget.Milliseconds(),
			Reason: fmt.Sprintf("restored by hand (%s); p95 %v over %d slow runs since its demotion, budget %v", reason, s.P95, s.Runs, budget)}
		return insertMove(ctx, tx, m)
	})
	if err != nil {
		return budgets.Move{}, fmt.Errorf("restoring %s: %w", control, err)
	}
	return m, nil
}

package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/gate"
)

var _ gate.Results = (*Queue)(nil)

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Lookup implements gate.Results from the store. kind is a job kind or a
// control name (matched against sluice_job's kind and control), or
// gate.FastVerdict (the latest verdict recorded for subject). subject is
// the job's subject; an image reference by digest also matches any
// reference with that digest. The newest job wins: a stored result gives
// passed or failed ("errored" and "overran" give errored), a job still
// queued, running or retrying is pending, a job failed for good is
// errored, and no job at all is missing.
func (q *Queue) Lookup(ctx context.Context, kind, subject string) (gate.ResultStatus, error) {
	if kind == gate.FastVerdict {
		return q.lookupVerdict(ctx, subject)
	}
	where, args := "j.subject = $2", []any{kind, subject}
	if _, digest, ok := strings.Cut(subject, "@"); ok && digestRE.MatchString(digest) {
		where, args = "(j.subject = $2 OR j.subject LIKE $3)", append(args, "%@"+digest)
	}
	var (
		st       gate.ResultStatus
		found    bool
		state    string
		lastErr  string
		rStatus  sql.NullString
		findings sql.NullString
	)
	err := q.inTx(ctx, func(tx txn) error {
		r, err := tx.query(ctx, `SELECT j.state, j.last_error, r.status, r.findings
			FROM sluice_job j LEFT JOIN sluice_result r ON r.key = j.key
			WHERE (j.kind = $1 OR j.control = $1) AND `+where+`
			ORDER BY j.deferred_at_ms DESC, j.river_job_id DESC`, args...)
		if err != nil {
			return err
		}
		defer r.Close()
		if !r.Next() {
			return r.Err()
		}
		found = true
		return r.Scan(&state, &lastErr, &rStatus, &findings)
	})
	if err != nil {
		return st, fmt.Errorf("looking up %s of %s in the store: %w", kind, subject, err)
	}
	switch {
	case !found:
		st.State = gate.ResultMissing
	case rStatus.Valid:
		var fs []gate.Finding
		if err := json.Unmarshal([]byte(findings.String), &fs); err != nil {
			return st, fmt.Errorf("decoding findings of %s of %s: %w", kind, subject, err)
		}
		switch rStatus.String {
		case "passed":
			st.State = gate.ResultPassed
		case "failed":
			st.State, st.Summary = gate.ResultFailed, SeveritySummary(fs)
		default:
			st.State, st.Summary = gate.ResultErrored, rStatus.String
		}
	case state == StateFailed:
		st.State, st.Summary = gate.ResultErrored, firstLine(lastErr)
	default:
		st.State, st.Summary = gate.ResultPending, state
	}
	return st, nil
}

func (q *Queue) lookupVerdict(ctx context.Context, subject string) (gate.ResultStatus, error) {
	var verdict string
	found := false
	err := q.inTx(ctx, func(tx txn) error {
		r, err := tx.query(ctx, `SELECT verdict FROM sluice_verdict WHERE subject = $1 ORDER BY id DESC`, subject)
		if err != nil {
			return err
		}
		defer r.Close()
		if !r.Next() {
			return r.Err()
		}
		found = true
		return r.Scan(&verdict)
	})
	switch {
	case err != nil:
		return gate.ResultStatus{}, fmt.Errorf("looking up the fast verdict of %s in the store: %w", subject, err)
	case !found:
		return gate.ResultStatus{State: gate.ResultMissing}, nil
	case verdict == "pass":
		return gate.ResultStatus{State: gate.ResultPassed}, nil
	}
	return gate.ResultStatus{State: gate.ResultFailed, Summary: "fast verdict " + verdict}, nil
}

// SeveritySummary counts findings by severity, most severe first:
// "2 CRITICAL, 1 HIGH".
func SeveritySummary(fs []gate.Finding) string {
	n := map[string]int{}
	for _, f := range fs {
		n[cmpOr(strings.ToUpper(f.Severity), "UNKNOWN")]++
	}
	var out []string
	for _, s := range SeverityOrder(n) {
		out = append(out, fmt.Sprintf("%d %s", n[s], s))
	}
	return strings.Join(out, ", ")
}

// SeverityOrder sorts the severities of counts most severe first (CRITICAL,
// HIGH, MEDIUM, LOW, then others by name, UNKNOWN last).
func SeverityOrder(counts map[string]int) []string {
	rank := map[string]int{"CRITICAL": 0, "HIGH": 1, "MEDIUM": 2, "LOW": 3, "UNKNOWN": 5}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		ri, ok := rank[keys[i]]
		if !ok {
			ri = 4
		}
		rj, ok := rank[keys[j]]
		if !ok {
			rj = 4
		}
		if ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	return keys
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Released lists the image references scanned on the release lane (or by
// digest, any lane) whose work was deferred at or after since: the digests
// a nightly rescan looks at again. Sorted, each once.
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

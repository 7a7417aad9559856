package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/sluice-ci/sluice/gate"
)

var _ gate.Results = (*Queue)(nil)

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Lookup implements gate.Results from the store. kind is a job kind or a
// control name (matched against sluice_job's kind and control), or
// gate.FastVerdict (the latest verdict recorded for subject). subject is
// the job's subject; an image reference by digest also matches any
// reference with that digest. Of the subject's jobs (a release scan, later
// rescans with a newer DB), the newest stored result decides: passed, or
// failed ("errored" and "overran" results give errored). With no stored
// result, a job still queued, running or retrying makes it pending, else a
// job failed for good makes it errored; no job at all is missing.
func (q *Queue) Lookup(ctx context.Context, kind, subject string) (gate.ResultStatus, error) {
	if kind == gate.FastVerdict {
		return q.lookupVerdict(ctx, subject)
	}
	where, args := "j.subject = $2", []any{kind, subject}
	if _, digest, ok := strings.Cut(subject, "@"); ok && digestRE.MatchString(digest) {
		where, args = "(j.subject = $2 OR j.key IN (SELECT key FROM sluice_job_digest WHERE digest = $3))", append(args, digest)
	}
	type row struct {
		state, lastErr   string
		status, findings sql.NullString
	}
	var rows []row
	err := q.inTx(ctx, func(tx txn) error {
		r, err := tx.query(ctx, `SELECT j.state, j.last_error, r.status, r.findings
			FROM sluice_job j LEFT JOIN sluice_result r ON r.key = j.key
			WHERE (j.kind = $1 OR j.control = $1) AND `+where+`
			ORDER BY r.finished_at_ms DESC, j.deferred_at_ms DESC, j.river_job_id DESC`, args...)
		if err != nil {
			return err
		}
		defer r.Close()
		for r.Next() {
			var x row
			if err := r.Scan(&x.state, &x.lastErr, &x.status, &x.findings); err != nil {
				return err
			}
			rows = append(rows, x)
		}
		return r.Err()
	})
	if err != nil {
		return gate.ResultStatus{}, fmt.Errorf("looking up %s of %s in the store: %w", kind, subject, err)
	}
	var pending, failed *row
	for i := range rows {
		x := &rows[i]
		switch {
		case x.status.Valid:
			return resultStatus(x.status.String, x.findings.String)
		case x.state == StateFailed:
			if failed == nil {
				failed = x
			}
		case pending == nil:
			pending = x
		}
	}
	switch {
	case pending != nil:
		return gate.ResultStatus{State: gate.ResultPending, Summary: pending.state}, nil
	case failed != nil:
		return gate.ResultStatus{State: gate.ResultErrored, Summary: firstLine(failed.lastErr)}, nil
	}
	return gate.ResultStatus{State: gate.ResultMissing}, nil
}

func resultStatus(status, findings string) (gate.ResultStatus, error) {
	switch status {
	case "passed":
		return gate.ResultStatus{State: gate.ResultPassed}, nil
	case "failed":
		var fs []gate.Finding
		if err := json.Unmarshal([]byte(findings), &fs); err != nil {
			return gate.ResultStatus{}, fmt.Errorf("decoding stored findings: %w", err)
		}
		return gate.ResultStatus{State: gate.ResultFailed, Summary: SeveritySummary(fs)}, nil
	}
	return gate.ResultStatus{State: gate.ResultErrored, Summary: status}, nil
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

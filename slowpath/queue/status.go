package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/riverqueue/river/rivertype"
)

// Query selects what Status reports on. Exactly one field is set.
type Query struct {
	// Subject is a change subject ("commit:SHA", "paths:a,b") or an image
	// reference: its own jobs and the jobs its check deferred.
	Subject string
	// Digest ("sha256:...") matches every image reference with it.
	Digest string
}

// Report is the slow-path state of a subject.
type Report struct {
	Schema   string          `json:"schema"`
	Query    string          `json:"query"`
	Verdicts []VerdictRecord `json:"verdicts"`
	Jobs     []JobStatus     `json:"jobs"`
	// Exposure is the longest exposure window among the jobs: from the
	// fast verdict that deferred the work to its deep result, or to now
	// while it is still open.
	ExposureMS   int64 `json:"exposure_ms"`
	ExposureOpen bool  `json:"exposure_open"`
	// Pending counts jobs not finished; Failed those failed for good.
	Pending int `json:"pending"`
	Failed  int `json:"failed"`
}

// ReportSchema names the status document's version.
const ReportSchema = "sluice.status/v1"

// VerdictRecord is one recorded fast verdict.
type VerdictRecord struct {
	ID         int64  `json:"id"`
	Subject    string `json:"subject"`
	Verdict    string `json:"verdict"`
	RecordedMS int64  `json:"recorded_at_ms"`
	Policy     string `json:"policy_digest,omitempty"`
}

// JobStatus is one job with its River state and its result.
type JobStatus struct {
	Job        string   `json:"job"`
	Kind       string   `json:"kind"`
	Subject    string   `json:"subject"`
	Control    string   `json:"control"`
	Lane       string   `json:"lane"`
	State      string   `json:"state"`
	RiverState string   `json:"river_state,omitempty"`
	Attempts   int      `json:"attempts"`
	MaxAttempt int      `json:"max_attempts,omitempty"`
	Errors     []string `json:"errors,omitempty"`
	DBVersion  string   `json:"db_version,omitempty"`
	DeferredMS int64    `json:"deferred_at_ms"`
	FinishedMS int64    `json:"finished_at_ms,omitempty"`
	ExposureMS int64    `json:"exposure_ms"`
	Open       bool     `json:"exposure_open"`
	Result     *Stored  `json:"result,omitempty"`
	// CheckRun is the job's GitHub check run, when its check recorded a
	// repository.
	CheckRun *CheckRun `json:"check_run,omitempty"`
}

// Stored is a stored result.
type Stored struct {
	Status     string `json:"status"`
	Attempt    int    `json:"attempt"`
	DurationMS int64  `json:"duration_ms"`
	SBOMBytes  int    `json:"sbom_bytes"`
	Result
}

// Status reports the verdicts, jobs and results for a subject or digest,
// with River's view of each job (state, attempts, errors) where River
// still holds it.
func (q *Queue) Status(ctx context.Context, qu Query) (*Report, error) {
	var where, arg, label string
	switch {
	case qu.Subject != "":
		where, arg, label = "j.subject = $1 OR j.change_subject = $1", qu.Subject, qu.Subject
	case qu.Digest != "":
		where, arg, label = "j.key IN (SELECT key FROM sluice_job_digest WHERE digest = $1)", qu.Digest, qu.Digest
	default:
		return nil, errors.New("reading status: no subject or digest given")
	}
	rep := &Report{Schema: ReportSchema, Query: label, Verdicts: []VerdictRecord{}, Jobs: []JobStatus{}}
	now := q.opts.Now().UnixMilli()
	err := q.inTx(ctx, func(tx txn) error {
		r, err := tx.query(ctx, `SELECT j.key, j.river_job_id, j.kind, j.subject, j.control, j.lane, j.state, j.attempts, j.last_error,
				j.db_version, j.deferred_at_ms, j.finished_at_ms,
				r.status, r.attempt, r.findings, r.sbom, r.notes, r.db_version, r.duration_ms, r.finished_at_ms
			FROM sluice_job j LEFT JOIN sluice_result r ON r.key = j.key
			WHERE `+where+` ORDER BY j.river_job_id`, arg)
		if err != nil {
			return err
		}
		defer r.Close()
		for r.Next() {
			var (
				js                       JobStatus
				key, lastErr             string
				rid, attempts            int64
				finished                 sql.NullInt64
				rStatus, rF, rS, rN, rDB sql.NullString
				rAttempt, rDur, rFin     sql.NullInt64
			)
			if err := r.Scan(&key, &rid, &js.Kind, &js.Subject, &js.Control, &js.Lane, &js.State, &attempts, &lastErr,
				&js.DBVersion, &js.DeferredMS, &finished, &rStatus, &rAttempt, &rF, &rS, &rN, &rDB, &rDur, &rFin); err != nil {
				return err
			}
			js.Job, js.Attempts = strconv.FormatInt(rid, 10), int(attempts)
			if lastErr != "" {
				js.Errors = []string{lastErr}
			}
			js.FinishedMS = finished.Int64
			if rStatus.Valid {
				st := &Stored{Status: rStatus.String, Attempt: int(rAttempt.Int64), DurationMS: rDur.Int64, SBOMBytes: len(rS.String)}
				st.DBVersion = rDB.String
				if rS.String != "" {
					st.SBOM = []byte(rS.String)
				}
				if err := json.Unmarshal([]byte(rF.String), &st.Findings); err != nil {
					return fmt.Errorf("decoding findings of job %s: %w", js.Job, err)
				}
				if err := json.Unmarshal([]byte(rN.String), &st.Notes); err != nil {
					return fmt.Errorf("decoding notes of job %s: %w", js.Job, err)
				}
				js.Result = st
				js.FinishedMS = rFin.Int64
			}
			rep.Jobs = append(rep.Jobs, js)
		}
		if err := r.Err(); err != nil {
			return err
		}
		r.Close()
		vw, varg := "subject = $1", qu.Subject
		if qu.Digest != "" {
			vw, varg = "id IN (SELECT j.verdict_id FROM sluice_job j JOIN sluice_job_digest d ON d.key = j.key WHERE d.digest = $1)", qu.Digest
		}
		vr, err := tx.query(ctx, `SELECT id, subject, verdict, recorded_at_ms, policy_digest FROM sluice_verdict WHERE `+vw+` ORDER BY id`, varg)
		if err != nil {
			return err
		}
		defer vr.Close()
		for vr.Next() {
			var v VerdictRecord
			if err := vr.Scan(&v.ID, &v.Subject, &v.Verdict, &v.RecordedMS, &v.Policy); err != nil {
				return err
			}
			rep.Verdicts = append(rep.Verdicts, v)
		}
		return vr.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("reading status of %s: %w", label, err)
	}
	if err := q.checkRunsInto(ctx, rep); err != nil {
		return nil, fmt.Errorf("reading status of %s: %w", label, err)
	}
	for i := range rep.Jobs {
		js := &rep.Jobs[i]
		// River's row is the authority on state, attempts and errors while
		// it holds the job (completed and discarded rows are cleaned after
		// a retention period; sluice's own row stays).
		id, _ := strconv.ParseInt(js.Job, 10, 64)
		if row, err := q.be.client().JobGet(ctx, id); err == nil {
			js.RiverState, js.Attempts, js.MaxAttempt = string(row.State), row.Attempt, row.MaxAttempts
			if len(row.Errors) > 0 {
				js.Errors = js.Errors[:0]
				for _, e := range row.Errors {
					js.Errors = append(js.Errors, fmt.Sprintf("attempt %d: %s", e.Attempt, e.Error))
				}
			}
			if js.Result == nil {
				switch row.State {
				case rivertype.JobStateDiscarded, rivertype.JobStateCancelled:
					js.State = StateFailed
				case rivertype.JobStateRunning:
					js.State = StateRunning
				case rivertype.JobStateRetryable:
					js.State = StateRetrying
				case rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStatePending:
					js.State = StateQueued
				}
			}
		} else if !errors.Is(err, rivertype.ErrNotFound) {
			return nil, fmt.Errorf("reading job %s: %w", js.Job, err)
		}
		// The window closes with a deep result; a job that failed for good
		// leaves it open.
		if js.Result != nil {
			js.ExposureMS = js.FinishedMS - js.DeferredMS
		} else {
			js.ExposureMS, js.Open = now-js.DeferredMS, true
		}
		switch {
		case js.State == StateFailed:
			rep.Failed++
		case js.Result == nil:
			rep.Pending++
		}
		if js.ExposureMS > rep.ExposureMS {
			rep.ExposureMS = js.ExposureMS
		}
		rep.ExposureOpen = rep.ExposureOpen || js.Open
	}
	return rep, nil
}

// ShortSubject trims a long subject for text output.
func ShortSubject(s string) string {
	if i := strings.Index(s, "commit:"); i == 0 && len(s) > len("commit:")+12 {
		return s[:len("commit:")+12]
	}
	return s
}

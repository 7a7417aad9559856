package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluice-ci/sluice/gate"
)

// Check-run publication states, as sluice_checkrun records them.
const (
	// PublishAwaiting: the job has not concluded yet.
	PublishAwaiting = "awaiting"
	// PublishDone: the check run shows the job's conclusion.
	PublishDone = "published"
	// PublishRetrying: a publish failed; a later worker run tries again.
	PublishRetrying = "retrying"
	// PublishFailed: publishing failed MaxPublishAttempts times; given up.
	PublishFailed = "failed"
)

// MaxPublishAttempts bounds how often a job's check run is published
// before sluice gives up on it (the result stays stored either way).
const MaxPublishAttempts = 5

// checkRunSchema records, with each job a check deferred on a commit of a
// GitHub repository, where its check run goes and how publishing it went.
const checkRunSchema = `CREATE TABLE IF NOT EXISTS sluice_checkrun (
	key TEXT PRIMARY KEY REFERENCES sluice_job (key),
	verdict_id BIGINT,
	repo TEXT NOT NULL,
	head_sha TEXT NOT NULL,
	state TEXT NOT NULL,
	attempts BIGINT NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	check_run_id BIGINT NOT NULL DEFAULT 0,
	updated_at_ms BIGINT NOT NULL)`

var (
	repoRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)
	shaRE  = regexp.MustCompile(`^[0-9a-f]{40}$|^[0-9a-f]{64}$`)
)

// ValidRepository reports whether repo is a GitHub "owner/name".
func ValidRepository(repo string) bool { return repoRE.MatchString(repo) }

// commitOf returns the commit SHA of a "commit:SHA" subject.
func commitOf(subject string) (string, bool) {
	sha, ok := strings.CutPrefix(subject, "commit:")
	return sha, ok && shaRE.MatchString(sha)
}

// recordTargetTx notes, in the check's transaction, the repository and
// commit a job's check run goes to: the commit of the change the verdict
// was for (for an image scan, the commit whose verdict deferred it).
func (q *Queue) recordTargetTx(ctx context.Context, tx txn, key, changeSubject string, verdictID int64, now int64) error {
	sha, ok := commitOf(changeSubject)
	if q.opts.Repository == "" || !ok {
		return nil
	}
	_, err := tx.exec(ctx, `INSERT INTO sluice_checkrun (key, verdict_id, repo, head_sha, state, updated_at_ms)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING`, key, verdictID, q.opts.Repository, sha, PublishAwaiting, now)
	if err != nil {
		return fmt.Errorf("recording the check run target of job %s: %w", key, err)
	}
	return nil
}

// concludedTx marks a job's check run as awaiting publication when the job
// concludes anew: a job failed for good and then run again from River's UI
// publishes its new result over the old failure.
func (q *Queue) concludedTx(ctx context.Context, tx txn, key string, now int64) error {
	_, err := tx.exec(ctx, `UPDATE sluice_checkrun SET state = $1, attempts = 0, last_error = '', updated_at_ms = $2 WHERE key = $3`,
		PublishAwaiting, now, key)
	if err != nil {
		return fmt.Errorf("marking the check run of job %s to publish: %w", key, err)
	}
	return nil
}

// Conclusion is a concluded job as its check run shows it: read back from
// the store, so a check run only ever shows a stored result.
type Conclusion struct {
	Key, Kind, Subject, Control string
	RiverID                     int64
	// Repo ("owner/name") and HeadSHA are where the check run goes.
	Repo, HeadSHA string
	// State is StateCompleted or StateFailed.
	State string
	// Status is the stored result's status ("passed", "failed") or, for
	// a failed job, its last attempt's ("errored", "overran").
	Status   string
	Findings []gate.Finding
	Notes    []string
	// Error is a failed job's last error.
	Error    string
	Attempts int
	// Publish is the publication state; PublishAttempts how many
	// publishes were tried.
	Publish         string
	PublishAttempts int
	CheckRunID      int64
}

// Concluded returns the conclusion of job key and whether it has one to
// publish: false when the job has no check-run target (no repository was
// recorded at check time, or its change is not a commit) or has not
// concluded (queued, running, retrying).
func (q *Queue) Concluded(ctx context.Context, key string) (Conclusion, bool, error) {
	var (
		c                  Conclusion
		ok                 bool
		rStatus, rF, rN    sql.NullString
		attempts, pubTries int64
	)
	err := q.inTx(ctx, func(tx txn) error {
		r, err := tx.query(ctx, `SELECT j.key, j.kind, j.subject, j.control, j.river_job_id, j.state, j.attempts, j.last_error,
				c.repo, c.head_sha, c.state, c.attempts, c.check_run_id, r.status, r.findings, r.notes
			FROM sluice_checkrun c JOIN sluice_job j ON j.key = c.key LEFT JOIN sluice_result r ON r.key = c.key
			WHERE c.key = $1`, key)
		if err != nil {
			return err
		}
		defer r.Close()
		if !r.Next() {
			return r.Err()
		}
		if err := r.Scan(&c.Key, &c.Kind, &c.Subject, &c.Control, &c.RiverID, &c.State, &attempts, &c.Error,
			&c.Repo, &c.HeadSHA, &c.Publish, &pubTries, &c.CheckRunID, &rStatus, &rF, &rN); err != nil {
			return err
		}
		ok = true
		return nil
	})
	if err != nil {
		return c, false, fmt.Errorf("reading the conclusion of job %s: %w", key, err)
	}
	c.Attempts, c.PublishAttempts = int(attempts), int(pubTries)
	switch {
	case !ok:
		return c, false, nil
	case rStatus.Valid:
		// A stored result wins over any later failed run of the same job.
		c.State, c.Status = StateCompleted, rStatus.String
		if err := json.Unmarshal([]byte(rF.String), &c.Findings); err != nil {
			return c, false, fmt.Errorf("decoding findings of job %s: %w", key, err)
		}
		if err := json.Unmarshal([]byte(rN.String), &c.Notes); err != nil {
			return c, false, fmt.Errorf("decoding notes of job %s: %w", key, err)
		}
		return c, true, nil
	case c.State == StateFailed:
		c.Status = "errored"
		if strings.Contains(c.Error, "ran past its budget") {
			c.Status = "overran"
		}
		return c, true, nil
	}
	return c, false, nil
}

// Published records the outcome of publishing job key's check run: its id
// on success, or the error (retried by a later worker run until
// MaxPublishAttempts, then given up as PublishFailed).
func (q *Queue) Published(ctx context.Context, key string, checkRunID int64, cause error) error {
	return q.inTx(ctx, func(tx txn) error {
		now := q.opts.Now().UnixMilli()
		if cause == nil {
			_, err := tx.exec(ctx, `UPDATE sluice_checkrun SET state = $1, attempts = attempts + 1, last_error = '', check_run_id = $2, updated_at_ms = $3 WHERE key = $4`,
				PublishDone, checkRunID, now, key)
			return err
		}
		_, err := tx.exec(ctx, `UPDATE sluice_checkrun SET
				state = CASE WHEN attempts + 1 >= $1 THEN $2 ELSE $3 END,
				attempts = attempts + 1, last_error = $4, updated_at_ms = $5 WHERE key = $6`,
			MaxPublishAttempts, PublishFailed, PublishRetrying, cause.Error(), now, key)
		return err
	})
}

// Unpublished lists the keys of concluded jobs whose check run still has
// to be published (never tried, or failed fewer than MaxPublishAttempts
// times), oldest first.
func (q *Queue) Unpublished(ctx context.Context) ([]string, error) {
	var keys []string
	err := q.inTx(ctx, func(tx txn) error {
		r, err := tx.query(ctx, `SELECT c.key FROM sluice_checkrun c JOIN sluice_job j ON j.key = c.key
			WHERE c.state IN ($1, $2) AND j.state IN ($3, $4) ORDER BY j.river_job_id`,
			PublishAwaiting, PublishRetrying, StateCompleted, StateFailed)
		if err != nil {
			return err
		}
		defer r.Close()
		for r.Next() {
			var k string
			if err := r.Scan(&k); err != nil {
				return err
			}
			keys = append(keys, k)
		}
		return r.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing unpublished check runs: %w", err)
	}
	return keys, nil
}

// CheckRun is where a job's check run goes and how publishing it went,
// as sluice status shows it.
type CheckRun struct {
	Repo     string `json:"repo"`
	HeadSHA  string `json:"head_sha"`
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
	ID       int64  `json:"id,omitempty"`
}

// checkRunsInto fills the CheckRun of each job of rep.
func (q *Queue) checkRunsInto(ctx context.Context, rep *Report) error {
	if len(rep.Jobs) == 0 {
		return nil
	}
	byJob := map[string]*JobStatus{}
	for i := range rep.Jobs {
		byJob[rep.Jobs[i].Job] = &rep.Jobs[i]
	}
	return q.inTx(ctx, func(tx txn) error {
		for id, js := range byJob {
			rid, _ := strconv.ParseInt(id, 10, 64)
			r, err := tx.query(ctx, `SELECT c.repo, c.head_sha, c.state, c.attempts, c.last_error, c.check_run_id
				FROM sluice_checkrun c JOIN sluice_job j ON j.key = c.key WHERE j.river_job_id = $1`, rid)
			if err != nil {
				return fmt.Errorf("reading check run of job %s: %w", id, err)
			}
			if r.Next() {
				var cr CheckRun
				var n int64
				if err := r.Scan(&cr.Repo, &cr.HeadSHA, &cr.State, &n, &cr.Error, &cr.ID); err != nil {
					r.Close()
					return err
				}
				cr.Attempts = int(n)
				js.CheckRun = &cr
			}
			err = r.Err()
			r.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
}

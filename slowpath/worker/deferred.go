package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

// Deferred is the analyzer of "deferred" jobs: a fast control that overran
// its budget with on_overrun: defer, run again in full on the slow path. It
// re-derives the change from the job (the repository at base..head, or the
// paths under root), loads the policy the check used, and runs that one
// control under the job's budget. cat is every control the build knows
// (the CLI's catalog; slowpath does not import fastpath).
func Deferred(cat gate.Catalog, logger *slog.Logger) Analyzer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, job queue.Job) (Outcome, error) {
		var (
			ch  *gate.Change
			err error
		)
		switch gate.Mode(job.Mode) {
		case gate.RangeMode:
			ch, err = gate.ChangeFromRange(ctx, gate.RangeOptions{Dir: job.Root, Base: job.Base, Head: job.Head})
		case gate.PathsMode:
			ch, err = gate.ChangeFromPaths(job.Root, job.Paths)
		default:
			return Outcome{}, fmt.Errorf("re-deriving the change: unknown mode %q", job.Mode)
		}
		if err != nil {
			return Outcome{}, fmt.Errorf("re-deriving the change: %w", err)
		}
		pol, dir, notes, err := jobPolicy(job, cat)
		if err != nil {
			return Outcome{}, err
		}
		if dir == "" {
			dir = ch.Root
		}
		target := pol.Control(job.Control)
		if target == nil {
			return Outcome{}, fmt.Errorf("control %q is not in this build's catalog", job.Control)
		}
		budget := job.Budget()
		if dl, ok := ctx.Deadline(); ok {
			budget = time.Until(dl)
		}
		for _, c := range pol.Controls {
			c.Enabled = c == target
		}
		target.Placement = gate.Fast
		target.Budget = budgets.Budget{Time: budget, OnOverrun: budgets.FailClosed, OnError: budgets.FailClosed}
		g, err := gate.New(pol, gate.Env{Root: ch.Root, PolicyDir: dir}, logger)
		if err != nil {
			return Outcome{}, fmt.Errorf("building %s: %w", job.Control, err)
		}
		v := g.Check(ctx, ch)
		if len(v.Controls) != 1 {
			return Outcome{}, fmt.Errorf("running %s: the gate ran %d controls, want 1", job.Control, len(v.Controls))
		}
		run := v.Controls[0]
		switch run.Status {
		case budgets.Errored, budgets.Overran:
			err := errors.New(run.Reason)
			if ctx.Err() != nil {
				err = fmt.Errorf("%s: %w", run.Reason, ctx.Err())
			}
			return Outcome{}, fmt.Errorf("running %s: %w", job.Control, err)
		}
		return Outcome{Findings: run.Findings, Notes: append(notes, run.Notes...)}, nil
	}
}

// jobPolicy loads the policy a job was enqueued under, from the file the
// check read (or the built-in defaults). dir is the policy's folder, ""
// for the defaults. A policy edited since the check is used as it is now,
// and a note says so.
func jobPolicy(job queue.Job, cat gate.Catalog) (pol *gate.Policy, dir string, notes []string, err error) {
	if job.PolicySource == "" || job.PolicySource == "defaults" {
		pol = gate.DefaultPolicy(cat)
	} else {
		if pol, err = gate.LoadPolicy(job.PolicySource, cat); err != nil {
			return nil, "", nil, fmt.Errorf("loading policy: %w", err)
		}
		dir = filepath.Dir(job.PolicySource)
	}
	if pol.Digest != job.PolicyDigest {
		notes = append(notes, fmt.Sprintf("the policy changed since the check (%s, now %s); ran under the current one", job.PolicyDigest, pol.Digest))
	}
	return pol, dir, notes, nil
}

// Package gate owns the change model, the policy (loading and validation),
// running the fast path under budgets, and combining control outcomes into a
// verdict. It defines the interfaces the controls implement and knows no
// control itself: the CLI hands it a Catalog.
package gate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/sourcegraph/conc/pool"

	"github.com/sluice-ci/sluice/budgets"
)

// WhyDemoted is the Why of work deferred because its control is demoted.
const WhyDemoted = "demoted: p95 over budget"

// NotEnqueued is the reason given for deferred work when the gate has no
// slow-path queue to hand it to (none configured).
const NotEnqueued = "not enqueued: no slow-path queue is configured (--queue, SLUICE_QUEUE or the policy's queue.url); nothing will run this work"

// Gate runs a policy's fast controls over changes.
type Gate struct {
	policy   *Policy
	controls map[string]Control
	logger   *slog.Logger
	progress func(Event)
	queue    Queue
	// demotions, when set, moves over-budget fast controls to the slow
	// path (budgets.auto_demote).
	demotions Demotions
}

// New builds every enabled fast control of the policy. Errors in control
// options are *ConfigError naming the policy file, line and field.
func New(p *Policy, env Env, logger *slog.Logger) (*Gate, error) {
	controls, err := p.build(env)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Gate{policy: p, controls: controls, logger: logger}, nil
}

// Check runs the fast path over a change and returns the verdict. It never
// returns before every control has finished or been abandoned within its
// budget plus budgets.Grace. With a queue (WithQueue) it then records the
// verdict and enqueues what it defers, within the policy's queue.timeout.
func (g *Gate) Check(ctx context.Context, ch *Change) *Verdict {
	v := &Verdict{
		Schema:   Schema,
		Change:   changeInfo(ch),
		Policy:   policyInfo(g.policy),
		Controls: []ControlRun{},
		Deferred: []Deferred{},
		Warnings: []string{},
	}
	var fast []*ControlPolicy
	verified := false
	demoted := g.review(ctx, v)
	for _, c := range g.policy.Controls {
		verified = verified || c.Enabled && c.spec.VerifiesImages
		_, isDemoted := demoted[c.Name]
		switch {
		case !c.Enabled:
		case c.Placement == Slow:
			for _, subj := range subjects(c.spec, ch) {
				v.Deferred = append(v.Deferred, Deferred{Kind: c.spec.Kind, Subject: subj, Control: c.Name, Why: "slow placement"})
			}
		case isDemoted:
			v.Deferred = append(v.Deferred, Deferred{Kind: "deferred", Subject: ch.Subject(), Control: c.Name, Why: WhyDemoted})
		default:
			fast = append(fast, c)
		}
	}

	if len(ch.Images) > 0 && !verified {
		v.Warnings = append(v.Warnings, fmt.Sprintf("%d image(s) given, but no enabled control verifies images: enable the signatures control to check them", len(ch.Images)))
	}

	runs := make([]ControlRun, len(fast))
	p := pool.New().WithMaxGoroutines(max(1, len(fast)))
	for i, c := range fast {
		p.Go(func() { runs[i] = g.runOne(ctx, c, ch) })
	}
	p.Wait()

	v.Verdict = "pass"
	for i, r := range runs {
		c := fast[i]
		switch {
		case r.Status == budgets.Deferred:
			v.Deferred = append(v.Deferred, Deferred{Kind: "deferred", Subject: ch.Subject(), Control: c.Name, Why: "overran its budget"})
		case r.ModeApplied == budgets.FailOpen:
			v.Warnings = append(v.Warnings, fmt.Sprintf("%s %s: %s; the change was NOT fully checked by it", c.Name, r.Status, r.Reason))
		}
		if r.Blocks {
			v.Verdict = "fail"
		}
		v.Controls = append(v.Controls, r)
	}
	if g.queue != nil {
		g.enqueue(ctx, v, ch)
		return v
	}
	for i := range v.Deferred {
		d := &v.Deferred[i]
		d.Reason = NotEnqueued
		if d.Why == "overran its budget" {
			v.Warnings = append(v.Warnings, fmt.Sprintf("%s was deferred after overrunning its budget, but %s", d.Control, NotEnqueued))
		}
	}
	return v
}

func subjects(s Spec, ch *Change) []string {
	if s.Subjects != nil {
		return s.Subjects(ch)
	}
	return []string{ch.Subject()}
}

func (g *Gate) runOne(ctx context.Context, c *ControlPolicy, ch *Change) ControlRun {
	ctl := g.controls[c.Name]
	g.report(Event{Control: c.Name})
	box := new(Result)
	run := budgets.Enforce(ctx, c.Budget, func(ctx context.Context) error {
		r, err := ctl.Run(ctx, ch)
		*box = r
		return err
	})
	var res Result
	if !run.Abandoned {
		// Enforce saw the control return: box is written and final. An
		// abandoned control may still write it, so it is not read.
		res = *box
	}
	var pe *budgets.PanicError
	if errors.As(run.Err, &pe) {
		g.logger.Error("control panicked", "control", c.Name, "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
	}
	rs := budgets.Resolve(c.Budget, run, len(res.Findings) > 0)
	out := ControlRun{
		Name:        c.Name,
		Path:        Fast,
		Status:      rs.Status,
		DurationMS:  run.Duration.Milliseconds(),
		BudgetMS:    c.Budget.Time.Milliseconds(),
		OnOverrun:   c.Budget.OnOverrun,
		OnError:     c.Budget.OnError,
		ModeApplied: rs.Mode,
		Blocks:      rs.Blocks,
		Reason:      rs.Reason,
		Findings:    sortFindings(res.Findings),
		Suppressed:  res.Suppressed,
		Skipped:     res.Skipped,
		Notes:       res.Notes,
		Artifacts:   res.Artifacts,
	}
	if out.Findings == nil {
		out.Findings = []Finding{}
	}
	g.logger.Debug("control finished", "control", c.Name, "status", out.Status, "duration", run.Duration)
	g.report(Event{Control: c.Name, Done: true, Run: &out})
	return out
}

func sortFindings(fs []Finding) []Finding {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column), cmp.Compare(a.Rule, b.Rule))
	})
	return fs
}

func changeInfo(ch *Change) ChangeInfo {
	return ChangeInfo{
		Mode: ch.Mode, Root: ch.Root, Base: ch.Base, Head: ch.Head, BaseSource: ch.BaseSource,
		Paths: ch.Paths, Files: len(ch.Files), Images: ch.Images, Skipped: ch.Skipped,
	}
}

func policyInfo(p *Policy) PolicyInfo {
	src := p.Source
	if src == "" {
		src = "defaults"
	}
	return PolicyInfo{Source: src, Digest: p.Digest, Version: p.Version, Org: p.Org}
}

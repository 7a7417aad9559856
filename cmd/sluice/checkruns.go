package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/sluice-ci/sluice/actions/github"
	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

// checkRuns publishes concluded slow-path jobs as GitHub check runs, one
// per deep control ("sluice / image-scan") on the commit the check that
// deferred the job was for, in the repository recorded at check time. The
// result is stored before anything is published; a publish that fails is
// recorded and retried by the next sweep, at most queue.MaxPublishAttempts
// times.
type checkRuns struct {
	q      *queue.Queue
	client *github.Client
	pol    *gate.Policy
	logger *slog.Logger
}

// onConcluded is the worker's hook.
func (p *checkRuns) onConcluded(ctx context.Context, job queue.Job) { p.publish(ctx, job.Key) }

// sweep publishes what earlier runs concluded but did not publish (a
// worker killed after storing, a rate limit longer than sluice waits).
func (p *checkRuns) sweep(ctx context.Context) {
	keys, err := p.q.Unpublished(ctx)
	if err != nil {
		p.logger.Error("listing check runs to publish", "error", err)
		return
	}
	for _, k := range keys {
		p.publish(ctx, k)
	}
}

func (p *checkRuns) publish(ctx context.Context, key string) {
	c, ok, err := p.q.Concluded(ctx, key)
	if err != nil {
		p.logger.Error("reading a concluded job", "key", key, "error", err)
		return
	}
	if !ok || c.Publish == queue.PublishDone || c.Publish == queue.PublishFailed {
		return
	}
	report := checkReport(c, p.pol)
	id, perr := p.client.Publish(ctx, c.Repo, c.HeadSHA, report)
	if perr != nil {
		p.logger.Warn("publishing a check run failed; the result is stored and the publish is retried by the next worker run",
			"check", report.Name, "repo", c.Repo, "commit", c.HeadSHA, "attempt", c.PublishAttempts+1, "of", queue.MaxPublishAttempts, "error", perr)
	} else {
		p.logger.Info("published check run", "check", report.Name, "id", id, "repo", c.Repo, "commit", c.HeadSHA, "conclusion", report.Conclusion)
	}
	// Recorded even when ctx ran out during the publish.
	if err := p.q.Published(context.WithoutCancel(ctx), key, id, perr); err != nil {
		p.logger.Error("recording a check run's publication", "key", key, "error", err)
	}
}

// checkReport is the check run of one concluded job. Conclusion: success
// for a clean result, failure for findings, and for a job that failed for
// good, failure under on_error: fail-closed or neutral (with the reason)
// under fail-open.
func checkReport(c queue.Conclusion, pol *gate.Policy) github.CheckReport {
	control := cmpOr(c.Control, c.Kind)
	r := github.CheckReport{Name: "sluice / " + control, ExternalID: c.Key}
	var sum strings.Builder
	fmt.Fprintf(&sum, "Deep control **%s** on `%s` (job %d, %s).\n\n", control, c.Subject, c.RiverID, plural(c.Attempts, "attempt"))
	switch c.State {
	case queue.StateCompleted:
		if len(c.Findings) == 0 {
			r.Conclusion, r.Title = "success", control+": passed"
			sum.WriteString("No findings.\n")
		} else {
			r.Conclusion, r.Title = "failure", fmt.Sprintf("%s: %s", control, plural(len(c.Findings), "finding"))
			counts := map[string]int{}
			for _, f := range c.Findings {
				counts[cmpOr(strings.ToUpper(f.Severity), "UNKNOWN")]++
			}
			sum.WriteString("| Severity | Findings |\n|---|---:|\n")
			for _, s := range queue.SeverityOrder(counts) {
				fmt.Fprintf(&sum, "| %s | %d |\n", s, counts[s])
			}
		}
	default:
		mode := budgets.FailClosed
		if cp := pol.Control(control); cp != nil && cp.Budget.OnError != "" {
			mode = cp.Budget.OnError
		}
		what := "could not finish"
		if c.Status == "overran" {
			what = "ran past its budget"
		}
		if mode == budgets.FailOpen {
			r.Conclusion, r.Title = "neutral", fmt.Sprintf("%s: %s (fail-open)", control, what)
			fmt.Fprintf(&sum, "The control %s after %s and was not checked. The policy's `on_error: fail-open` lets the change through, so this check is neutral; the missing result is debt that a release batch must clear.\n", what, plural(c.Attempts, "attempt"))
		} else {
			r.Conclusion, r.Title = "failure", fmt.Sprintf("%s: %s (fail-closed)", control, what)
			fmt.Fprintf(&sum, "The control %s after %s and was not checked. The policy's `on_error: fail-closed` makes that a failure.\n", what, plural(c.Attempts, "attempt"))
		}
		fmt.Fprintf(&sum, "\nLast error:\n\n```\n%s\n```\n", strings.ReplaceAll(c.Error, "```", "'''"))
	}
	for _, n := range c.Notes {
		fmt.Fprintf(&sum, "\nNote: %s\n", n)
	}
	r.Summary = sum.String()

	var text strings.Builder
	for _, f := range c.Findings {
		loc := f.File
		if f.Line > 0 {
			loc = fmt.Sprintf("%s:%d", f.File, f.Line)
		}
		msg := f.Message
		if f.Redacted != "" {
			msg += " (" + f.Redacted + ")"
		}
		fmt.Fprintf(&text, "- **%s** %s %s %s\n", cmpOr(f.Severity, "UNKNOWN"), f.Rule, loc, msg)
		if f.File == "" {
			continue
		}
		line := max(f.Line, 1)
		r.Annotations = append(r.Annotations, github.CheckAnnotation{
			Path: f.File, StartLine: line, EndLine: line, Level: "failure", Message: msg,
			Title: fmt.Sprintf("%s: %s (%s)", control, f.Rule, cmpOr(f.Severity, "UNKNOWN")),
		})
	}
	r.Text = text.String()
	return r
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

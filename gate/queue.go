package gate

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-ci/sluice/budgets"
)

// Queue hands the work a verdict defers to the slow path. The slowpath
// packages implement it; the CLI passes one to the Gate with WithQueue.
type Queue interface {
	// Record stores the verdict (a ledger row for each of its fast
	// controls) and enqueues every item of v.Deferred in one transaction,
	// idempotently: the same kind, subject, control, policy digest and DB
	// version is queued once. It returns one Receipt per item of
	// v.Deferred, in order. An error means nothing was recorded or
	// enqueued (the queue could not be reached or the transaction failed).
	Record(ctx context.Context, v *Verdict, ch *Change) ([]Receipt, error)
}

// Receipt is the queue's answer for one deferred item.
type Receipt struct {
	// Job is the queue's job id.
	Job string
	// Duplicate is true when the same work was already queued (or done)
	// and this record joined it instead of queueing it again.
	Duplicate bool
	// PerCheck is true when the subject can hold something else next time
	// (an image by tag, files in a working tree): the work was queued for
	// this check alone, never shared with another.
	PerCheck bool
}

// UnreachableQueue is a Queue whose every Record fails with Err: the CLI
// uses it when the queue could not even be opened, so that the policy's
// queue.on_unreachable mode decides the verdict as for any other failure.
type UnreachableQueue struct{ Err error }

// Record returns q.Err.
func (q UnreachableQueue) Record(context.Context, *Verdict, *Change) ([]Receipt, error) {
	return nil, q.Err
}

// QueuePolicy is the policy's top-level `queue:` section.
type QueuePolicy struct {
	// URL is the queue: "postgres://..." or a SQLite file path
	// ("sqlite:PATH" or a plain path). Empty means none unless the CLI is
	// given one (--queue, SLUICE_QUEUE).
	URL string `yaml:"url"`
	// OnUnreachable decides the verdict when deferred work cannot be
	// enqueued: fail-closed (default) blocks the change, fail-open lets it
	// through with a warning.
	OnUnreachable budgets.Mode `yaml:"on_unreachable"`
	// Timeout bounds the whole record-and-enqueue step (default 5s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts is how many times a slow job runs before it is reported
	// failed (default 5).
	MaxAttempts int `yaml:"max_attempts"`
	// DeferredBudget is the slow-path budget of a fast control re-run in
	// full after it overran with on_overrun: defer (default 10m).
	DeferredBudget time.Duration `yaml:"deferred_budget"`
}

// DefaultQueuePolicy is the queue section when the policy is silent.
func DefaultQueuePolicy() QueuePolicy {
	return QueuePolicy{OnUnreachable: budgets.FailClosed, Timeout: 5 * time.Second, MaxAttempts: 5, DeferredBudget: 10 * time.Minute}
}

// WithQueue makes Check record its verdicts and enqueue their deferred
// work on q. Without a queue, deferred work is listed as NotEnqueued.
func (g *Gate) WithQueue(q Queue) *Gate {
	g.queue = q
	return g
}

// enqueue records v on the gate's queue and fills in the deferred items,
// resolving a failure by the policy's queue.on_unreachable mode.
func (g *Gate) enqueue(ctx context.Context, v *Verdict, ch *Change) {
	qp := g.policy.Queue
	ctx, cancel := context.WithTimeout(ctx, qp.Timeout)
	defer cancel()
	receipts, err := g.queue.Record(ctx, v, ch)
	if err == nil && len(receipts) != len(v.Deferred) {
		err = fmt.Errorf("queue returned %d receipts for %d deferred items", len(receipts), len(v.Deferred))
	}
	if err == nil {
		for i := range v.Deferred {
			v.Deferred[i].Job, v.Deferred[i].Enqueued = receipts[i].Job, true
			switch {
			case receipts[i].Duplicate:
				v.Deferred[i].Reason = "already queued by an earlier check; joined job " + receipts[i].Job
			case receipts[i].PerCheck && v.Deferred[i].Kind == "image-scan":
				v.Deferred[i].Reason = "given by tag: analysed again on every check; give the image by digest (REF@sha256:...) to analyse it once"
			}
		}
		return
	}
	g.logger.Error("queue unreachable", "error", err, "on_unreachable", qp.OnUnreachable)
	reason := fmt.Sprintf("not enqueued: queue unreachable (%v); on_unreachable: %s", err, qp.OnUnreachable)
	for i := range v.Deferred {
		v.Deferred[i].Reason = reason
	}
	if qp.OnUnreachable == budgets.FailOpen {
		if len(v.Deferred) > 0 {
			v.Warnings = append(v.Warnings, fmt.Sprintf("%d deferred item(s) were NOT enqueued: the queue is unreachable (%v) and queue.on_unreachable is fail-open; nothing will run this work", len(v.Deferred), err))
		} else {
			v.Warnings = append(v.Warnings, fmt.Sprintf("the verdict was not recorded: the queue is unreachable (%v); queue.on_unreachable is fail-open", err))
		}
		return
	}
	if len(v.Deferred) > 0 {
		v.Verdict = "fail"
		v.Warnings = append(v.Warnings, fmt.Sprintf("blocked: %d deferred item(s) could not be enqueued: the queue is unreachable (%v) and queue.on_unreachable is fail-closed", len(v.Deferred), err))
		return
	}
	v.Warnings = append(v.Warnings, fmt.Sprintf("the verdict was not recorded: the queue is unreachable (%v); nothing was deferred, so the verdict stands", err))
}

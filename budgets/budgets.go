// Package budgets owns budget declarations and their enforcement: how much wall
// time a control may spend on the release path, what happens when it overruns
// or errors, and how one enforced run resolves into a status. It also owns
// budgets as service levels: the figures of the SLO report (Report) and its
// text, JSON, Markdown and HTML forms, and the rule that demotes a fast
// control running over budget to the slow path and restores it (Review).
//
// It imports nothing of sluice's own; the gate and the controls import it.
package budgets

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// Mode says what a control's overrun or error turns into.
type Mode string

const (
	// FailClosed blocks the change.
	FailClosed Mode = "fail-closed"
	// FailOpen lets the change pass and says so loudly in the verdict.
	FailOpen Mode = "fail-open"
	// Defer lets the change pass now and re-runs the control in full on the
	// slow path. It applies to overruns only.
	Defer Mode = "defer"
)

// ParseMode parses a mode as written in a policy file.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case FailClosed, FailOpen, Defer:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want fail-closed, fail-open or defer)", s)
}

// Budget is what one control may spend on one run, and what its overrun or
// error resolves to. The zero value has no time limit and fails closed on
// both counts.
type Budget struct {
	Time      time.Duration
	OnOverrun Mode
	OnError   Mode
}

// Status is the outcome of one control run, as the verdict reports it.
type Status string

const (
	Passed   Status = "passed"
	Failed   Status = "failed"
	Overran  Status = "overran"
	Errored  Status = "errored"
	Deferred Status = "deferred"
)

// Grace is how long Enforce waits past the budget for a cancelled control to
// return before it abandons it.
const Grace = 100 * time.Millisecond

// ErrOverrun is the cause of the context a control runs under once its
// budget has run out.
var ErrOverrun = errors.New("budget exhausted")

// PanicError is a panic recovered from a control, with its stack.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Run is what Enforce observed of one control run.
type Run struct {
	Started  time.Time
	Duration time.Duration
	// Overran is true when the budget ran out before the control returned.
	Overran bool
	// Abandoned is true when the control ignored its cancelled context and
	// was left behind after Grace.
	Abandoned bool
	// Err is the control's error, a *PanicError, or nil.
	Err error
}

// Enforce runs fn under a context whose deadline is b.Time from now (no
// deadline when b.Time is zero) and returns when fn returns, or at most Grace
// after the deadline if fn ignores its context. A panic in fn is recovered
// into a *PanicError. A cancelled parent context is reported as an error, not
// an overrun.
//
// fn runs on a goroutine of its own so that a control that never returns
// cannot hang the gate: this is the one place in sluice where a goroutine may
// outlive its caller, and only when the control misbehaves.
func Enforce(ctx context.Context, b Budget, fn func(ctx context.Context) error) Run {
	start := time.Now()
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if b.Time > 0 {
		var stop context.CancelFunc
		runCtx, stop = context.WithDeadlineCause(runCtx, start.Add(b.Time), ErrOverrun)
		defer stop()
	}
	done := make(chan error, 1)
	go func() { done <- callRecover(runCtx, fn) }()

	var r Run
	select {
	case err := <-done:
		r.Err = err
	case <-runCtx.Done():
		select {
		case err := <-done:
			r.Err = err
		case <-time.After(Grace):
			r.Abandoned = true
			r.Err = fmt.Errorf("control ignored cancellation and was abandoned %v past its budget", Grace)
		}
	}
	r.Started = start
	r.Duration = time.Since(start)
	if b.Time > 0 && errors.Is(context.Cause(runCtx), ErrOverrun) && ctx.Err() == nil {
		r.Overran = true
	}
	if ctx.Err() != nil && r.Err == nil {
		r.Err = context.Cause(ctx)
	}
	return r
}

func callRecover(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn(ctx)
}

// Resolution is how one run counts in the verdict.
type Resolution struct {
	Status Status
	// Mode is the mode that was applied, empty when none was (passed, failed).
	Mode Mode
	// Blocks is true when this run blocks the change.
	Blocks bool
	// Reason explains an overrun, error or deferral in a sentence.
	Reason string
}

// Resolve turns a run and whether the control found anything that blocks
// into a Resolution, by the budget's declared modes. An overrun outranks an
// error (a control cancelled at its deadline usually errors too), and both
// outrank findings: a control that did not finish cannot be trusted to have
// found everything.
func Resolve(b Budget, r Run, blockingFindings bool) Resolution {
	switch {
	case r.Overran:
		reason := fmt.Sprintf("ran past its budget of %v", b.Time)
		if r.Abandoned {
			reason += " and ignored cancellation"
		}
		return byMode(b.OnOverrun, Overran, reason)
	case r.Err != nil:
		return byMode(b.OnError, Errored, r.Err.Error())
	case blockingFindings:
		return Resolution{Status: Failed, Blocks: true}
	default:
		return Resolution{Status: Passed}
	}
}

func byMode(m Mode, st Status, reason string) Resolution {
	switch m {
	case FailOpen:
		return Resolution{Status: st, Mode: FailOpen, Reason: reason + "; passed by fail-open"}
	case Defer:
		return Resolution{Status: Deferred, Mode: Defer, Reason: reason + "; deferred to the slow path"}
	default:
		return Resolution{Status: st, Mode: FailClosed, Blocks: true, Reason: reason + "; blocked by fail-closed"}
	}
}

package budgets

import (
	"context"
	"errors"
	"testing"
	"time"
)

// slack is what a loaded CI machine may add to a deadline's firing; the
// bounds below are behaviour (the gate is not hung), not speed.
const slack = 250 * time.Millisecond

func TestEnforce(t *testing.T) {
	budget := Budget{Time: 50 * time.Millisecond, OnOverrun: FailClosed, OnError: FailClosed}
	tests := []struct {
		name        string
		fn          func(ctx context.Context) error
		wantOverran bool
		wantAbandon bool
		wantErr     bool
		wantPanic   bool
		maxDuration time.Duration
	}{
		{
			name: "a control that returns in time is not an overrun",
			fn:   func(ctx context.Context) error { return nil },
		},
		{
			name: "a control that sleeps past its budget but honours cancellation overruns",
			fn: func(ctx context.Context) error {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(10 * time.Second):
					return nil
				}
			},
			wantOverran: true, wantErr: true, maxDuration: budget.Time + slack,
		},
		{
			name: "a control that ignores cancellation is abandoned after the grace period",
			fn: func(ctx context.Context) error {
				time.Sleep(3 * time.Second)
				return nil
			},
			wantOverran: true, wantAbandon: true, wantErr: true, maxDuration: budget.Time + Grace + slack,
		},
		{
			name:    "a control that errors reports the error",
			fn:      func(ctx context.Context) error { return errors.New("registry down") },
			wantErr: true,
		},
		{
			name:      "a control that panics is contained",
			fn:        func(ctx context.Context) error { panic("boom") },
			wantErr:   true,
			wantPanic: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := Enforce(context.Background(), budget, tt.fn)
			elapsed := time.Since(start)
			if r.Overran != tt.wantOverran {
				t.Errorf("Overran = %v, want %v", r.Overran, tt.wantOverran)
			}
			if r.Abandoned != tt.wantAbandon {
				t.Errorf("Abandoned = %v, want %v", r.Abandoned, tt.wantAbandon)
			}
			if (r.Err != nil) != tt.wantErr {
				t.Errorf("Err = %v, want error: %v", r.Err, tt.wantErr)
			}
			var pe *PanicError
			if errors.As(r.Err, &pe) != tt.wantPanic {
				t.Errorf("Err = %v, want a panic: %v", r.Err, tt.wantPanic)
			}
			if tt.wantPanic && (pe.Value != "boom" || len(pe.Stack) == 0) {
				t.Errorf("panic value %v with %d bytes of stack", pe.Value, len(pe.Stack))
			}
			if tt.maxDuration > 0 && elapsed > tt.maxDuration {
				t.Errorf("returned after %v, want within %v", elapsed, tt.maxDuration)
			}
		})
	}
}

func TestEnforceParentCancelledIsAnErrorNotAnOverrun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Enforce(ctx, Budget{Time: time.Second}, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if r.Overran || r.Err == nil {
		t.Fatalf("got Overran=%v Err=%v; want an error and no overrun", r.Overran, r.Err)
	}
}

func TestResolve(t *testing.T) {
	overrun := Run{Overran: true, Err: context.DeadlineExceeded}
	failure := Run{Err: errors.New("registry down")}
	tests := []struct {
		name       string
		budget     Budget
		run        Run
		findings   bool
		wantStatus Status
		wantMode   Mode
		wantBlocks bool
	}{
		{"a clean run passes", Budget{}, Run{}, false, Passed, "", false},
		{"a run with findings fails and blocks", Budget{}, Run{}, true, Failed, "", true},
		{"an overrun under fail-closed blocks", Budget{OnOverrun: FailClosed}, overrun, false, Overran, FailClosed, true},
		{"an overrun under fail-open passes loudly", Budget{OnOverrun: FailOpen}, overrun, false, Overran, FailOpen, false},
		{"an overrun under defer is deferred", Budget{OnOverrun: Defer}, overrun, false, Deferred, Defer, false},
		{"an overrun outranks the findings found before it", Budget{OnOverrun: FailOpen}, overrun, true, Overran, FailOpen, false},
		{"an error under fail-closed blocks", Budget{OnError: FailClosed}, failure, false, Errored, FailClosed, true},
		{"an error under fail-open passes loudly", Budget{OnError: FailOpen}, failure, false, Errored, FailOpen, false},
		{"an error with an empty mode fails closed", Budget{}, failure, false, Errored, FailClosed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Resolve(tt.budget, tt.run, tt.findings)
			if got.Status != tt.wantStatus || got.Mode != tt.wantMode || got.Blocks != tt.wantBlocks {
				t.Errorf("Resolve = %+v, want status %s mode %q blocks %v", got, tt.wantStatus, tt.wantMode, tt.wantBlocks)
			}
			if (tt.wantStatus == Passed || tt.wantStatus == Failed) != (got.Reason == "") {
				t.Errorf("reason %q for status %s", got.Reason, got.Status)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"fail-closed", "fail-open", "defer"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParseMode("fail-maybe"); err == nil {
		t.Error("ParseMode accepted fail-maybe")
	}
}

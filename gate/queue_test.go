package gate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/budgets"
)

// recordingQueue is a Queue that remembers what it was given: the gate's
// side of the contract is under test here; slowpath/worker tests the
// queue itself on SQLite and Postgres.
type recordingQueue struct {
	got       *Verdict
	receipts  []Receipt
	err       error
	deferred  int
	duplicate bool
}

func (q *recordingQueue) Record(_ context.Context, v *Verdict, _ *Change) ([]Receipt, error) {
	if q.err != nil {
		return nil, q.err
	}
	q.got, q.deferred = v, len(v.Deferred)
	out := make([]Receipt, len(v.Deferred))
	for i := range out {
		out[i] = Receipt{Job: string(rune('1' + i)), Duplicate: q.duplicate}
	}
	return out, nil
}

func TestCheckEnqueuesWhatItDefers(t *testing.T) {
	cat := behaving(budgets.Budget{Time: 20 * time.Millisecond, OnOverrun: budgets.Defer, OnError: budgets.FailClosed}, sleeper)
	ch := &Change{Mode: RangeMode, Head: "abc"}
	unreachable := errors.New("dial tcp 127.0.0.1:1: connection refused")
	tests := []struct {
		name         string
		queue        Queue
		mode         budgets.Mode
		wantPass     bool
		wantEnqueued bool
		wantReason   string
		wantWarning  string
	}{
		{"a reachable queue takes every deferred item", &recordingQueue{}, budgets.FailClosed, true, true, "", ""},
		{"a repeat joins the earlier job", &recordingQueue{duplicate: true}, budgets.FailClosed, true, true, "already queued by an earlier check; joined job ", ""},
		{"an unreachable queue blocks under fail-closed", &recordingQueue{err: unreachable}, budgets.FailClosed, false, false, "not enqueued: queue unreachable (dial tcp 127.0.0.1:1: connection refused); on_unreachable: fail-closed", "blocked: 2 deferred item(s) could not be enqueued"},
		{"an unreachable queue passes loudly under fail-open", &recordingQueue{err: unreachable}, budgets.FailOpen, true, false, "not enqueued: queue unreachable", "2 deferred item(s) were NOT enqueued"},
		{"a queue that could not be opened counts as unreachable", UnreachableQueue{Err: unreachable}, budgets.FailClosed, false, false, "not enqueued: queue unreachable", "blocked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy(cat)
			p.Queue.OnUnreachable = tt.mode
			g, err := New(p, Env{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			v := g.WithQueue(tt.queue).Check(context.Background(), ch)
			if v.Pass() != tt.wantPass {
				t.Errorf("pass = %v, want %v (warnings %q)", v.Pass(), tt.wantPass, v.Warnings)
			}
			if len(v.Deferred) != 2 {
				t.Fatalf("want the slow control and the overrun deferred, got %+v", v.Deferred)
			}
			for _, d := range v.Deferred {
				if d.Enqueued != tt.wantEnqueued || (d.Job != "") != tt.wantEnqueued || !strings.HasPrefix(d.Reason, tt.wantReason) {
					t.Errorf("deferred %s: enqueued %v job %q reason %q; want enqueued %v reason %q", d.Control, d.Enqueued, d.Job, d.Reason, tt.wantEnqueued, tt.wantReason)
				}
				if tt.wantReason == "" && d.Reason != "" {
					t.Errorf("deferred %s: unexpected reason %q", d.Control, d.Reason)
				}
			}
			warned := tt.wantWarning == ""
			for _, w := range v.Warnings {
				warned = warned || strings.Contains(w, tt.wantWarning)
				if tt.wantEnqueued && strings.Contains(w, "not enqueued") {
					t.Errorf("unexpected warning %q", w)
				}
			}
			if !warned {
				t.Errorf("warnings %q, want one containing %q", v.Warnings, tt.wantWarning)
			}
			if rq, ok := tt.queue.(*recordingQueue); ok && rq.err == nil && (rq.got != v || rq.deferred != 2) {
				t.Errorf("the queue was not given the verdict with both deferred items")
			}
		})
	}
}

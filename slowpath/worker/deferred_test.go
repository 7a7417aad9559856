package worker_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/internal/testrepo"
	"github.com/sluice-ci/sluice/slowpath/queue"
	"github.com/sluice-ci/sluice/slowpath/worker"
)

// slowTODO is a fast control that needs 300ms and finds TODO lines: under a
// 20ms budget with on_overrun: defer it is deferred, and only a full run
// finds anything.
func slowTODO() gate.Catalog {
	return gate.Catalog{{
		Name: "todo", Placement: gate.Fast, Enabled: true,
		Budget: budgets.Budget{Time: 20 * time.Millisecond, OnOverrun: budgets.Defer, OnError: budgets.FailClosed},
		Build: func(any, gate.Env) (gate.Control, error) {
			return gate.ControlFunc(func(ctx context.Context, ch *gate.Change) (gate.Result, error) {
				select {
				case <-ctx.Done():
					return gate.Result{}, ctx.Err()
				case <-time.After(300 * time.Millisecond):
				}
				var res gate.Result
				err := ch.ReadFiles(ctx, ch.Files, func(f *gate.File, content []byte) error {
					for i, line := range bytes.Split(content, []byte("\n")) {
						if bytes.Contains(line, []byte("TODO")) && f.IsAdded(i+1) {
							res.Findings = append(res.Findings, gate.Finding{Rule: "todo", Severity: "LOW", File: f.Path, Line: i + 1, Message: "a TODO", InChange: true})
						}
					}
					return nil
				})
				return res, err
			}), nil
		},
	}}
}

func TestDeferredControlRunsInFullOnTheSlowPath(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			repo := testrepo.New(t)
			repo.Write("a.txt", "hello\n")
			base := repo.Commit("first")
			repo.Write("a.txt", "hello\n// TODO: remove\n")
			repo.Write(".sluice.yaml", "version: 1\n")
			head := repo.Commit("second")

			cat := slowTODO()
			ch, err := gate.ChangeFromRange(ctx, gate.RangeOptions{Dir: repo.Dir, Base: base, Head: head})
			if err != nil {
				t.Fatal(err)
			}
			pol, err := gate.FindPolicy("", ch.Root, cat)
			if err != nil {
				t.Fatal(err)
			}
			q := open(t, driver, queue.Options{})
			g, err := gate.New(pol, gate.Env{Root: ch.Root, PolicyDir: ch.Root}, nil)
			if err != nil {
				t.Fatal(err)
			}
			v := g.WithQueue(q).Check(ctx, ch)
			if len(v.Deferred) != 1 || !v.Deferred[0].Enqueued || v.Deferred[0].Job == "" || v.Deferred[0].Kind != queue.KindDeferred {
				t.Fatalf("check: want the overrun control enqueued, got %+v (warnings %v)", v.Deferred, v.Warnings)
			}
			if len(v.Controls[0].Findings) != 0 {
				t.Fatalf("the fast run should have found nothing in 20ms")
			}

			w := newWorker(t, q, worker.Options{Analyzers: map[string]worker.Analyzer{queue.KindDeferred: worker.Deferred(cat, slog.New(slog.DiscardHandler))}})
			if failed := drain(t, w); failed != 0 {
				t.Fatalf("drain: %d failed", failed)
			}
			rep, err := q.Status(ctx, queue.Query{Subject: "commit:" + head})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Jobs) != 1 || rep.Jobs[0].Result == nil {
				t.Fatalf("want one job with a result, got %+v", rep.Jobs)
			}
			res := rep.Jobs[0].Result
			if len(res.Findings) != 1 || res.Findings[0].File != "a.txt" || res.Findings[0].Line != 2 || res.Status != "failed" {
				t.Errorf("full run: want the TODO at a.txt:2, got %+v", res)
			}
		})
	}
}

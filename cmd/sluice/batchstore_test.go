package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/internal/testrepo"
	"github.com/sluice-ci/sluice/slowpath/queue"
	"github.com/sluice-ci/sluice/slowpath/worker"
)

// TestBatchHoldsAHighImpactChangeUntilItsDeepResultIsStored: check --queue
// records the verdict and defers the image scan; sluice batch --queue holds
// the high-impact change back (and the earlier debt on the same image stays
// outstanding) until a worker stores the scan as passed; then the change is
// approved and the debt cleared. A results file cannot overrule the store.
func TestBatchHoldsAHighImpactChangeUntilItsDeepResultIsStored(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			url := testdb.For(t, driver)
			repo := testrepo.New(t)
			repo.Write(".sluice.yaml", cliBatchPolicy+"    - result: image-scan\n      impact: high\n")
			repo.Commit("policy")
			repo.Write("deploy/app.yaml", "image: "+digestRef+"\n")
			head := repo.Commit("deploy")
			if res := sluice(t, repo.Dir, "check", "--queue", url, "--base", "HEAD^", "--image", digestRef); res.code != exitPass {
				t.Fatalf("check: exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			dir := t.TempDir()
			changes := filepath.Join(dir, "changes.yaml")
			writeWireFile(t, changes, "changes:\n  - {id: deploy, commit: "+head+", paths: [deploy/app.yaml], images: ['"+digestRef+"']}\n")
			failed := filepath.Join(dir, "failed.json")
			writeWireFile(t, failed, `{"schema": "sluice.results/v1", "results": [{"kind": "image-scan", "subject": "`+digestRef+`", "status": "failed"}]}`)
			debt := filepath.Join(dir, "debt.json")
			writeWireFile(t, debt, `{"schema": "sluice.debt/v1", "debt": [{"change": "earlier", "control": "image-scan", "kind": "image-scan", "subject": "`+digestRef+`", "why": "deferred"}]}`)

			res := sluice(t, repo.Dir, "batch", "--changes", changes, "--queue", url, "--debt", debt, "--format", "json")
			plan := decodeWirePlan(t, res)
			if res.code != exitBlocked || len(plan.Held) != 1 || !strings.Contains(strings.Join(plan.Held[0].Reasons, "\n"), "image-scan of "+digestRef+" (required for high impact and above): not complete yet") ||
				len(plan.Debt.Outstanding) != 1 {
				t.Fatalf("before the scan: exit %d, want 1 with the change held back for its pending image scan\n%s%s", res.code, res.stdout, res.stderr)
			}

			// A worker stores the scan as passed.
			ctx := context.Background()
			q, err := queue.Open(ctx, url, queue.Options{})
			if err != nil {
				t.Fatal(err)
			}
			w, err := worker.New(q, worker.Options{PollInterval: 50 * time.Millisecond, Analyzers: map[string]worker.Analyzer{
				queue.KindImageScan: func(context.Context, queue.Job) (worker.Outcome, error) { return worker.Outcome{}, nil },
			}})
			if err != nil {
				t.Fatal(err)
			}
			if n, err := w.Drain(ctx); err != nil || n != 0 || w.Completed() != 1 {
				t.Fatalf("drain: %d failed, %d completed, %v", n, w.Completed(), err)
			}
			q.Close()

			res = sluiceEnv(t, repo.Dir, map[string]string{"SLUICE_QUEUE": url}, "batch", "--changes", changes, "--results", failed, "--debt", debt, "--format", "json")
			plan = decodeWirePlan(t, res)
			if res.code != exitPass || len(plan.Held) != 0 || len(plan.Debt.Cleared) != 1 || len(plan.Debt.Outstanding) != 0 {
				t.Fatalf("after the scan passed: exit %d, want 0 with the debt cleared\n%s%s", res.code, res.stdout, res.stderr)
			}
			data, err := os.ReadFile(debt)
			if err != nil {
				t.Fatal(err)
			}
			var ledger gate.DebtFile
			if err := json.Unmarshal(data, &ledger); err != nil || len(ledger.Debt) != 0 {
				t.Errorf("debt ledger after clearing: %s (%v)", data, err)
			}

			// Without the store, the file's failed result decides.
			if res := sluice(t, repo.Dir, "batch", "--changes", changes, "--results", failed); res.code != exitBlocked {
				t.Errorf("files only: exit %d, want 1\n%s", res.code, res.stdout)
			}
		})
	}
}

func writeWireFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func decodeWirePlan(t *testing.T, res result) gate.BatchPlan {
	t.Helper()
	var p gate.BatchPlan
	if err := json.Unmarshal([]byte(res.stdout), &p); err != nil {
		t.Fatalf("plan JSON: %v\n%s%s", err, res.stdout, res.stderr)
	}
	return p
}

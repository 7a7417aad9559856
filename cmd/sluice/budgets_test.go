package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/internal/testrepo"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

// slowRuns records n fast verdicts in which secrets took d ms against a
// one-second budget.
func slowRuns(t *testing.T, url string, n int, d int64) {
	t.Helper()
	q, err := queue.Open(context.Background(), url, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for i := range n {
		v := &gate.Verdict{Verdict: "pass", Deferred: []gate.Deferred{}, Controls: []gate.ControlRun{
			{Name: "secrets", Path: gate.Fast, Status: budgets.Passed, DurationMS: d, BudgetMS: 1000, OnOverrun: budgets.Defer},
		}}
		if _, err := q.Record(context.Background(), v, &gate.Change{Mode: gate.RangeMode, Head: fmt.Sprint("h", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

func decodeBudgets(t *testing.T, s string) budgets.Report {
	t.Helper()
	var r budgets.Report
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatalf("budgets report is not JSON: %v\n%s", err, s)
	}
	return r
}

// TestBudgetsDemotionThroughTheCLI: a control over budget is demoted by
// the next check, shown by sluice budgets, and restored by hand.
func TestBudgetsDemotionThroughTheCLI(t *testing.T) {
	repo := testrepo.New(t)
	repo.Write("a.txt", "hello\n")
	repo.Write(".sluice.yaml", "version: 1\nbudgets:\n  auto_demote: true\n  min_runs: 3\ncontrols:\n  secrets:\n    budget: 1s\n    on_overrun: defer\n")
	repo.Commit("one")
	url := filepath.Join(t.TempDir(), "queue.db")
	slowRuns(t, url, 3, 5000)

	v := decodeVerdict(t, sluice(t, repo.Dir, "check", "--queue", url, "--format", "json", "--paths", "a.txt").stdout)
	if len(v.Demoted) != 1 || v.Demoted[0].Control != "secrets" || v.Demoted[0].P95MS != 5000 {
		t.Fatalf("want secrets demoted with p95 5s, got %+v", v.Demoted)
	}
	if slices.ContainsFunc(v.Controls, func(c gate.ControlRun) bool { return c.Name == "secrets" }) {
		t.Error("the demoted control ran on the release path")
	}
	if !slices.ContainsFunc(v.Deferred, func(d gate.Deferred) bool { return d.Control == "secrets" && d.Why == gate.WhyDemoted && d.Enqueued }) {
		t.Errorf("want secrets deferred as demoted, got %+v", v.Deferred)
	}

	res := sluice(t, repo.Dir, "budgets", "--queue", url, "--format", "json")
	rep := decodeBudgets(t, res.stdout)
	if res.code != exitPass || rep.Schema != budgets.ReportSchema || len(rep.Demoted) != 1 || rep.Demoted[0].Control != "secrets" {
		t.Fatalf("exit %d, report %+v\n%s", res.code, rep, res.stderr)
	}
	if len(rep.OverBudget) != 1 || !strings.Contains(rep.OverBudget[0].Advice, "reprofile secrets") {
		t.Errorf("want secrets over budget with the advice to reprofile, got %+v", rep.OverBudget)
	}

	res = sluice(t, repo.Dir, "budgets", "restore", "secrets", "--queue", url, "--reason", "profiled")
	if res.code != exitPass || !strings.Contains(res.stdout, "secrets restored to the fast path") {
		t.Fatalf("restore: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = sluice(t, repo.Dir, "budgets", "restore", "secrets", "--queue", url)
	if res.code != exitUsage || !strings.Contains(res.stderr, "secrets is not demoted") {
		t.Errorf("restoring twice: exit %d, %s", res.code, res.stderr)
	}
	v = decodeVerdict(t, sluice(t, repo.Dir, "check", "--queue", url, "--format", "json", "--paths", "a.txt").stdout)
	if len(v.Demoted) != 0 || !slices.ContainsFunc(v.Controls, func(c gate.ControlRun) bool { return c.Name == "secrets" }) {
		t.Errorf("after restore: want secrets run fast, got demoted %+v", v.Demoted)
	}
	rep = decodeBudgets(t, sluice(t, repo.Dir, "budgets", "--queue", url, "--format", "json").stdout)
	if len(rep.Moves) != 2 || rep.Moves[0].Action != "demote" || rep.Moves[1].Action != "restore" || rep.Moves[1].By != "manual" {
		t.Errorf("want the demotion and the manual restore recorded, got %+v", rep.Moves)
	}
}

func TestBudgetsFormatsAndOutput(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			dir := testrepo.Tree(t, map[string]string{"a.txt": "a\n"})
			url := testdb.For(t, driver)
			slowRuns(t, url, 4, 2000)

			res := sluice(t, dir, "budgets", "--queue", url)
			if res.code != exitPass || !strings.Contains(res.stdout, "secrets  fast  4     2s   2s   2s   1s") || !strings.Contains(res.stdout, "over budget") {
				t.Errorf("text: exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			res = sluice(t, dir, "budgets", "--queue", url, "--format", "markdown")
			if !strings.Contains(res.stdout, "```mermaid\nxychart-beta") || !strings.Contains(res.stdout, `x-axis ["secrets"]`) || !strings.Contains(res.stdout, "bar [2000]") {
				t.Errorf("markdown:\n%s", res.stdout)
			}
			out := filepath.Join(dir, "budgets.html")
			res = sluice(t, dir, "budgets", "--queue", url, "--format", "html", "--output", out)
			page, err := os.ReadFile(out)
			if res.code != exitPass || err != nil || !strings.Contains(string(page), "<svg") || res.stdout != "" {
				t.Errorf("html: exit %d, err %v, stdout %q", res.code, err, res.stdout)
			}
			// A window that ends before every run: nothing in it.
			rep := decodeBudgets(t, sluice(t, dir, "budgets", "--queue", url, "--format", "json", "--since", "1ms").stdout)
			if len(rep.Controls) != 0 {
				t.Errorf("--since 1ms: want no runs, got %+v", rep.Controls)
			}
		})
	}
}

func TestBudgetsUsageErrorsExitTwo(t *testing.T) {
	dir := testrepo.Tree(t, map[string]string{"a.txt": "a\n"})
	url := filepath.Join(t.TempDir(), "queue.db")
	slowRuns(t, url, 1, 10)
	for _, tt := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"an unknown format", []string{"budgets", "--queue", url, "--format", "pdf"}, `--format "pdf"`},
		{"a bad window", []string{"budgets", "--queue", url, "--since", "a week"}, `bad window "a week"`},
		{"restore without a control", []string{"budgets", "restore", "--queue", url}, "name the control"},
		{"restore of an unknown control", []string{"budgets", "restore", "nope", "--queue", url}, `unknown control "nope"`},
		{"restore of a control not demoted", []string{"budgets", "restore", "secrets", "--queue", url}, "secrets is not demoted"},
		{"no queue at all", []string{"budgets"}, "no queue"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := sluice(t, dir, tt.args...)
			if res.code != exitUsage || !strings.Contains(res.stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", res.code, res.stderr, tt.stderr)
			}
		})
	}
	t.Run("a policy with a bad budgets section names file, line and field", func(t *testing.T) {
		pdir := testrepo.Tree(t, map[string]string{".sluice.yaml": "version: 1\nbudgets:\n  auto_demote: true\n  window: fortnight\n"})
		res := sluice(t, pdir, "budgets", "--queue", url)
		if res.code != exitUsage || !strings.Contains(res.stderr, ".sluice.yaml:4:11: budgets.window: bad window") {
			t.Errorf("exit %d, stderr %q", res.code, res.stderr)
		}
		pdir = testrepo.Tree(t, map[string]string{".sluice.yaml": "version: 1\nbudgets:\n  auto_demote: yes please\n"})
		res = sluice(t, pdir, "budgets", "--queue", url)
		if res.code != exitUsage || !strings.Contains(res.stderr, ".sluice.yaml:3:16: budgets.auto_demote") {
			t.Errorf("exit %d, stderr %q", res.code, res.stderr)
		}
		pdir = testrepo.Tree(t, map[string]string{".sluice.yaml": "version: 1\nbudgets:\n  auto_demote: true\n  minruns: 3\n"})
		res = sluice(t, pdir, "budgets", "--queue", url)
		if res.code != exitUsage || !strings.Contains(res.stderr, ".sluice.yaml:4:3: budgets.minruns: unknown key") {
			t.Errorf("exit %d, stderr %q", res.code, res.stderr)
		}
	})
}

// TestReadingCommandsRefuseAMissingQueueFile: status, budgets and batch
// only read the store; a mistyped SQLite path is an error, and no empty
// queue is left behind.
func TestReadingCommandsRefuseAMissingQueueFile(t *testing.T) {
	repo := testrepo.New(t)
	repo.Write("a.txt", "one\n")
	repo.Commit("one")
	repo.Write("a.txt", "two\n")
	repo.Commit("two")
	dir := repo.Dir
	missing := filepath.Join(t.TempDir(), "typo.db")
	for _, args := range [][]string{
		{"status", "--queue", missing, "--paths", "."},
		{"budgets", "--queue", "sqlite:" + missing},
		{"batch", "--queue", missing, "--base", "HEAD^", "--head", "HEAD"},
	} {
		res := sluice(t, dir, args...)
		if res.code != exitUsage || !strings.Contains(res.stderr, "no queue at") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and \"no queue at\"", args, res.code, res.stderr)
		}
		if _, err := os.Stat(missing); err == nil {
			t.Fatalf("%v made %s", args, missing)
		}
	}
}

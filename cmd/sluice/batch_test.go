package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testrepo"
)

// sluiceEnv runs the CLI in dir with the given environment.
func sluiceEnv(t *testing.T, dir string, environ map[string]string, args ...string) result {
	t.Helper()
	t.Chdir(dir)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, func(k string) string { return environ[k] })
	return result{code, stdout.String(), stderr.String()}
}

const cliBatchPolicy = `version: 1
categories:
  docs: {paths: ["docs/**"], impact: low}
  infra: {paths: ["deploy/**"], impact: high}
batch:
  max_changes: 5
  require:
    - result: fast-verdict
`

func TestBatchExitCodes(t *testing.T) {
	dir := testrepo.Tree(t, map[string]string{".sluice.yaml": cliBatchPolicy})
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	all := write("all.yaml", `changes:
  - {id: a, paths: [docs/a.md]}
  - {id: b, paths: [deploy/b.yaml]}
results:
  - {kind: fast-verdict, subject: "change:a", status: passed}
  - {kind: fast-verdict, subject: "change:b", status: passed}
`)
	some := write("some.yaml", `changes:
  - {id: a, paths: [docs/a.md]}
  - {id: b, paths: [deploy/b.yaml]}
results:
  - {kind: fast-verdict, subject: "change:a", status: passed}
`)
	asJSON := write("all.json", `{"schema": "sluice.changes/v1", "changes": [{"id": "a", "title": "docs", "paths": ["docs/a.md"]}],
  "results": [{"kind": "fast-verdict", "subject": "change:a", "status": "passed"}]}`)
	none := write("none.yaml", "changes:\n  - {id: a, paths: [docs/a.md]}\n")
	bad := write("bad.yaml", "changes:\n  - {id: a, path: [docs/a.md]}\n")

	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"every change approved exits 0", []string{"batch", "--changes", all}, 0, "sluice batch: APPROVED"},
		{"a JSON changes file is read too", []string{"batch", "--changes", asJSON}, 0, "sluice batch: APPROVED"},
		{"some changes held back exits 4", []string{"batch", "--changes", some}, 4, "held back (1)"},
		{"nothing approved exits 1", []string{"batch", "--changes", none}, 1, "sluice batch: REFUSED"},
		{"a bad changes file exits 2 naming file, line and field", []string{"batch", "--changes", bad}, 2, `bad.yaml:2:13: changes[0].path: unknown key "path"`},
		{"no input exits 2", []string{"batch"}, 2, "give exactly one of"},
		{"two inputs exit 2", []string{"batch", "--changes", all, "--base", "HEAD"}, 2, "give exactly one of"},
		{"an unknown format exits 2", []string{"batch", "--changes", all, "--format", "xml"}, 2, "--format"},
		{"a tag-only organisation policy exits 2", []string{"batch", "--changes", all, "--policy", "oci://127.0.0.1:1/org/policy:latest"}, 2, "pinned by digest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sluice(t, dir, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout+r.stderr, tc.out) {
				t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", tc.out, r.stdout, r.stderr)
			}
		})
	}
}

func TestBatchWritesThePlanAndKeepsTheDebtLedger(t *testing.T) {
	dir := testrepo.Tree(t, map[string]string{".sluice.yaml": cliBatchPolicy})
	verdict := `{"schema": "sluice.verdict/v1", "verdict": "pass", "change": {"mode": "paths", "root": ".", "files": 1},
  "policy": {"source": "defaults", "version": 1}, "controls": [],
  "deferred": [{"kind": "image-scan", "subject": "reg.test/app@sha256:` + strings.Repeat("a", 64) + `", "control": "image-scan", "why": "slow placement"}], "warnings": []}`
	testrepo.WriteFiles(t, dir, map[string]string{
		"v.json":       verdict,
		"changes.yaml": "changes:\n  - {id: a, paths: [docs/a.md], verdict: v.json}\n",
		"next.yaml":    "changes:\n  - {id: b, paths: [docs/b.md]}\nresults:\n  - {kind: fast-verdict, subject: 'change:b', status: passed}\n",
		"scanned.json": `{"schema": "sluice.results/v1", "results": [{"kind": "image-scan", "subject": "reg.test/app@sha256:` + strings.Repeat("a", 64) + `", "status": "passed"}]}`,
	})
	debt := filepath.Join(dir, "debt.json")
	plan := filepath.Join(dir, "plan.json")

	r := sluice(t, dir, "batch", "--changes", "changes.yaml", "--debt", debt, "--batch-id", "rel-1", "--output", plan, "--format", "markdown")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "## sluice batch: approved") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var p gate.BatchPlan
	data, err := os.ReadFile(plan)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &p); err != nil || p.Schema != gate.BatchSchema || len(p.Debt.Recorded) != 1 {
		t.Fatalf("plan: %v %+v", err, p)
	}
	ledger, err := gate.LoadDebt(debt)
	if err != nil || len(ledger) != 1 || ledger[0].Batch != "rel-1" || ledger[0].Why != "deferred" {
		t.Fatalf("ledger = %+v, %v", ledger, err)
	}

	// The next batch is refused while the deferred scan is not done...
	r = sluice(t, dir, "batch", "--changes", "next.yaml", "--debt", debt)
	if r.code != 1 || !strings.Contains(r.stdout, "outstanding debt from earlier batches") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// ...and approved once its result is in, which clears the debt.
	r = sluice(t, dir, "batch", "--changes", "next.yaml", "--debt", debt, "--results", "scanned.json")
	if r.code != 0 || !strings.Contains(r.stdout, "debt cleared (1)") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if ledger, _ := gate.LoadDebt(debt); len(ledger) != 0 {
		t.Errorf("ledger after clearing = %+v, want empty", ledger)
	}
}

func TestBatchOverAGitRangeAndAMergeGroup(t *testing.T) {
	r := testrepo.New(t)
	r.Write(".sluice.yaml", cliBatchPolicy+"    - result: image-scan\n      impact: high\n")
	base := r.Commit("policy")
	r.Write("docs/a.md", "a\n")
	a := r.Commit("docs")
	r.Write("deploy/x.yaml", "x: 1\n")
	b := r.Commit("deploy")
	results := filepath.Join(t.TempDir(), "results.json")
	if err := os.WriteFile(results, []byte(`{"schema": "sluice.results/v1", "results": [
  {"kind": "fast-verdict", "subject": "commit:`+a+`", "status": "passed"},
  {"kind": "fast-verdict", "subject": "commit:`+b+`", "status": "passed"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}

	res := sluice(t, r.Dir, "batch", "--base", base, "--results", results, "--format", "json")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	var p gate.BatchPlan
	if err := json.Unmarshal([]byte(res.stdout), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Batches) != 1 || len(p.Batches[0].Changes) != 2 || p.Batches[0].Changes[1].Impact != gate.High {
		t.Errorf("plan = %+v", p)
	}

	ev := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(ev, []byte(`{"merge_group": {"base_sha": "`+base+`", "head_sha": "`+a+`"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	res = sluiceEnv(t, r.Dir, map[string]string{"GITHUB_EVENT_PATH": ev}, "batch", "--merge-group")
	if res.code != 1 || !strings.Contains(res.stdout, "merge_group "+base[:12]+".."+a[:12]) {
		t.Fatalf("exit %d, want 1 (no fast verdict given)\n%s%s", res.code, res.stdout, res.stderr)
	}
}

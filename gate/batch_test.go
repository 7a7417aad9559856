package gate

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/budgets"
)

// batchCatalog knows a slow image scan whose subjects are the change's
// images, as slowpath's does.
func batchCatalog() Catalog {
	slow := budgets.Budget{Time: time.Minute, OnOverrun: budgets.FailClosed, OnError: budgets.FailClosed}
	return Catalog{
		{Name: "image-scan", Kind: "image-scan", Placement: Slow, SlowOnly: true, Enabled: true, Budget: slow,
			Subjects: func(ch *Change) []string { return slices.Clone(ch.Images) }},
		{Name: "dependency-scan", Kind: "dependency-scan", Placement: Slow, SlowOnly: true, Enabled: true, Budget: slow},
	}
}

const batchPolicy = `version: 1
categories:
  docs:
    paths: ["docs/**", "**/*.md"]
    impact: low
  api:
    paths: ["api/**"]
    impact: medium
  database:
    paths: ["db/**"]
    impact: high
  infra:
    paths: ["deploy/**"]
    impact: high
  secrets-config:
    paths: ["config/secrets/**"]
    impact: medium
    safe_to_batch: false
batch:
  max_changes: 2
  max_high_impact: 1
  ship_alone: [database]
  min_deployability: 40
  require:
    - result: fast-verdict
    - result: image-scan
      impact: high
`

func mustPolicy(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := ParsePolicy("policy.yaml", []byte(src), batchCatalog())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	imgA = "ghcr.io/acme/api@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	imgB = "ghcr.io/acme/web@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// ch makes a change whose fast verdict passed.
func ch(id string, paths ...string) *BatchChange {
	return &BatchChange{ID: id, Paths: paths}
}

func passedVerdicts(cs []*BatchChange) []ResultRecord {
	var out []ResultRecord
	for _, c := range cs {
		out = append(out, ResultRecord{Kind: FastVerdict, Subject: c.Subject(), Status: ResultPassed})
	}
	return out
}

type batchCase struct {
	name    string
	policy  string
	ordered bool
	changes []*BatchChange
	// extra results besides a passed fast verdict for every change
	// (replaced when noVerdicts).
	results    []ResultRecord
	noVerdicts bool
	debt       []Debt
	// want: each batch as its change ids; held ids.
	batches [][]string
	held    []string
	outcome string
	// heldReason must appear in the first held change's reasons.
	heldReason string
}

func runCase(t *testing.T, tc batchCase) *BatchPlan {
	t.Helper()
	src := tc.policy
	if src == "" {
		src = batchPolicy
	}
	p := mustPolicy(t, src)
	recs := tc.results
	if !tc.noVerdicts {
		recs = append(passedVerdicts(tc.changes), recs...)
	}
	plan, err := p.PlanBatches(context.Background(), &ChangeSet{Source: "test", Ordered: tc.ordered, Changes: tc.changes},
		PlanOptions{Results: NewFileResults(recs...), Debt: tc.debt, Catalog: batchCatalog(), BatchID: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func ids(pcs []PlannedChange) []string {
	out := []string{}
	for _, p := range pcs {
		out = append(out, p.ID)
	}
	return out
}

func TestBatchRules(t *testing.T) {
	high := func(id string, imgs ...string) *BatchChange {
		return &BatchChange{ID: id, Paths: []string{"deploy/" + id + ".yaml"}, Images: imgs, Rollback: imgs}
	}
	tests := []batchCase{
		{name: "changes up to max_changes share one batch",
			changes: []*BatchChange{ch("a", "docs/a.md"), ch("b", "api/b.go")},
			batches: [][]string{{"a", "b"}}, held: []string{}, outcome: Approved},
		{name: "a change past max_changes opens the next batch",
			changes: []*BatchChange{ch("a", "docs/a.md"), ch("b", "api/b.go"), ch("c", "api/c.go")},
			batches: [][]string{{"a", "b"}, {"c"}}, held: []string{}, outcome: Approved},
		{name: "one high-impact change joins low-impact ones",
			changes: []*BatchChange{ch("a", "docs/a.md"), ch("i", "deploy/i.yaml")},
			batches: [][]string{{"a", "i"}}, held: []string{}, outcome: Approved},
		{name: "a second high-impact change goes to a batch of its own past max_high_impact",
			policy:  strings.Replace(batchPolicy, "max_changes: 2", "max_changes: 5", 1),
			changes: []*BatchChange{ch("i", "deploy/i.yaml"), ch("j", "deploy/j.yaml"), ch("a", "docs/a.md")},
			batches: [][]string{{"i"}, {"j", "a"}}, held: []string{}, outcome: Approved},
		{name: "max_high_impact 0 holds high-impact changes back",
			policy:  strings.Replace(batchPolicy, "max_high_impact: 1", "max_high_impact: 0", 1),
			changes: []*BatchChange{ch("a", "docs/a.md"), ch("i", "deploy/i.yaml")},
			batches: [][]string{{"a"}}, held: []string{"i"}, outcome: PartlyApproved, heldReason: "max_high_impact is 0"},
		{name: "a ship_alone category ships alone",
			changes: []*BatchChange{ch("a", "docs/a.md"), ch("m", "db/migrations/1.up.sql", "db/migrations/1.down.sql"), ch("b", "docs/b.md")},
			batches: [][]string{{"a"}, {"m"}, {"b"}}, held: []string{}, outcome: Approved},
		{name: "a category not safe to batch ships alone",
			changes: []*BatchChange{ch("a", "docs/a.md"), ch("s", "config/secrets/x.yaml")},
			batches: [][]string{{"a"}, {"s"}}, held: []string{}, outcome: Approved},
		{name: "a change touching any category not safe to batch ships alone, whatever its highest",
			changes: []*BatchChange{ch("a", "docs/a.md"), ch("s", "config/secrets/x.yaml", "deploy/x.yaml")},
			batches: [][]string{{"a"}, {"s"}}, held: []string{}, outcome: Approved},
		{name: "a change takes its highest category",
			changes: []*BatchChange{ch("a", "docs/a.md"), ch("x", "docs/x.md", "db/migrations/2.down.sql", "db/migrations/2.sql")},
			batches: [][]string{{"a"}, {"x"}}, held: []string{}, outcome: Approved},
		{name: "a change whose fast verdict passed ships",
			noVerdicts: true, results: []ResultRecord{{Kind: FastVerdict, Subject: "change:a", Status: ResultPassed}},
			changes: []*BatchChange{ch("a", "api/a.go")},
			batches: [][]string{{"a"}}, held: []string{}, outcome: Approved},
		{name: "a change with no fast verdict is held back",
			noVerdicts: true,
			changes:    []*BatchChange{ch("a", "api/a.go")},
			batches:    [][]string{}, held: []string{"a"}, outcome: Refused, heldReason: "fast verdict: no result"},
		{name: "a change whose fast verdict failed is held back",
			noVerdicts: true, results: []ResultRecord{{Kind: FastVerdict, Subject: "change:a", Status: ResultFailed, Summary: "secrets failed"}},
			changes: []*BatchChange{ch("a", "api/a.go")},
			batches: [][]string{}, held: []string{"a"}, outcome: Refused, heldReason: "fast verdict: failed (secrets failed)"},
		{name: "a high-impact change ships once the deep scan of its image passed",
			results: []ResultRecord{{Kind: "image-scan", Subject: imgA, Status: ResultPassed}},
			changes: []*BatchChange{high("i", imgA)},
			batches: [][]string{{"i"}}, held: []string{}, outcome: Approved},
		{name: "a high-impact change is held back while the deep scan of one of its images is pending",
			results: []ResultRecord{{Kind: "image-scan", Subject: imgA, Status: ResultPassed}, {Kind: "image-scan", Subject: imgB, Status: ResultPending}},
			changes: []*BatchChange{high("i", imgA, imgB)},
			batches: [][]string{}, held: []string{"i"}, outcome: Refused, heldReason: "image-scan of " + imgB + " (required for high impact and above): not complete yet"},
		{name: "a low-impact change does not wait for the deep scan of its image",
			changes: []*BatchChange{{ID: "a", Paths: []string{"docs/a.md"}, Images: []string{imgA}, Rollback: []string{imgB}}},
			batches: [][]string{{"a"}}, held: []string{}, outcome: Approved},
		{name: "a change scoring at min_deployability ships",
			changes: []*BatchChange{{ID: "a", Paths: []string{"api/a.go"}, Images: []string{imgA}, NewDependencies: []string{"x"}}},
			batches: [][]string{{"a"}}, held: []string{}, outcome: Approved},
		{name: "a change scoring under min_deployability is held back",
			changes: []*BatchChange{{ID: "m", Paths: []string{"api/migrations/3.sql"}, Images: []string{imgA}, NewDependencies: []string{"x"}}},
			batches: [][]string{}, held: []string{"m"}, outcome: Refused, heldReason: "deployability 15 is below the policy's min_deployability 40"},
		{name: "in an ordered set a held change holds back every later one",
			ordered: true, noVerdicts: true,
			results: []ResultRecord{{Kind: FastVerdict, Subject: "change:a", Status: ResultPassed}, {Kind: FastVerdict, Subject: "change:c", Status: ResultPassed}},
			changes: []*BatchChange{ch("a", "docs/a.md"), ch("b", "docs/b.md"), ch("c", "docs/c.md")},
			batches: [][]string{{"a"}}, held: []string{"b", "c"}, outcome: PartlyApproved},
		{name: "in an unordered set a held change holds back nothing else",
			noVerdicts: true,
			results:    []ResultRecord{{Kind: FastVerdict, Subject: "change:a", Status: ResultPassed}, {Kind: FastVerdict, Subject: "change:c", Status: ResultPassed}},
			changes:    []*BatchChange{ch("a", "docs/a.md"), ch("b", "docs/b.md"), ch("c", "docs/c.md")},
			batches:    [][]string{{"a", "c"}}, held: []string{"b"}, outcome: PartlyApproved},
		{name: "cleared debt lets the next batch through",
			debt:    []Debt{{Change: "old", Kind: "image-scan", Subject: imgA, Why: "deferred"}},
			results: []ResultRecord{{Kind: "image-scan", Subject: imgA, Status: ResultPassed}},
			changes: []*BatchChange{ch("a", "docs/a.md")},
			batches: [][]string{{"a"}}, held: []string{}, outcome: Approved},
		{name: "outstanding debt refuses the next batch",
			debt:    []Debt{{Change: "old", Kind: "image-scan", Subject: imgA, Why: "deferred"}},
			results: []ResultRecord{{Kind: "image-scan", Subject: imgA, Status: ResultPending}},
			changes: []*BatchChange{ch("a", "docs/a.md")},
			batches: [][]string{}, held: []string{"a"}, outcome: Refused, heldReason: "outstanding debt from earlier batches must be cleared first"},
		{name: "outstanding debt does not block when the policy does not ask to clear it",
			policy:  batchPolicy + "  clear_debt: false\n",
			debt:    []Debt{{Change: "old", Kind: "image-scan", Subject: imgA, Why: "deferred"}},
			changes: []*BatchChange{ch("a", "docs/a.md")},
			batches: [][]string{{"a"}}, held: []string{}, outcome: Approved},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := runCase(t, tc)
			var got [][]string
			for _, b := range plan.Batches {
				got = append(got, ids(b.Changes))
			}
			if got == nil {
				got = [][]string{}
			}
			if !slices.EqualFunc(got, tc.batches, slices.Equal) {
				t.Errorf("batches = %v, want %v", got, tc.batches)
			}
			if h := ids(plan.Held); !slices.Equal(h, tc.held) {
				t.Errorf("held = %v, want %v (reasons: %v)", h, tc.held, plan.Held)
			}
			if plan.Outcome != tc.outcome {
				t.Errorf("outcome = %s, want %s", plan.Outcome, tc.outcome)
			}
			if tc.heldReason != "" && (len(plan.Held) == 0 || !slices.ContainsFunc(plan.Held[0].Reasons, func(r string) bool { return strings.Contains(r, tc.heldReason) })) {
				t.Errorf("no held reason containing %q in %v", tc.heldReason, plan.Held)
			}
			for _, c := range append(slices.Concat(batchesOf(plan)...), plan.Held...) {
				if len(c.Reasons) == 0 {
					t.Errorf("change %s has no reason for its place", c.ID)
				}
			}
		})
	}
}

func batchesOf(p *BatchPlan) [][]PlannedChange {
	var out [][]PlannedChange
	for _, b := range p.Batches {
		out = append(out, b.Changes)
	}
	return out
}

func TestBatchRecordsFailOpenAndDeferredResultsAsDebt(t *testing.T) {
	v := &Verdict{Schema: Schema, Verdict: "pass",
		Controls: []ControlRun{
			{Name: "secrets", Status: budgets.Passed},
			{Name: "lint", Status: budgets.Errored, ModeApplied: budgets.FailOpen},
		},
		Deferred: []Deferred{
			{Kind: "image-scan", Subject: imgA, Control: "image-scan", Why: "slow placement"},
			{Kind: "image-scan", Subject: imgB, Control: "image-scan", Why: "slow placement"},
			{Kind: "deferred", Subject: "commit:c0ffee", Control: "secrets", Why: "overran its budget"},
		}}
	c := &BatchChange{ID: "a", Commit: "c0ffee", Paths: []string{"docs/a.md"}, Images: []string{imgA, imgB}, Rollback: []string{imgA}, Verdict: v}
	plan := runCase(t, batchCase{changes: []*BatchChange{c}, noVerdicts: true,
		results: []ResultRecord{{Kind: "image-scan", Subject: imgB, Status: ResultPassed}}})
	if plan.Outcome != Approved {
		t.Fatalf("outcome %s, held %v", plan.Outcome, plan.Held)
	}
	want := []Debt{
		{Change: "a", Control: "lint", Kind: "lint", Subject: "commit:c0ffee", Why: "fail-open", Batch: "b1"},
		{Change: "a", Control: "image-scan", Kind: "image-scan", Subject: imgA, Why: "deferred", Batch: "b1"},
		{Change: "a", Control: "secrets", Kind: "secrets", Subject: "commit:c0ffee", Why: "deferred", Batch: "b1"},
	}
	if !slices.Equal(plan.Debt.Recorded, want) {
		t.Errorf("recorded debt:\n got %v\nwant %v", plan.Debt.Recorded, want)
	}

	// The next run with that debt is refused until it is cleared.
	next := runCase(t, batchCase{changes: []*BatchChange{ch("b", "docs/b.md")}, debt: plan.Debt.Ledger(),
		results: []ResultRecord{{Kind: "image-scan", Subject: imgA, Status: ResultPassed}, {Kind: "lint", Subject: "commit:c0ffee", Status: ResultPassed}}})
	if next.Outcome != Refused || len(next.Debt.Outstanding) != 1 || next.Debt.Outstanding[0].Kind != "secrets" || len(next.Debt.Cleared) != 2 {
		t.Errorf("next run: outcome %s, outstanding %v, cleared %v", next.Outcome, next.Debt.Outstanding, next.Debt.Cleared)
	}
}

func TestDeployabilityScore(t *testing.T) {
	rules := DefaultBatchRules()
	tests := []struct {
		name    string
		c       BatchChange
		score   int
		reasons []string
		rb      bool
	}{
		{"configuration only loses nothing", BatchChange{Paths: []string{"config/app.yaml", "deploy/values.yml"}}, 100,
			[]string{"configuration only: rolled back by reverting it"}, true},
		{"an image with its previous digest is a rollback artifact", BatchChange{Paths: []string{"api/x.go"}, Images: []string{imgA}, Rollback: []string{imgB}}, 100,
			[]string{"rollback artifact: " + imgB}, true},
		{"an image without a previous digest", BatchChange{Paths: []string{"api/x.go"}, Images: []string{imgA}}, 75,
			[]string{"-25 releases 1 image with no rollback artifact (no previous image digest)"}, false},
		{"a migration with its down migration", BatchChange{Paths: []string{"db/migrations/4.up.sql", "db/migrations/4.down.sql"}}, 80,
			[]string{"-20 schema migration touched: db/migrations/4.up.sql (and 1 more)", "rollback artifact: down migration db/migrations/4.down.sql"}, true},
		{"a migration without a down migration", BatchChange{Paths: []string{"db/migrations/5.sql"}}, 55,
			[]string{"-20 schema migration touched: db/migrations/5.sql", "-25 no down migration beside it"}, false},
		{"a new external dependency", BatchChange{Paths: []string{"go.mod", "go.sum"}, NewDependencies: []string{"github.com/x/y"}}, 85,
			[]string{"-15 new external dependency: github.com/x/y"}, true},
		{"everything at once never goes below zero", BatchChange{Paths: []string{"db/1.sql"}, Images: []string{imgA}, NewDependencies: []string{"a"}}, 15,
			[]string{"-25 releases 1 image with no rollback artifact (no previous image digest)", "-20 schema migration touched: db/1.sql", "-25 no down migration beside it", "-15 new external dependency: a"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := rules.Score(&tc.c)
			if d.Score != tc.score || !slices.Equal(d.Reasons, tc.reasons) || d.Rollback != tc.rb {
				t.Errorf("got %d %q rollback=%v, want %d %q rollback=%v", d.Score, d.Reasons, d.Rollback, tc.score, tc.reasons, tc.rb)
			}
		})
	}
}

func TestBatchPolicyErrorsNameFileLineAndField(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"an unknown impact", "version: 1\ncategories:\n  docs:\n    paths: [docs/**]\n    impact: severe\n",
			`policy.yaml:5:13: categories.docs.impact: unknown impact "severe" (want low, medium or high)`},
		{"a category without paths", "version: 1\ncategories:\n  docs:\n    impact: low\n",
			`policy.yaml:4:5: categories.docs.paths: missing; want at least one path glob`},
		{"a bad glob", "version: 1\ncategories:\n  docs:\n    paths: ['docs/[']\n    impact: low\n",
			`policy.yaml:4:13: categories.docs.paths[0]: bad glob "docs/["`},
		{"ship_alone naming no category", "version: 1\nbatch:\n  ship_alone: [db]\n",
			`policy.yaml:3:16: batch.ship_alone[0]: unknown category "db" (declared: none)`},
		{"an unknown required result", "version: 1\nbatch:\n  require:\n    - result: sbom\n",
			`policy.yaml:4:15: batch.require[0].result: unknown result "sbom" (want one of fast-verdict, image-scan, dependency-scan)`},
		{"max_changes of zero", "version: 1\nbatch:\n  max_changes: 0\n",
			`policy.yaml:3:16: batch.max_changes: must be at least 1`},
		{"an unknown batch key", "version: 1\nbatch:\n  max_batches: 3\n",
			`policy.yaml:3:3: batch.max_batches: unknown key "max_batches"`},
		{"a safe_to_batch that is not a bool", "version: 1\ncategories:\n  docs:\n    paths: [docs/**]\n    impact: low\n    safe_to_batch: maybe\n",
			`policy.yaml:6:20: categories.docs.safe_to_batch: want true or false, got "maybe"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy("policy.yaml", []byte(tc.src), batchCatalog())
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a ConfigError", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %q\nwant prefix %q", err, tc.want)
			}
		})
	}
}

// TestBatchPlanFormats checks the text, JSON and Markdown plans against
// golden files (go test ./gate -update rewrites them).
func TestBatchPlanFormats(t *testing.T) {
	set, recs, err := LoadChangeSet(filepath.Join("testdata", "batch", "changes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadPolicy(filepath.Join("testdata", "batch", "policy.yaml"), batchCatalog())
	if err != nil {
		t.Fatal(err)
	}
	p.Source = "policy.yaml"
	plan, err := p.PlanBatches(context.Background(), set, PlanOptions{Results: NewFileResults(recs...), Catalog: batchCatalog(), BatchID: "release-42"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ format, file string }{{"text", "plan.txt"}, {"json", "plan.json"}, {"markdown", "plan.md"}} {
		t.Run(f.format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteBatch(&buf, f.format, plan); err != nil {
				t.Fatal(err)
			}
			goldenBytes(t, filepath.Join("testdata", "batch", f.file), buf.Bytes())
		})
	}
}

func goldenBytes(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./gate -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (go test ./gate -update rewrites it):\n%s", path, got)
	}
}

func TestLoadChangeSetErrorsNameFileLineAndField(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"a change without an id", "changes:\n  - paths: [a.go]\n", "changes.yaml:2:5: changes[0].id: missing"},
		{"an id given twice", "changes:\n  - {id: a, paths: [a.go]}\n  - {id: a, paths: [b.go]}\n", `changes.yaml:3:10: changes[1].id: id "a" given twice`},
		{"an absolute path", "changes:\n  - id: a\n    paths: [/etc/passwd]\n", `changes.yaml:3:13: changes[0].paths[0]: want a slash path relative to the repository root`},
		{"a missing verdict file", "changes:\n  - id: a\n    paths: [a.go]\n    verdict: nope.json\n", `changes.yaml:4:14: changes[0].verdict: reading verdict`},
		{"a bad result status", "changes:\n  - {id: a, paths: [a.go]}\nresults:\n  - {kind: image-scan, subject: x, status: done}\n", `changes.yaml:4:5: results[0].status: unknown status "done"`},
		{"an unknown key", "changes:\n  - {id: a, paths: [a.go], risk: high}\n", `changes.yaml:2:28: changes[0].risk: unknown key "risk"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "changes.yaml")
			if err := os.WriteFile(f, []byte(tc.src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := LoadChangeSet(f)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a ConfigError", err)
			}
			ce.File = filepath.Base(ce.File)
			if !strings.HasPrefix(ce.Error(), tc.want) {
				t.Errorf("err = %q\nwant prefix %q", ce.Error(), tc.want)
			}
		})
	}
}

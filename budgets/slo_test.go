package budgets

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func sampleReport() *Report {
	at := time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)
	r := &Report{
		GeneratedAt: at.Add(24 * time.Hour), Since: at.Add(-6 * 24 * time.Hour), Store: ".sluice/queue.db",
		Controls: []ControlFigures{
			{Control: "secrets", Placement: "fast", Runs: 200, BudgetMS: 5000, P50MS: 800, P95MS: 6200, P99MS: 9100, MaxMS: 12000, Errored: 2, Overran: 14, Deferred: 14, Failed: 3},
			{Control: "lint", Placement: "fast", Runs: 200, BudgetMS: 20000, P50MS: 3000, P95MS: 7000, P99MS: 9000, MaxMS: 9500},
			{Control: "signatures", Placement: "fast", Runs: 50, BudgetMS: 10000, P50MS: 4000, P95MS: 11000, P99MS: 14000, MaxMS: 14000, Overran: 3},
			{Control: "image-scan", Placement: "slow", Runs: 40, BudgetMS: 600000, P50MS: 90000, P95MS: 240000, P99MS: 300000, MaxMS: 300000, Retries: 4, Errored: 1},
		},
		Queue: []QueueDepth{{Kind: "image-scan", Waiting: 2, Running: 1, OldestAgeMS: 95000}, {Kind: "deferred"}, {Kind: "dependency-scan"}},
		Exposure: Exposure{Closed: 40, P50MS: 120000, P95MS: 480000, MaxMS: 900000, Open: 3, Inside: []Exposed{
			{Subject: "r.example/app@sha256:aa", Change: "commit:1111", Kind: "image-scan", Control: "image-scan", State: "running", AgeMS: 60000},
			{Subject: "r.example/app@sha256:bb", Change: "commit:2222", Kind: "image-scan", Control: "image-scan", State: "queued", AgeMS: 95000},
		}},
		Demoted: []Move{{Control: "secrets", Action: "demote", By: "auto", At: at, Placement: "fast", Runs: 20, P95MS: 6200, BudgetMS: 5000, Reason: "p95 6.2s over 20 fast runs exceeds its budget of 5s"}},
	}
	r.Moves = []Move{r.Demoted[0]}
	r.Finish(true, func(c string) bool { return c != "signatures" })
	return r
}

func TestReportGoldens(t *testing.T) {
	for _, format := range Formats {
		t.Run("the "+format+" report matches its golden file", func(t *testing.T) {
			var buf bytes.Buffer
			if err := sampleReport().Write(&buf, format); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "report."+format)
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != string(want) {
				t.Errorf("%s differs from %s (run go test ./budgets -update to accept):\n%s", format, golden, got)
			}
		})
	}
}

func TestReportContent(t *testing.T) {
	r := sampleReport()
	t.Run("rates are fractions of runs", func(t *testing.T) {
		s := r.Controls[2] // secrets, after sorting
		if s.Control != "secrets" || s.FailureRate != 0.01 || s.OverrunRate != 0.07 || s.DeferralRate != 0.07 {
			t.Errorf("got %+v", s)
		}
	})
	t.Run("controls over budget are listed with the advice to reprofile", func(t *testing.T) {
		if len(r.OverBudget) != 2 {
			t.Fatalf("want secrets and signatures over budget, got %+v", r.OverBudget)
		}
		if o := r.OverBudget[0]; o.Control != "secrets" || !strings.Contains(o.Advice, "reprofile secrets") || !strings.Contains(o.Advice, "demoted to the slow path") {
			t.Errorf("secrets: %+v", o)
		}
		if o := r.OverBudget[1]; o.Control != "signatures" || !strings.Contains(o.Advice, "cannot be demoted") {
			t.Errorf("signatures: %+v", o)
		}
	})
	t.Run("the JSON names its schema", func(t *testing.T) {
		var buf bytes.Buffer
		if err := r.WriteJSON(&buf); err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(buf.Bytes(), &doc); err != nil || doc["schema"] != ReportSchema {
			t.Errorf("schema %v, err %v", doc["schema"], err)
		}
	})
	t.Run("the HTML page loads nothing from elsewhere", func(t *testing.T) {
		var buf bytes.Buffer
		if err := r.WriteHTML(&buf); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"<script", "src=", "href=", "@import", "url("} {
			if strings.Contains(buf.String(), bad) {
				t.Errorf("the page contains %q", bad)
			}
		}
		if !strings.Contains(buf.String(), "<svg") {
			t.Error("the page has no inline SVG chart")
		}
	})
	t.Run("names from the ledger are escaped in every picture", func(t *testing.T) {
		evil := &Report{Controls: []ControlFigures{{Control: `x"]<b>|`, Placement: "fast", Runs: 1, BudgetMS: 1, P95MS: 2}}}
		evil.Finish(false, func(string) bool { return false })
		var md, page bytes.Buffer
		if err := evil.WriteMarkdown(&md); err != nil {
			t.Fatal(err)
		}
		if err := evil.WriteHTML(&page); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(md.String(), `x-axis ["x___b__"]`) || !strings.Contains(md.String(), `x"]&lt;b&gt;\|`) || strings.Contains(md.String(), "<b>") {
			t.Errorf("markdown:\n%s", md.String())
		}
		if strings.Contains(page.String(), "<b>|") {
			t.Errorf("the HTML page carries the name unescaped")
		}
	})
}

func TestReview(t *testing.T) {
	rule := Rule{AutoDemote: true, Window: 7 * 24 * time.Hour, MinRuns: 20}
	deferrable := Budget{Time: time.Second, OnOverrun: Defer}
	tests := []struct {
		name    string
		rule    Rule
		b       Budget
		demoted bool
		s       Sample
		action  string
		held    bool
	}{
		{"a fast control over budget is demoted", rule, deferrable, false, Sample{Runs: 20, P95: 1100 * time.Millisecond}, "demote", false},
		{"a control at its budget exactly stays", rule, deferrable, false, Sample{Runs: 20, P95: time.Second}, "", false},
		{"too few runs decide nothing", rule, deferrable, false, Sample{Runs: 19, P95: time.Hour}, "", false},
		{"auto_demote off decides nothing", Rule{Window: time.Hour, MinRuns: 1}, deferrable, false, Sample{Runs: 50, P95: time.Hour}, "", false},
		{"a fail-closed control is held, not demoted", rule, Budget{Time: time.Second, OnOverrun: FailClosed}, false, Sample{Runs: 20, P95: 2 * time.Second}, "", true},
		{"a demoted control back within budget is restored", rule, deferrable, true, Sample{Runs: 20, P95: 900 * time.Millisecond}, "restore", false},
		{"a demoted control still over budget stays demoted", rule, deferrable, true, Sample{Runs: 40, P95: 2 * time.Second}, "", false},
		{"a demoted control with too few slow runs stays demoted", rule, deferrable, true, Sample{Runs: 3, P95: time.Millisecond}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Review(tt.rule, tt.b, tt.demoted, tt.s)
			if d.Action != tt.action || d.Held != tt.held {
				t.Errorf("got %+v, want action %q held %v", d, tt.action, tt.held)
			}
			if (d.Action != "" || d.Held) && d.Reason == "" {
				t.Error("a move or hold without a reason")
			}
		})
	}
}

func TestParseWindow(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := ParseWindow(in); err != nil || got != want {
			t.Errorf("%s: got %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0d", "-1h", "xd", "1.5d", "week"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

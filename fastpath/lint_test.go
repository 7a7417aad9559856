package fastpath

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testrepo"
)

func lintCatalog() gate.Catalog { return gate.Catalog{LintSpec()} }

func TestLintOptionErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, policy, want string
	}{
		{"an unknown severity", "severity: SEVERE", "p.yaml:4:15: controls.lint.severity: unknown severity"},
		{"an allow entry without a reason", "allow:\n      - check: DS-0002\n        reason: ok\n      - check: DS-0001\n", "controls.lint.allow[1].reason: missing"},
		{"an allow entry without a check", "allow:\n      - reason: legacy\n", "controls.lint.allow[0].check: missing"},
		{"a missing checks bundle", "checks_bundle: nowhere", "controls.lint.checks_bundle: checks bundle"},
		{"a bad expiry", "allow:\n      - check: X\n        reason: r\n        expires: soon\n", "bad date"},
		{"an unknown key", "sevrity: LOW", "unknown key \"sevrity\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "version: 1\ncontrols:\n  lint:\n    " + tt.policy + "\n"
			p, err := gate.ParsePolicy("p.yaml", []byte(doc), lintCatalog())
			if err == nil {
				err = p.Validate(gate.Env{PolicyDir: t.TempDir()})
			}
			var ce *gate.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if !strings.Contains(err.Error(), tt.want) || ce.Line == 0 {
				t.Errorf("got %q (line %d), want it to contain %q and name a line", err, ce.Line, tt.want)
			}
		})
	}
}

func lintChange(t *testing.T, files map[string]string) *gate.Change {
	t.Helper()
	root := testrepo.Tree(t, files)
	ch, err := gate.ChangeFromPaths(root, []string{root})
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

const unpinnedWorkflow = `on: push
permissions: {contents: read}
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.head_commit.message }}"
`

func TestLintSeverityAndAllowList(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }
	files := map[string]string{".github/workflows/ci.yml": unpinnedWorkflow}
	tests := []struct {
		name       string
		opts       LintOptions
		wantRules  []string
		wantNote   string
		suppressed int
	}{
		{"the default threshold reports MEDIUM and above", LintOptions{}, []string{"gha-unpinned-action", "gha-script-injection"}, "", 0},
		{"a HIGH threshold moves MEDIUM findings to the notes", LintOptions{Severity: "high"}, []string{"gha-script-injection"}, "1 finding(s) below HIGH not reported (gha-unpinned-action×1)", 0},
		{"an allow entry suppresses its check in matching paths", LintOptions{Allow: []LintAllow{{Check: "gha-unpinned-action", Paths: []string{".github/**"}, Reason: "tracked in #12"}}}, []string{"gha-script-injection"}, "", 1},
		{"an allow entry for other paths suppresses nothing", LintOptions{Allow: []LintAllow{{Check: "gha-unpinned-action", Paths: []string{"deploy/**"}, Reason: "r"}}}, []string{"gha-unpinned-action", "gha-script-injection"}, "allow[0] for gha-unpinned-action matched no finding", 0},
		{"an expired allow entry stops suppressing and says so", LintOptions{Allow: []LintAllow{{Check: "gha-unpinned-action", Reason: "until the migration", Expires: gate.Date{Time: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}}}}, []string{"gha-unpinned-action", "gha-script-injection"}, "allow[0] for gha-unpinned-action expired on 2026-02-01", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewLint(tt.opts, gate.Env{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Run(context.Background(), lintChange(t, files))
			if err != nil {
				t.Fatal(err)
			}
			var rules []string
			for _, f := range res.Findings {
				rules = append(rules, f.Rule)
				if f.File != ".github/workflows/ci.yml" || f.Line == 0 || f.Message == "" {
					t.Errorf("finding lacks file, line or message: %+v", f)
				}
			}
			slices.Sort(rules)
			want := slices.Clone(tt.wantRules)
			slices.Sort(want)
			if !slices.Equal(rules, want) {
				t.Errorf("rules = %v, want %v", rules, want)
			}
			notes := strings.Join(res.Notes, "\n")
			if tt.wantNote != "" && !strings.Contains(notes, tt.wantNote) {
				t.Errorf("notes = %q, want %q", notes, tt.wantNote)
			}
			if res.Suppressed != tt.suppressed {
				t.Errorf("suppressed = %d, want %d", res.Suppressed, tt.suppressed)
			}
		})
	}
}

// BenchmarkLintNothingLintable times the lint control, built afresh each
// time (so any lazy init is counted), over a change of 200 files none of
// which it lints.
func BenchmarkLintNothingLintable(b *testing.B) {
	root := b.TempDir()
	var paths []string
	for i := range 200 {
		name := fmt.Sprintf("pkg%d/file%d.go", i%20, i)
		if i%10 == 0 {
			name = fmt.Sprintf("docs/page%d.md", i)
		}
		p := filepath.Join(root, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		_ = os.WriteFile(p, []byte("package x\n"), 0o644)
		paths = append(paths, p)
	}
	ch, err := gate.ChangeFromPaths(root, []string{root})
	if err != nil {
		b.Fatal(err)
	}
	var times []time.Duration
	for b.Loop() {
		start := time.Now()
		c, err := NewLint(*newLintOptions(), gate.Env{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Run(context.Background(), ch); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	med := times[len(times)/2]
	b.ReportMetric(float64(med.Microseconds())/1000, "median-ms")
	if med > 20*time.Millisecond {
		b.Errorf("median %v; want under 20ms", med)
	}
}

package gate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/budgets"
)

var update = flag.Bool("update", false, "rewrite golden files")

// behaving builds a catalog whose fast control "probe" runs fn under the
// given budget, beside a slow-only control "deep".
func behaving(b budgets.Budget, fn func(ctx context.Context) (Result, error)) Catalog {
	return Catalog{
		{
			Name: "probe", Kind: "probe", Placement: Fast, Enabled: true, Budget: b,
			Build: func(any, Env) (Control, error) {
				return ControlFunc(func(ctx context.Context, ch *Change) (Result, error) { return fn(ctx) }), nil
			},
		},
		{Name: "deep", Kind: "deep-scan", Placement: Slow, SlowOnly: true, Enabled: true,
			Budget: budgets.Budget{Time: time.Minute, OnOverrun: budgets.FailClosed, OnError: budgets.FailClosed}},
	}
}

func sleeper(ctx context.Context) (Result, error) {
	select {
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-time.After(10 * time.Second):
		return Result{}, nil
	}
}

func finder(context.Context) (Result, error) {
	return Result{Findings: []Finding{
		{Rule: "b-rule", Severity: "HIGH", File: "z.txt", Line: 1, Message: "second by file", InChange: true},
		{Rule: "a-rule", Severity: "CRITICAL", File: "a.txt", Line: 9, Message: "first by file", Redacted: "ghp_****", Fingerprint: "0123456789abcdef", InChange: true},
	}}, nil
}

func TestCheckResolvesEachControlByItsDeclaredMode(t *testing.T) {
	const budget = 50 * time.Millisecond
	bud := func(overrun, onErr budgets.Mode) budgets.Budget {
		return budgets.Budget{Time: budget, OnOverrun: overrun, OnError: onErr}
	}
	tests := []struct {
		name       string
		budget     budgets.Budget
		fn         func(ctx context.Context) (Result, error)
		wantPass   bool
		wantStatus budgets.Status
		warnings   int
	}{
		{"clean", bud(budgets.FailClosed, budgets.FailClosed), func(context.Context) (Result, error) { return Result{}, nil }, true, budgets.Passed, 0},
		{"findings", bud(budgets.FailClosed, budgets.FailClosed), finder, false, budgets.Failed, 0},
		{"overrun-fail-closed", bud(budgets.FailClosed, budgets.FailOpen), sleeper, false, budgets.Overran, 0},
		{"overrun-fail-open", bud(budgets.FailOpen, budgets.FailClosed), sleeper, true, budgets.Overran, 1},
		{"overrun-defer", bud(budgets.Defer, budgets.FailClosed), sleeper, true, budgets.Deferred, 1},
		{"panic-fail-closed", bud(budgets.Defer, budgets.FailClosed), func(context.Context) (Result, error) { panic("nil map") }, false, budgets.Errored, 0},
		{"error-fail-open", bud(budgets.Defer, budgets.FailOpen), func(context.Context) (Result, error) { return Result{}, errors.New("registry unreachable") }, true, budgets.Errored, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := New(DefaultPolicy(behaving(tt.budget, tt.fn)), Env{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ch := &Change{Mode: RangeMode, Root: "/repo", Base: "1111111111111111111111111111111111111111", Head: "2222222222222222222222222222222222222222", BaseSource: "--base",
				Files: []*File{{Path: "a.txt"}, {Path: "z.txt"}}}
			start := time.Now()
			v := g.Check(context.Background(), ch)
			if elapsed := time.Since(start); elapsed > budget+budgets.Grace+250*time.Millisecond {
				t.Errorf("Check took %v with a budget of %v", elapsed, budget)
			}
			if v.Pass() != tt.wantPass || v.Controls[0].Status != tt.wantStatus || len(v.Warnings) != tt.warnings {
				t.Errorf("verdict %s, status %s, warnings %q; want pass=%v %s and %d warnings", v.Verdict, v.Controls[0].Status, v.Warnings, tt.wantPass, tt.wantStatus, tt.warnings)
			}
			for i := range v.Controls {
				v.Controls[i].DurationMS = 0 // the only field that varies between runs
			}
			golden(t, filepath.Join("testdata", "verdict", tt.name+".json"), v)
		})
	}
}

func golden(t *testing.T, path string, v any) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./gate -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("%s differs from the output (go test ./gate -update rewrites it):\n%s", path, buf.String())
	}
}

func TestCheckNeverWaitsForAControlThatIgnoresCancellation(t *testing.T) {
	const budget = 50 * time.Millisecond
	cat := behaving(budgets.Budget{Time: budget, OnOverrun: budgets.FailClosed, OnError: budgets.FailClosed},
		func(context.Context) (Result, error) { time.Sleep(5 * time.Second); return Result{}, nil })
	g, err := New(DefaultPolicy(cat), Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	v := g.Check(context.Background(), &Change{Mode: PathsMode, Paths: []string{"."}})
	if elapsed := time.Since(start); elapsed > budget+budgets.Grace+250*time.Millisecond {
		t.Fatalf("Check took %v", elapsed)
	}
	if v.Pass() || v.Controls[0].Status != budgets.Overran {
		t.Fatalf("verdict %+v", v.Controls[0])
	}
}

func TestCheckRunsControlsSideBySide(t *testing.T) {
	// Two controls that each wait for the other to start: run one after the
	// other they would both overrun.
	started := make(chan struct{}, 2)
	both := func(ctx context.Context) (Result, error) {
		started <- struct{}{}
		for len(started) < 2 {
			select {
			case <-ctx.Done():
				return Result{}, ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		return Result{}, nil
	}
	b := budgets.Budget{Time: 2 * time.Second, OnOverrun: budgets.FailClosed, OnError: budgets.FailClosed}
	cat := behaving(b, both)
	second := cat[0]
	second.Name = "probe2"
	cat = append(cat, second)
	g, err := New(DefaultPolicy(cat), Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := g.Check(context.Background(), &Change{Mode: PathsMode})
	for _, c := range v.Controls {
		if c.Status != budgets.Passed {
			t.Errorf("%s: %s (%s)", c.Name, c.Status, c.Reason)
		}
	}
}

func TestCheckWarnsWhenImagesHaveNoVerifier(t *testing.T) {
	cat := behaving(budgets.Budget{Time: time.Second}, func(context.Context) (Result, error) { return Result{}, nil })
	ch := &Change{Mode: PathsMode, Images: []string{"registry.example/app:1"}}
	for _, verifies := range []bool{false, true} {
		cat[0].VerifiesImages = verifies
		g, err := New(DefaultPolicy(cat), Env{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		v := g.Check(context.Background(), ch)
		warned := len(v.Warnings) == 1 && strings.Contains(v.Warnings[0], "no enabled control verifies images")
		if warned == verifies {
			t.Errorf("with a verifying control %v: warnings %q", verifies, v.Warnings)
		}
	}
}

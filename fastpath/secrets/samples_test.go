package secrets

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
	"github.com/zricethezav/gitleaks/v8/logging"
	"github.com/zricethezav/gitleaks/v8/report"
)

// sample is one rule's samples from gitleaks' rule definitions, as
// internal/gensamples writes them.
type sample struct {
	Rule    string            `json:"rule"`
	TPs     []string          `json:"tps"`
	FPs     []string          `json:"fps"`
	PathTPs map[string]string `json:"pathTps"`
	PathFPs map[string]string `json:"pathFps"`
}

type content struct{ path, raw string }

func (s sample) truePositives() []content {
	var out []content
	for _, tp := range s.TPs {
		out = append(out, content{"", tp})
	}
	for _, p := range slices.Sorted(maps.Keys(s.PathTPs)) {
		out = append(out, content{p, s.PathTPs[p]})
	}
	return out
}

func (s sample) falsePositives() []content {
	var out []content
	for _, fp := range s.FPs {
		out = append(out, content{"", fp})
	}
	for _, p := range slices.Sorted(maps.Keys(s.PathFPs)) {
		out = append(out, content{p, s.PathFPs[p]})
	}
	return out
}

// gitleaksDefault is gitleaks' default config, loaded by gitleaks itself.
func gitleaksDefault(t *testing.T) config.Config {
	t.Helper()
	d, err := detect.NewDetectorDefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	return d.Config
}

// singleRuleDetector is what gitleaks' utils.Validate uses: one rule and the
// global allowlists.
func singleRuleDetector(cfg config.Config, id string) *detect.Detector {
	r := cfg.Rules[id]
	one := cfg
	one.Rules = map[string]config.Rule{id: r}
	one.Keywords = map[string]struct{}{}
	for _, k := range r.Keywords {
		one.Keywords[strings.ToLower(k)] = struct{}{}
	}
	one.OrderedRules = []string{id}
	return detect.NewDetector(one)
}

// TestGitleaksSamples checks every default rule against the true- and
// false-positive samples of gitleaks' own rule definitions
// (testdata/secrets/gitleaks-samples.json, from internal/gensamples): each
// true positive gitleaks' single-rule detector finds must be reported by
// sluice's full default rule set with that rule id, and sluice with that rule
// alone must flag none of the false positives.
func TestGitleaksSamples(t *testing.T) {
	logging.Logger = logging.Logger.Level(zerolog.Disabled)
	data, err := os.ReadFile("../../testdata/secrets/gitleaks-samples.json")
	if err != nil {
		t.Fatal(err)
	}
	var samples []sample
	if err := json.Unmarshal(data, &samples); err != nil {
		t.Fatal(err)
	}
	cfg := gitleaksDefault(t)
	glFull := detect.NewDetector(cfg)
	full, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	rules, global, err := DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Rule{}
	for _, r := range rules {
		byID[r.ID] = r
	}

	var tpGitleaks, tpSluice, fpSluice, fpGitleaks, rulesChecked int
	var table []string
	for _, s := range samples {
		if _, ok := cfg.Rules[s.Rule]; !ok {
			t.Logf("%s: samples for a rule not in the default config; skipped", s.Rule)
			continue
		}
		rulesChecked++
		gl := singleRuleDetector(cfg, s.Rule)
		single, err := New(Config{NoDefaults: true, Rules: []Rule{byID[s.Rule]}, Allow: global})
		if err != nil {
			t.Fatalf("%s: %v", s.Rule, err)
		}
		var missed, flagged []string
		found := 0
		tps := s.truePositives()
		glFound := 0
		for _, tp := range tps {
			if len(gl.Detect(detect.Fragment{Raw: tp.raw, FilePath: tp.path})) == 0 {
				continue
			}
			glFound++
			got := full.Scan(tp.path, []byte(tp.raw))
			hit := slices.ContainsFunc(got, func(f Finding) bool { return f.RuleID == s.Rule })
			if !hit {
				// A generic rule yields to a specific one that found a secret
				// containing its secret on the same line: then gitleaks' full
				// rule set does not report it either, and sluice must report
				// what gitleaks reports.
				want := ruleIDs(glFull.Detect(detect.Fragment{Raw: tp.raw, FilePath: tp.path}), func(f report.Finding) string { return f.RuleID })
				hit = !slices.Contains(want, s.Rule) && len(want) > 0 &&
					slices.Equal(want, ruleIDs(got, func(f Finding) string { return f.RuleID }))
			}
			if hit {
				found++
			} else {
				missed = append(missed, fmt.Sprintf("%q", clip(tp.path+" "+tp.raw)))
			}
		}
		glFlagged := 0
		for _, fp := range s.falsePositives() {
			if len(gl.Detect(detect.Fragment{Raw: fp.raw, FilePath: fp.path})) > 0 {
				glFlagged++
			}
			if len(single.Scan(fp.path, []byte(fp.raw))) > 0 {
				flagged = append(flagged, fmt.Sprintf("%q", clip(fp.path+" "+fp.raw)))
			}
		}
		tpGitleaks += glFound
		tpSluice += found
		fpSluice += len(flagged)
		fpGitleaks += glFlagged
		if len(missed) > 0 || len(flagged) > 0 {
			table = append(table, fmt.Sprintf("%-40s TPs gitleaks %3d sluice %3d | FPs flagged %d\n    missed: %s\n    flagged: %s",
				s.Rule, glFound, found, len(flagged), strings.Join(missed, ", "), strings.Join(flagged, ", ")))
			t.Errorf("%s: %d of %d true positives missed, %d false positives flagged", s.Rule, len(missed), glFound, len(flagged))
		}
	}
	for _, row := range table {
		t.Log(row)
	}
	t.Logf("rules %d; true positives found by gitleaks %d, by sluice %d; false positives flagged by gitleaks %d, by sluice %d",
		rulesChecked, tpGitleaks, tpSluice, fpGitleaks, fpSluice)
	if rulesChecked < 200 {
		t.Errorf("only %d rules checked", rulesChecked)
	}
}

func ruleIDs[F any](findings []F, id func(F) string) []string {
	var ids []string
	for _, f := range findings {
		ids = append(ids, id(f))
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

func clip(s string) string {
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
}

package sarif_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/actions/sarif"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/golden"
)

func TestSARIFMatchesGolden(t *testing.T) {
	v := golden.Verdict(t, "../testdata/verdict.json")
	var buf bytes.Buffer
	if err := sarif.Write(&buf, v, sarif.Options{Version: "1.2.3"}); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/verdict.sarif", buf.Bytes())
}

// log is the part of a SARIF log the tests read.
type log struct {
	Version string `json:"version"`
	Runs    []struct {
		Tool struct {
			Driver struct {
				Rules []struct {
					ID         string         `json:"id"`
					Properties map[string]any `json:"properties"`
					Default    struct {
						Level string `json:"level"`
					} `json:"defaultConfiguration"`
				} `json:"rules"`
			} `json:"driver"`
		} `json:"tool"`
		OriginalURIBaseIDs map[string]struct {
			URI string `json:"uri"`
		} `json:"originalUriBaseIds"`
		Results []struct {
			RuleID    string `json:"ruleId"`
			RuleIndex int    `json:"ruleIndex"`
			Level     string `json:"level"`
			Message   struct {
				Text string `json:"text"`
			} `json:"message"`
			Locations []struct {
				PhysicalLocation struct {
					ArtifactLocation struct {
						URI       string `json:"uri"`
						URIBaseID string `json:"uriBaseId"`
					} `json:"artifactLocation"`
					Region struct {
						StartLine int `json:"startLine"`
					} `json:"region"`
				} `json:"physicalLocation"`
			} `json:"locations"`
			PartialFingerprints map[string]string `json:"partialFingerprints"`
		} `json:"results"`
		Invocations []struct {
			ExecutionSuccessful bool `json:"executionSuccessful"`
			Notifications       []struct {
				Level   string `json:"level"`
				Message struct {
					Text string `json:"text"`
				} `json:"message"`
			} `json:"toolExecutionNotifications"`
		} `json:"invocations"`
	} `json:"runs"`
}

func decode(t *testing.T, v *gate.Verdict, o sarif.Options) log {
	t.Helper()
	var buf bytes.Buffer
	if err := sarif.Write(&buf, v, o); err != nil {
		t.Fatal(err)
	}
	var l log
	if err := json.Unmarshal(buf.Bytes(), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestSARIFLocationsRulesAndFingerprints(t *testing.T) {
	v := golden.Verdict(t, "../testdata/verdict.json")
	l := decode(t, v, sarif.Options{})
	if l.Version != "2.1.0" || len(l.Runs) != 1 {
		t.Fatalf("version %q, %d runs", l.Version, len(l.Runs))
	}
	run := l.Runs[0]
	if got := run.OriginalURIBaseIDs[sarif.SrcRoot].URI; got != "file:///src/app/" {
		t.Errorf("%%SRCROOT%% = %q, want file:///src/app/", got)
	}
	if len(run.Results) != 3 {
		t.Fatalf("%d results, want 3", len(run.Results))
	}
	rules := run.Tool.Driver.Rules
	for _, r := range run.Results {
		if rules[r.RuleIndex].ID != r.RuleID {
			t.Errorf("result %s points at rule %d (%s)", r.RuleID, r.RuleIndex, rules[r.RuleIndex].ID)
		}
		loc := r.Locations[0].PhysicalLocation
		if loc.ArtifactLocation.URIBaseID != sarif.SrcRoot || strings.HasPrefix(loc.ArtifactLocation.URI, "/") {
			t.Errorf("location %+v is not relative to %%SRCROOT%%", loc.ArtifactLocation)
		}
		if r.PartialFingerprints[sarif.FingerprintKey] == "" {
			t.Errorf("result %s has no partial fingerprint", r.RuleID)
		}
		if r.Level != "error" {
			t.Errorf("HIGH maps to %q, want error", r.Level)
		}
	}
	if got := run.Results[0].Locations[0].PhysicalLocation.ArtifactLocation.URI; got != "config/app.env" {
		t.Errorf("first location %q", got)
	}
	// File names with a newline, comma, percent sign or colon are escaped
	// as URI references (a colon could otherwise read as a scheme).
	for i, want := range map[int]string{1: "docs/a%2Cb%25c%3Ad.md", 2: "evil%0A%3A%3Aadd-mask%3A%3Ax%2Cline=1.txt"} {
		if got := run.Results[i].Locations[0].PhysicalLocation.ArtifactLocation.URI; got != want {
			t.Errorf("result %d uri %q, want %q", i, got, want)
		}
	}
	if len(rules) != 2 || rules[0].ID != "secrets/github-pat" || rules[1].ID != "secrets/generic-api-key" {
		t.Errorf("rules %+v, want secrets/github-pat and secrets/generic-api-key, once each", rules)
	}
	for _, r := range rules {
		if !strings.HasPrefix(r.ID, "secrets/") || r.Properties["security-severity"] != "8.0" || r.Default.Level != "error" {
			t.Errorf("rule %+v", r)
		}
	}
	inv := run.Invocations[0]
	if inv.ExecutionSuccessful {
		t.Error("an errored control must make executionSuccessful false")
	}
	var texts []string
	for _, n := range inv.Notifications {
		texts = append(texts, n.Message.Text)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"signatures errored", "lint deferred", "image-scan ghcr.io/acme/app:1.2"} {
		if !strings.Contains(all, want) {
			t.Errorf("notifications lack %q:\n%s", want, all)
		}
	}
}

func TestSARIFSeverityLevels(t *testing.T) {
	for sev, want := range map[string]string{"CRITICAL": "error", "HIGH": "error", "MEDIUM": "warning", "LOW": "note", "": "note"} {
		if got := sarif.Level(sev); got != want {
			t.Errorf("Level(%q) = %q, want %q", sev, got, want)
		}
	}
}

func TestSARIFTruncatesAtTheResultLimitWithANote(t *testing.T) {
	var fs []gate.Finding
	for i := range 30 {
		fs = append(fs, gate.Finding{Rule: fmt.Sprintf("r%d", i%3), Severity: "MEDIUM", File: "a.txt", Line: i + 1, Message: "m", InChange: true})
	}
	v := &gate.Verdict{Verdict: "fail", Change: gate.ChangeInfo{Mode: gate.PathsMode, Root: "/w"},
		Controls: []gate.ControlRun{{Name: "lint", Status: "failed", Blocks: true, Findings: fs}}}
	l := decode(t, v, sarif.Options{Limits: sarif.Limits{Results: 10, Rules: 100, Message: 100}})
	run := l.Runs[0]
	if len(run.Results) != 10 {
		t.Fatalf("%d results, want 10", len(run.Results))
	}
	found := false
	for _, n := range run.Invocations[0].Notifications {
		if strings.Contains(n.Message.Text, "truncated: 20 of 30 results") {
			found = true
		}
	}
	if !found {
		t.Errorf("no truncation notification: %+v", run.Invocations[0].Notifications)
	}
}

func TestSARIFHasNoSecretValue(t *testing.T) {
	v := golden.Verdict(t, "../testdata/verdict.json")
	var buf bytes.Buffer
	if err := sarif.Write(&buf, v, sarif.Options{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "ghp_****") {
		t.Error("the redacted value is not in the message")
	}
}

func TestSARIFPlacesAFindingWithoutAFileOnThePolicy(t *testing.T) {
	v := &gate.Verdict{Verdict: "fail", Change: gate.ChangeInfo{Mode: gate.RangeMode, Root: "/src/app"},
		Policy: gate.PolicyInfo{Source: "/src/app/ci/.sluice.yaml"},
		Controls: []gate.ControlRun{{Name: "signatures", Status: "failed", Blocks: true, Findings: []gate.Finding{
			{Rule: "unsigned", Severity: "HIGH", Message: "ghcr.io/acme/app:1 is not signed", InChange: true}}}}}
	l := decode(t, v, sarif.Options{})
	loc := l.Runs[0].Results[0].Locations
	if len(loc) != 1 || loc[0].PhysicalLocation.ArtifactLocation.URI != "ci/.sluice.yaml" || loc[0].PhysicalLocation.Region.StartLine != 1 {
		t.Errorf("locations %+v, want ci/.sluice.yaml:1", loc)
	}
}

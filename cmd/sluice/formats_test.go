package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/internal/testrepo"
)

func TestCheckWritesSARIFJUnitAndTektonResults(t *testing.T) {
	r := testrepo.New(t)
	r.Write("README.md", "# app\n")
	r.Commit("base")
	secret := githubPAT(t)
	r.Write("app.env", "TOKEN="+secret+"\n")
	r.Commit("secret")
	out := t.TempDir()
	sarifFile, junitFile, results := filepath.Join(out, "s.sarif"), filepath.Join(out, "j.xml"), filepath.Join(out, "results")
	os.Mkdir(results, 0o755)

	res := sluice(t, r.Dir, "check", "--format", "sarif", "--junit", junitFile, "--sarif", sarifFile, "--tekton-results", results)
	if res.code != exitBlocked {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Results []struct {
				RuleID string `json:"ruleId"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &log); err != nil || log.Version != "2.1.0" || len(log.Runs[0].Results) != 1 || log.Runs[0].Results[0].RuleID != "secrets/github-pat" {
		t.Errorf("--format sarif: %v %+v", err, log)
	}
	if written := readFile(t, sarifFile); written != res.stdout {
		t.Error("--sarif differs from --format sarif")
	}
	var suites struct {
		Failures int `xml:"failures,attr"`
	}
	junit := readFile(t, junitFile)
	if err := xml.Unmarshal([]byte(junit), &suites); err != nil || suites.Failures != 1 {
		t.Errorf("--junit: %v failures %d\n%s", err, suites.Failures, junit)
	}
	for name, want := range map[string]string{"verdict": "fail", "findings": "1", "blocking-controls": "secrets", "deferred": "0"} {
		if got := readFile(t, filepath.Join(results, name)); got != want {
			t.Errorf("Tekton result %s = %q, want %q", name, got, want)
		}
	}
	text := sluice(t, r.Dir, "check", "--format", "junit")
	if !strings.HasPrefix(text.stdout, "<?xml") {
		t.Errorf("--format junit:\n%s", text.stdout)
	}
	assertAbsent(t, map[string]string{"sarif": res.stdout, "junit": junit, "junit stdout": text.stdout}, secret)
}

// sluice's own gate passes the files it ships: the action, its steps and
// the Tekton Task go through the lint control (actionlint with the
// supply-chain rules, and the Tekton parse).
func TestOwnActionAndTaskPassTheLintControl(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	res := sluice(t, root, "check", "--format", "json", "--root", root, "action.yml", "tekton/sluice-task.yaml", ".github/workflows/release.yml")
	v := decodeVerdict(t, res.stdout)
	for _, c := range v.Controls {
		if c.Name == "lint" && (c.Status != "passed" || len(c.Findings) > 0) {
			t.Errorf("lint %s: %+v", c.Status, c.Findings)
		}
	}
	if res.code != exitPass {
		t.Errorf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

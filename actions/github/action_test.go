package github_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"gopkg.in/yaml.v3"
)

const root = "../.."

func lint(t *testing.T, path string, content []byte) []*actionlint.Error {
	t.Helper()
	l, err := actionlint.NewLinter(os.Stderr, &actionlint.LinterOptions{WorkingDir: root})
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(root)
	proj, err := actionlint.NewProject(abs)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.Lint(path, content, proj)
	if err != nil {
		t.Fatal(err)
	}
	return errs
}

func TestExampleWorkflowPassesActionlint(t *testing.T) {
	for _, p := range []string{"examples/github/sluice.yml", ".github/workflows/release.yml"} {
		data, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if errs := lint(t, p, data); len(errs) > 0 {
			t.Errorf("%s: %d actionlint errors", p, len(errs))
		}
	}
}

// actionlint checks a workflow's use of a local action against its
// action.yml: the file must parse as action metadata and every input given
// must be declared.
func TestActionMetadataPassesActionlint(t *testing.T) {
	data, err := os.ReadFile("testdata/uses-action.yml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(filepath.Join(root, ".github", "workflows", "uses-action.yml"))
	if errs := lint(t, abs, data); len(errs) > 0 {
		t.Errorf("%d actionlint errors using action.yml", len(errs))
	}
	// And the check can fail: an input action.yml does not declare.
	bad := bytes.Replace(data, []byte("format: text"), []byte("formatt: text"), 1)
	errs := lint(t, abs, bad)
	if len(errs) == 0 || !strings.Contains(errs[0].Message, "formatt") {
		t.Errorf("an undeclared input passed: %v", errs)
	}
}

// actionlint does not lint a composite action's steps itself, so they are
// linted as the job of a reusable workflow whose inputs are the action's:
// expressions, contexts, shells, env names and script injection.
func TestActionStepsPassActionlint(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var action struct {
		Inputs map[string]any `yaml:"inputs"`
		Runs   struct {
			Using string `yaml:"using"`
			Steps []any  `yaml:"steps"`
		} `yaml:"runs"`
	}
	if err := yaml.Unmarshal(data, &action); err != nil {
		t.Fatal(err)
	}
	if action.Runs.Using != "composite" || len(action.Runs.Steps) == 0 {
		t.Fatalf("runs %+v", action.Runs)
	}
	inputs := map[string]any{}
	for name := range action.Inputs {
		inputs[name] = map[string]any{"type": "string", "required": false}
	}
	wf := map[string]any{
		"on":          map[string]any{"workflow_call": map[string]any{"inputs": inputs}},
		"permissions": map[string]any{"contents": "read"},
		"jobs": map[string]any{"action": map[string]any{
			"runs-on": "ubuntu-latest",
			"steps":   action.Runs.Steps,
		}},
	}
	out, err := yaml.Marshal(wf)
	if err != nil {
		t.Fatal(err)
	}
	if errs := lint(t, "action-steps.yml", out); len(errs) > 0 {
		t.Errorf("%d actionlint errors in action.yml's steps:\n%s", len(errs), out)
	}
	for _, s := range action.Runs.Steps {
		step := s.(map[string]any)
		if run, _ := step["run"].(string); strings.Contains(run, "${{") {
			t.Errorf("step %v interpolates an expression into its script", step["name"])
		}
	}
}

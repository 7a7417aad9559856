package tekton_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluice-ci/sluice/actions/tekton"
	"github.com/sluice-ci/sluice/internal/golden"
)

func TestWriteResultsWritesOneSmallFilePerResult(t *testing.T) {
	dir := t.TempDir()
	v := golden.Verdict(t, "../testdata/verdict.json")
	if err := tekton.WriteResults(dir, v); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"verdict": "fail", "findings": "3", "blocking-controls": "secrets", "deferred": "2"}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(want) {
		t.Errorf("%d files in the results folder, want %d (no temporary files left)", len(entries), len(want))
	}
	total := 0
	for name, w := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != w {
			t.Errorf("%s = %q, want %q", name, got, w)
		}
		total += len(got)
	}
	if total > tekton.MaxResultsBytes {
		t.Errorf("%d bytes of results", total)
	}
	if err := tekton.WriteResults(filepath.Join(dir, "missing"), v); err == nil {
		t.Error("writing into a missing folder succeeded")
	}
}

// The Task is checked against a strict mirror of Tekton's v1 Task type
// (github.com/tektoncd/pipeline pkg/apis/pipeline/v1: Task, TaskSpec,
// ParamSpec, TaskResult, WorkspaceDeclaration, Step; the Go module itself
// is not served by this build's module proxy): an unknown or misspelled
// field fails, as `kubectl apply` with Tekton's validating webhook would,
// and the rules of Tekton's validation that apply are checked below.
type task struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec struct {
		Description string `yaml:"description"`
		Params      []struct {
			Name        string `yaml:"name"`
			Type        string `yaml:"type"`
			Description string `yaml:"description"`
			Default     any    `yaml:"default"`
		} `yaml:"params"`
		Workspaces []struct {
			Name        string `yaml:"name"`
			Description string `yaml:"description"`
			ReadOnly    bool   `yaml:"readOnly"`
			Optional    bool   `yaml:"optional"`
		} `yaml:"workspaces"`
		Results []struct {
			Name        string `yaml:"name"`
			Type        string `yaml:"type"`
			Description string `yaml:"description"`
		} `yaml:"results"`
		Steps []struct {
			Name       string   `yaml:"name"`
			Image      string   `yaml:"image"`
			WorkingDir string   `yaml:"workingDir"`
			Command    []string `yaml:"command"`
			Args       []string `yaml:"args"`
			Script     string   `yaml:"script"`
			Env        []struct {
				Name  string `yaml:"name"`
				Value string `yaml:"value"`
			} `yaml:"env"`
		} `yaml:"steps"`
	} `yaml:"spec"`
}

var (
	dnsLabel    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	resultName  = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	paramName   = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_.-]*$`)
	paramRef    = regexp.MustCompile(`\$\(params\.([A-Za-z0-9_.-]+?)(\[\*\])?\)`)
	workspaceRe = regexp.MustCompile(`\$\(workspaces\.([A-Za-z0-9_-]+)\.path\)`)
)

func TestTaskIsAValidTektonV1Task(t *testing.T) {
	data, err := os.ReadFile("../../tekton/sluice-task.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tk task
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&tk); err != nil {
		t.Fatalf("sluice-task.yaml: %v", err)
	}
	if tk.APIVersion != "tekton.dev/v1" || tk.Kind != "Task" || !dnsLabel.MatchString(tk.Metadata.Name) {
		t.Errorf("header %s %s %s", tk.APIVersion, tk.Kind, tk.Metadata.Name)
	}
	params := map[string]string{}
	for _, p := range tk.Spec.Params {
		if !paramName.MatchString(p.Name) || params[p.Name] != "" {
			t.Errorf("param %q: bad or duplicate name", p.Name)
		}
		typ := p.Type
		if typ == "" {
			typ = "string"
		}
		params[p.Name] = typ
		switch d := p.Default.(type) {
		case nil:
		case string:
			if typ != "string" {
				t.Errorf("param %s: a string default for type %s", p.Name, typ)
			}
		case []any:
			if typ != "array" {
				t.Errorf("param %s: an array default for type %s", p.Name, typ)
			}
		default:
			t.Errorf("param %s: default %v of type %T", p.Name, d, d)
		}
	}
	var results []string
	for _, r := range tk.Spec.Results {
		if !resultName.MatchString(r.Name) || (r.Type != "" && r.Type != "string") {
			t.Errorf("result %q type %q", r.Name, r.Type)
		}
		results = append(results, r.Name)
	}
	slices.Sort(results)
	want := slices.Clone(tekton.ResultNames)
	slices.Sort(want)
	if !slices.Equal(results, want) {
		t.Errorf("the Task declares results %v, sluice writes %v", results, want)
	}
	workspaces := map[string]bool{}
	for _, w := range tk.Spec.Workspaces {
		workspaces[w.Name] = true
	}
	if !workspaces["source"] {
		t.Error("no source workspace")
	}
	if len(tk.Spec.Steps) == 0 {
		t.Fatal("no steps")
	}
	for _, s := range tk.Spec.Steps {
		if !dnsLabel.MatchString(s.Name) || s.Image == "" {
			t.Errorf("step %q image %q", s.Name, s.Image)
		}
		if s.Script != "" && len(s.Command) > 0 {
			t.Errorf("step %s: script and command together", s.Name)
		}
		if !strings.HasPrefix(s.Script, "#!") {
			t.Errorf("step %s: script without a shebang", s.Name)
		}
		// Parameters reach the script through env or args, never
		// interpolated into it.
		if strings.Contains(s.Script, "$(params.") {
			t.Errorf("step %s interpolates a parameter into its script", s.Name)
		}
		if !strings.Contains(s.Script, "--tekton-results /tekton/results") {
			t.Errorf("step %s does not write the results", s.Name)
		}
		fields := []string{s.Image, s.WorkingDir, s.Script}
		for _, e := range s.Env {
			fields = append(fields, e.Value)
		}
		for _, f := range fields {
			for _, m := range paramRef.FindAllStringSubmatch(f, -1) {
				if params[m[1]] == "" {
					t.Errorf("step %s uses undeclared param %s", s.Name, m[1])
				}
				if params[m[1]] == "array" {
					t.Errorf("step %s uses array param %s outside args or command", s.Name, m[1])
				}
			}
			for _, m := range workspaceRe.FindAllStringSubmatch(f, -1) {
				if !workspaces[m[1]] {
					t.Errorf("step %s uses undeclared workspace %s", s.Name, m[1])
				}
			}
		}
		for _, a := range slices.Concat(s.Args, s.Command) {
			for _, m := range paramRef.FindAllStringSubmatch(a, -1) {
				if params[m[1]] == "" {
					t.Errorf("step %s uses undeclared param %s", s.Name, m[1])
				}
				if m[2] != "" && (params[m[1]] != "array" || a != m[0]) {
					t.Errorf("step %s: %s must be a whole element and an array param", s.Name, m[0])
				}
			}
		}
	}
}

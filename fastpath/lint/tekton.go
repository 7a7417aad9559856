package lint

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Check ids of the Tekton rules.
const (
	CheckTektonNoSteps         = "tekton-missing-steps"
	CheckTektonNoImage         = "tekton-step-missing-image"
	CheckTektonDuplicateParam  = "tekton-duplicate-param"
	CheckTektonDuplicateName   = "tekton-duplicate-name"
	CheckTektonUndeclaredParam = "tekton-undeclared-param"
	CheckTektonUndeclaredWS    = "tekton-undeclared-workspace"
	CheckTektonNoTaskRef       = "tekton-missing-task-ref"
	CheckTektonUnknownRunAfter = "tekton-unknown-run-after"
	CheckTektonMissingSpec     = "tekton-missing-spec"
	tektonParamPattern         = `\$\(params(?:\.([A-Za-z0-9_-]+)|\[["']([^"'\]]+)["']\])(?:\[\*\]|\[\d+\])?(?:\.[A-Za-z0-9_-]+)?\)`
	tektonWorkspacePattern     = `\$\(workspaces\.([A-Za-z0-9_-]+)\.`
)

var (
	tektonParamRE     = regexp.MustCompile(tektonParamPattern)
	tektonWorkspaceRE = regexp.MustCompile(tektonWorkspacePattern)
)

// lintTekton reports the obvious errors of the Tekton Tasks and Pipelines in
// a file: what would make the controller reject them or fail at run time.
func lintTekton(in *input) []Finding {
	var out []Finding
	add := func(check, sev string, n *yaml.Node, format string, args ...any) {
		line := 1
		if n != nil {
			line = n.Line
		}
		out = append(out, Finding{Check: check, Severity: sev, File: in.path, Line: line, Kind: Tekton, Message: fmt.Sprintf(format, args...)})
	}
	for _, d := range in.docs {
		r := d.root
		if r == nil || !strings.HasPrefix(scalar(r, "apiVersion"), "tekton.dev/") {
			continue
		}
		kind := scalar(r, "kind")
		spec := get(r, "spec")
		name := scalar(get(r, "metadata"), "name")
		if kind != "Task" && kind != "ClusterTask" && kind != "Pipeline" {
			continue
		}
		if spec == nil || spec.Kind != yaml.MappingNode {
			add(CheckTektonMissingSpec, High, r, "%s %q has no spec; add one with its steps or tasks", kind, name)
			continue
		}
		if kind == "Pipeline" {
			tektonPipeline(spec, name, add)
		} else {
			tektonTask(spec, kind, name, add)
		}
	}
	return out
}

type addFunc func(check, sev string, n *yaml.Node, format string, args ...any)

// declaredParams lists a spec's params, reporting duplicates.
func declaredParams(spec *yaml.Node, what string, add addFunc) map[string]bool {
	declared := map[string]bool{}
	params := get(spec, "params")
	if params == nil || params.Kind != yaml.SequenceNode {
		return declared
	}
	for _, p := range params.Content {
		n := get(p, "name")
		if n == nil {
			add(CheckTektonUndeclaredParam, High, p, "a param of %s has no name; give it one", what)
			continue
		}
		if declared[n.Value] {
			add(CheckTektonDuplicateParam, High, n, "param %q of %s is declared twice; remove or rename one", n.Value, what)
		}
		declared[n.Value] = true
	}
	return declared
}

func declaredNames(spec *yaml.Node, key string) map[string]bool {
	out := map[string]bool{}
	if l := get(spec, key); l != nil && l.Kind == yaml.SequenceNode {
		for _, item := range l.Content {
			if n := scalar(item, "name"); n != "" {
				out[n] = true
			}
		}
	}
	return out
}

func tektonTask(spec *yaml.Node, kind, name string, add addFunc) {
	what := fmt.Sprintf("%s %q", kind, name)
	params := declaredParams(spec, what, add)
	workspaces := declaredNames(spec, "workspaces")
	steps := get(spec, "steps")
	if steps == nil || steps.Kind != yaml.SequenceNode || len(steps.Content) == 0 {
		add(CheckTektonNoSteps, High, spec, "%s has no steps; a Task needs at least one step with an image", what)
	} else {
		templateImage := scalar(get(spec, "stepTemplate"), "image") != ""
		names := map[string]bool{}
		for i, st := range steps.Content {
			sn := scalar(st, "name")
			label := fmt.Sprintf("step %d", i+1)
			if sn != "" {
				label = fmt.Sprintf("step %q", sn)
				if names[sn] {
					add(CheckTektonDuplicateName, High, get(st, "name"), "%s of %s is declared twice; step names must be unique", label, what)
				}
				names[sn] = true
			}
			if scalar(st, "image") == "" && get(st, "ref") == nil && !templateImage {
				add(CheckTektonNoImage, High, st, "%s of %s has no image; add \"image:\" (pinned by digest) or a stepTemplate image", label, what)
			}
		}
	}
	walkRefs(spec, func(n *yaml.Node) {
		for _, ref := range paramRefs(n.Value) {
			if !params[ref] {
				add(CheckTektonUndeclaredParam, High, n, "$(params.%s) is used but %s declares no param %q; declare it under spec.params or fix the name", ref, what, ref)
			}
		}
		for _, m := range tektonWorkspaceRE.FindAllStringSubmatch(n.Value, -1) {
			if !workspaces[m[1]] {
				add(CheckTektonUndeclaredWS, High, n, "workspace %q is used but %s declares no such workspace; declare it under spec.workspaces", m[1], what)
			}
		}
	}, nil)
}

func tektonPipeline(spec *yaml.Node, name string, add addFunc) {
	what := fmt.Sprintf("Pipeline %q", name)
	params := declaredParams(spec, what, add)
	tasks := map[string]bool{}
	var all []*yaml.Node
	for _, key := range []string{"tasks", "finally"} {
		l := get(spec, key)
		if l == nil || l.Kind != yaml.SequenceNode {
			continue
		}
		for _, t := range l.Content {
			tn := get(t, "name")
			if tn != nil {
				if tasks[tn.Value] {
					add(CheckTektonDuplicateName, High, tn, "task %q of %s is declared twice; task names must be unique", tn.Value, what)
				}
				tasks[tn.Value] = true
			}
			all = append(all, t)
		}
	}
	if len(all) == 0 {
		add(CheckTektonNoSteps, High, spec, "%s has no tasks; add at least one under spec.tasks", what)
	}
	for _, t := range all {
		tn := scalar(t, "name")
		if get(t, "taskRef") == nil && get(t, "taskSpec") == nil && get(t, "pipelineRef") == nil && get(t, "pipelineSpec") == nil {
			add(CheckTektonNoTaskRef, High, t, "task %q of %s has neither taskRef nor taskSpec; say which Task it runs", tn, what)
		}
		if ra := get(t, "runAfter"); ra != nil && ra.Kind == yaml.SequenceNode {
			for _, r := range ra.Content {
				if !tasks[r.Value] {
					add(CheckTektonUnknownRunAfter, High, r, "task %q of %s runs after %q, which is not a task of this pipeline; fix the name", tn, what, r.Value)
				}
			}
		}
		if ts := get(t, "taskSpec"); ts != nil && ts.Kind == yaml.MappingNode {
			tektonEmbeddedTask(ts, fmt.Sprintf("the taskSpec of task %q", tn), params, add)
		}
	}
	// Embedded task specs see the pipeline's params too; they are walked
	// with their own declarations above.
	walkRefs(spec, func(n *yaml.Node) {
		for _, ref := range paramRefs(n.Value) {
			if !params[ref] {
				add(CheckTektonUndeclaredParam, High, n, "$(params.%s) is used but %s declares no param %q; declare it under spec.params or fix the name", ref, what, ref)
			}
		}
	}, map[string]bool{"taskSpec": true, "pipelineSpec": true})
}

// tektonEmbeddedTask checks a Pipeline's inline taskSpec: its steps, and
// params that neither it nor the pipeline declares.
func tektonEmbeddedTask(spec *yaml.Node, what string, pipelineParams map[string]bool, add addFunc) {
	own := declaredParams(spec, what, add)
	steps := get(spec, "steps")
	if steps == nil || steps.Kind != yaml.SequenceNode || len(steps.Content) == 0 {
		add(CheckTektonNoSteps, High, spec, "%s has no steps; a Task needs at least one step with an image", what)
	} else {
		templateImage := scalar(get(spec, "stepTemplate"), "image") != ""
		for i, st := range steps.Content {
			if scalar(st, "image") == "" && get(st, "ref") == nil && !templateImage {
				add(CheckTektonNoImage, High, st, "step %d of %s has no image; add \"image:\" (pinned by digest)", i+1, what)
			}
		}
	}
	walkRefs(spec, func(n *yaml.Node) {
		for _, ref := range paramRefs(n.Value) {
			if !own[ref] && !pipelineParams[ref] {
				add(CheckTektonUndeclaredParam, High, n, "$(params.%s) is used but neither %s nor its pipeline declares param %q; declare it or fix the name", ref, what, ref)
			}
		}
	}, nil)
}

// paramRefs lists the param names referenced in a string.
func paramRefs(s string) []string {
	if !strings.Contains(s, "$(params") {
		return nil
	}
	var out []string
	for _, m := range tektonParamRE.FindAllStringSubmatch(s, -1) {
		name := m[1]
		if name == "" {
			name = m[2]
		}
		out = append(out, name)
	}
	return out
}

// walkRefs calls fn with every scalar value under n, skipping mapping keys
// listed in skip.
func walkRefs(n *yaml.Node, fn func(*yaml.Node), skip map[string]bool) {
	switch n.Kind {
	case yaml.ScalarNode:
		fn(n)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if skip[n.Content[i].Value] {
				continue
			}
			walkRefs(n.Content[i+1], fn, skip)
		}
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, c := range n.Content {
			walkRefs(c, fn, skip)
		}
	}
}

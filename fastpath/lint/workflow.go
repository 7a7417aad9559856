package lint

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/rhysd/actionlint"
	"gopkg.in/yaml.v3"
)

// Check ids of the GitHub Actions supply-chain rules.
const (
	// CheckScriptInjection: an untrusted event field (a pull request's
	// title, a branch name, a comment) expanded into a shell script.
	CheckScriptInjection = "gha-script-injection"
	// CheckUnpinnedAction: a third-party action or reusable workflow used by
	// tag or branch, which its owner (or whoever takes over the repository)
	// can move.
	CheckUnpinnedAction = "gha-unpinned-action"
	// CheckWriteAll: permissions: write-all.
	CheckWriteAll = "gha-permissions-write-all"
	// CheckNoPermissions: no permissions block, so the token gets the
	// repository's default scopes.
	CheckNoPermissions = "gha-permissions-missing"
	// actionlintPrefix prefixes actionlint's own rule names.
	actionlintPrefix = "actionlint-"
)

// lintWorkflow runs actionlint's rules and sluice's supply-chain rules over
// one workflow, parsed once by actionlint.
func lintWorkflow(in *input) []Finding {
	w, errs := actionlint.Parse(in.content)
	if w != nil {
		rules := []actionlint.Rule{
			actionlint.NewRuleMatrix(),
			actionlint.NewRuleCredentials(),
			actionlint.NewRuleShellName(),
			actionlint.NewRuleRunnerLabel(),
			actionlint.NewRuleEvents(),
			actionlint.NewRuleJobNeeds(),
			actionlint.NewRuleAction(actionlint.NewLocalActionsCache(nil, nil)),
			actionlint.NewRuleEnvVar(),
			actionlint.NewRuleID(),
			actionlint.NewRuleGlob(),
			actionlint.NewRulePermissions(),
			actionlint.NewRuleWorkflowCall(in.path, actionlint.NewLocalReusableWorkflowCache(nil, "", nil)),
			actionlint.NewRuleExpression(actionlint.NewLocalActionsCache(nil, nil), actionlint.NewLocalReusableWorkflowCache(nil, "", nil)),
			actionlint.NewRuleDeprecatedCommands(),
			actionlint.NewRuleIfCond(),
		}
		v := actionlint.NewVisitor()
		for _, r := range rules {
			v.AddPass(r)
		}
		if err := v.Visit(w); err != nil {
			errs = append(errs, &actionlint.Error{Message: "could not check: " + err.Error(), Line: 1, Kind: "internal"})
		}
		for _, r := range rules {
			errs = append(errs, r.Errs()...)
		}
	}
	var out []Finding
	for _, e := range errs {
		out = append(out, fromActionlint(in.path, e))
	}
	if w != nil {
		out = append(out, pinning(in.path, w)...)
		out = append(out, permissions(in.path, w)...)
	}
	return out
}

func fromActionlint(file string, e *actionlint.Error) Finding {
	f := Finding{
		Check: actionlintPrefix + e.Kind, Severity: Medium, File: file, Line: e.Line, Column: e.Column,
		Message: e.Message, Kind: Workflow,
	}
	switch {
	case e.Kind == "syntax-check" && strings.HasPrefix(e.Message, "could not parse as YAML"):
		f.Check, f.Severity = CheckYAMLSyntax, High
		f.Message = "not valid YAML: " + strings.TrimPrefix(e.Message, "could not parse as YAML: ") + "; fix the syntax so that the workflow can be checked"
	case e.Kind == "expression" && strings.Contains(e.Message, "potentially untrusted"):
		f.Check, f.Severity = CheckScriptInjection, High
	}
	if f.Line == 0 {
		f.Line = 1
	}
	return f
}

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

// unpinned says why a `uses:` value is not pinned, or "" when it is (a
// full commit SHA, a local path, an image by digest) or cannot be told.
func unpinned(uses string) string {
	switch {
	case uses == "" || strings.Contains(uses, "${{"):
		return ""
	case strings.HasPrefix(uses, "./") || strings.HasPrefix(uses, "../"):
		return ""
	case strings.HasPrefix(uses, "docker://"):
		if strings.Contains(uses, "@sha256:") {
			return ""
		}
		return fmt.Sprintf("image %q is not pinned to a digest: its tag can be moved to another image. pin it: \"uses: docker://<image>@sha256:<digest>\"", uses)
	}
	name, ref, ok := strings.Cut(uses, "@")
	if !ok {
		return "" // actionlint reports the missing ref
	}
	if fullSHA.MatchString(ref) {
		return ""
	}
	return fmt.Sprintf("%q is not pinned to a full commit SHA: the %q ref can be moved to other code by whoever controls %s. pin it: \"uses: %s@<40-hex commit SHA> # %s\"", uses, ref, ownerRepo(name), name, ref)
}

func ownerRepo(name string) string {
	parts := strings.SplitN(name, "/", 3)
	if len(parts) >= 2 {
		return parts[0] + "/" + parts[1]
	}
	return name
}

func pinning(file string, w *actionlint.Workflow) []Finding {
	var out []Finding
	add := func(s *actionlint.String) {
		if s == nil {
			return
		}
		if why := unpinned(s.Value); why != "" {
			out = append(out, Finding{Check: CheckUnpinnedAction, Severity: Medium, File: file, Line: s.Pos.Line, Column: s.Pos.Col, Message: why, Kind: Workflow})
		}
	}
	for _, job := range w.Jobs {
		if job == nil {
			continue
		}
		if job.WorkflowCall != nil {
			add(job.WorkflowCall.Uses)
		}
		for _, st := range job.Steps {
			if st == nil {
				continue
			}
			if a, ok := st.Exec.(*actionlint.ExecAction); ok {
				add(a.Uses)
			}
		}
	}
	return out
}

func permissions(file string, w *actionlint.Workflow) []Finding {
	var out []Finding
	writeAll := func(p *actionlint.Permissions, where string) {
		if p == nil || p.All == nil || p.All.Value != "write-all" {
			return
		}
		out = append(out, Finding{
			Check: CheckWriteAll, Severity: High, File: file, Line: p.All.Pos.Line, Column: p.All.Pos.Col, Kind: Workflow,
			Message: fmt.Sprintf("\"permissions: write-all\" %s gives the GITHUB_TOKEN write access to every scope; grant only what is needed, e.g. \"permissions: {contents: read}\" and a write scope on the one job that needs it", where),
		})
	}
	writeAll(w.Permissions, "on the workflow")
	ids := make([]string, 0, len(w.Jobs))
	for id := range w.Jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var missing []string
	for _, id := range ids {
		job := w.Jobs[id]
		if job == nil {
			continue
		}
		writeAll(job.Permissions, fmt.Sprintf("on job %q", id))
		if job.Permissions == nil && job.WorkflowCall == nil {
			missing = append(missing, id)
		}
	}
	if w.Permissions == nil && len(missing) > 0 && !onlyWorkflowCall(w) {
		out = append(out, Finding{
			Check: CheckNoPermissions, Severity: Medium, File: file, Line: 1, Kind: Workflow,
			Message: fmt.Sprintf("no \"permissions\" block for the workflow or job(s) %s, so the GITHUB_TOKEN gets the repository's default scopes (write to most of them in older repositories); add \"permissions: {contents: read}\" at the top and grant more per job only where needed", strings.Join(quoteAll(missing), ", ")),
		})
	}
	return out
}

// onlyWorkflowCall reports whether a workflow runs only when called by
// another, whose permissions then apply.
func onlyWorkflowCall(w *actionlint.Workflow) bool {
	if len(w.On) == 0 {
		return false
	}
	for _, e := range w.On {
		if _, ok := e.(*actionlint.WorkflowCallEvent); !ok {
			return false
		}
	}
	return true
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

// lintAction checks an action's metadata (action.yml): pinning of the
// actions and images it uses, and untrusted inputs in composite run steps.
func lintAction(in *input) []Finding {
	if len(in.docs) == 0 || in.docs[0].root == nil {
		return nil
	}
	runs := get(in.docs[0].root, "runs")
	var out []Finding
	pin := func(n *yaml.Node) {
		if n == nil || n.Kind != yaml.ScalarNode {
			return
		}
		if why := unpinned(n.Value); why != "" {
			out = append(out, Finding{Check: CheckUnpinnedAction, Severity: Medium, File: in.path, Line: n.Line, Column: n.Column, Message: why, Kind: Action})
		}
	}
	if img := get(runs, "image"); img != nil && strings.HasPrefix(img.Value, "docker://") {
		pin(img)
	}
	steps := get(runs, "steps")
	if steps == nil || steps.Kind != yaml.SequenceNode {
		return out
	}
	for _, st := range steps.Content {
		pin(get(st, "uses"))
		if run := get(st, "run"); run != nil && run.Kind == yaml.ScalarNode {
			out = append(out, untrustedInScript(in.path, run)...)
		}
	}
	return out
}

// untrustedInScript finds untrusted inputs in the ${{ }} expressions of a
// run script, with actionlint's expression checker.
func untrustedInScript(file string, run *yaml.Node) []Finding {
	var out []Finding
	s := run.Value
	for off := 0; ; {
		i := strings.Index(s[off:], "${{")
		if i < 0 {
			break
		}
		start := off + i + 3
		expr, perr := actionlint.NewExprParser().Parse(actionlint.NewExprLexer(s[start:] + "}}"))
		off = start
		if perr != nil || expr == nil {
			continue
		}
		_, errs := actionlint.NewExprSemanticsChecker(true, nil).Check(expr)
		for _, e := range errs {
			if !strings.Contains(e.Message, "potentially untrusted") {
				continue
			}
			line := run.Line + strings.Count(s[:start], "\n")
			if run.Style == yaml.LiteralStyle || run.Style == yaml.FoldedStyle {
				line++
			}
			out = append(out, Finding{Check: CheckScriptInjection, Severity: High, File: file, Line: line, Message: e.Message, Kind: Action})
		}
	}
	return out
}

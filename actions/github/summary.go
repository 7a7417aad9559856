package github

import (
	"fmt"
	"html"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
)

// MaxSummaryFindings is how many findings the step summary lists; GitHub
// caps a step summary at 1 MiB. The rest are counted.
const MaxSummaryFindings = 200

// Summary renders the verdict as the Markdown of a step summary: the
// verdict, each control with its time against its budget, the findings,
// the deferred work, warnings and what was not checked. Every text that
// comes from the repository (file names, messages) is escaped.
func Summary(v *gate.Verdict) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	if v.Pass() {
		p("## sluice: :white_check_mark: pass\n\n")
	} else {
		var blockers []string
		for _, c := range v.Controls {
			if c.Blocks {
				blockers = append(blockers, "`"+c.Name+"`")
			}
		}
		p("## sluice: :x: fail (blocked by %s)\n\n", strings.Join(blockers, ", "))
	}
	ch := v.Change
	if ch.Mode == gate.RangeMode {
		p("Change: `%s..%s`, %s", shortSHA(ch.Base), shortSHA(ch.Head), plural(ch.Files, "file"))
		if ch.BaseSource != "" && ch.BaseSource != "--base" {
			p(" (base: %s)", md(ch.BaseSource))
		}
	} else {
		p("Change: paths, %s", plural(ch.Files, "file"))
	}
	p(". Policy: %s", md(v.Policy.Source))
	if v.Policy.Digest != "" {
		p(" (`%s`)", shortDigest(v.Policy.Digest))
	}
	p(".\n\n")

	p("| control | status | time / budget | findings | on overrun | on error |\n|---|---|---|---|---|---|\n")
	for _, c := range v.Controls {
		status := statusIcon(c) + " " + string(c.Status)
		if c.ModeApplied != "" && c.Status != budgets.Passed && c.Status != budgets.Failed {
			status += " (" + string(c.ModeApplied) + ")"
		}
		p("| `%s` | %s | %s / %s | %d | %s | %s |\n", c.Name, status, ms(c.DurationMS), ms(c.BudgetMS), len(c.Findings), c.OnOverrun, c.OnError)
	}
	for _, c := range v.Controls {
		if c.Reason != "" && c.Status != budgets.Passed && c.Status != budgets.Failed {
			p("\n> `%s`: %s\n", c.Name, md(c.Reason))
		}
	}

	total := 0
	for _, c := range v.Controls {
		total += len(c.Findings)
	}
	if total > 0 {
		p("\n### Findings (%d)\n\n| severity | control | rule | location | message |\n|---|---|---|---|---|\n", total)
		n := 0
		for _, c := range v.Controls {
			for _, f := range c.Findings {
				if n == MaxSummaryFindings {
					break
				}
				n++
				loc := md(f.File)
				if f.Line > 0 {
					loc = fmt.Sprintf("%s:%d", loc, f.Line)
				}
				msg := md(f.Message)
				if f.Redacted != "" {
					msg += " " + code(f.Redacted)
				}
				if !f.InChange {
					msg += " _(already present before this change)_"
				}
				p("| %s | `%s` | %s | %s | %s |\n", md(f.Severity), c.Name, code(f.Rule), loc, msg)
			}
		}
		if total > n {
			p("\n%d more findings are in the JSON verdict.\n", total-n)
		}
	}
	if len(v.Deferred) > 0 {
		p("\n### Deferred to the slow path (%d)\n\n| kind | subject | control | why | state |\n|---|---|---|---|---|\n", len(v.Deferred))
		for _, d := range v.Deferred {
			state := "enqueued as " + code(d.Job)
			if !d.Enqueued {
				state = md(d.Reason)
			}
			p("| %s | %s | `%s` | %s | %s |\n", md(d.Kind), code(d.Subject), d.Control, md(d.Why), state)
		}
	}
	if len(v.Warnings) > 0 {
		p("\n### Warnings\n\n")
		for _, w := range v.Warnings {
			p("- :warning: %s\n", md(w))
		}
	}
	var skipped []string
	for _, s := range v.Change.Skipped {
		skipped = append(skipped, md(s.File)+": "+md(s.Reason))
	}
	for _, c := range v.Controls {
		for _, s := range c.Skipped {
			skipped = append(skipped, md(s.File)+": `"+c.Name+"`: "+md(s.Reason))
		}
	}
	if len(skipped) > 0 {
		p("\n<details><summary>Not checked (%d)</summary>\n\n", len(skipped))
		for _, s := range skipped {
			p("- %s\n", s)
		}
		p("\n</details>\n")
	}
	return b.String()
}

func statusIcon(c gate.ControlRun) string {
	switch {
	case c.Status == budgets.Passed:
		return ":white_check_mark:"
	case c.Blocks:
		return ":x:"
	case c.Status == budgets.Deferred:
		return ":hourglass:"
	default:
		return ":warning:"
	}
}

// md escapes text from the repository for a Markdown table cell: HTML is
// neutralised, Markdown punctuation is backslash-escaped and line breaks
// become spaces.
func md(s string) string {
	s = html.EscapeString(s)
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\r', '\n', '\t':
			b.WriteByte(' ')
		case '\\', '`', '*', '_', '[', ']', '|', '#', '!', '~':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// code writes s as an inline code span that s cannot end early.
func code(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ", "|", "\\|").Replace(s)
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	// Code spans show their text literally, entities included.
	return fence + " " + s + " " + fence
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func shortDigest(s string) string {
	if len(s) > 19 {
		return s[:19]
	}
	return s
}

func ms(v int64) string { return (time.Duration(v) * time.Millisecond).String() }

// Package actions owns the CI front ends and the report formats a verdict is
// written in: text for people, JSON (the sluice.verdict/v1 contract), SARIF
// (actions/sarif) and JUnit (actions/junit). The front ends are its
// subpackages: actions/github (workflow commands, the event's range, check
// runs), actions/tekton (Task results) and actions/hook (the pre-push hook).
package actions

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/actions/junit"
	"github.com/sluice-ci/sluice/actions/sarif"
	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
)

// Formats are the names --format accepts.
var Formats = []string{"text", "json", "sarif", "junit"}

// Options shape the formats that name the tool.
type Options struct {
	// Version is sluice's version, written into SARIF (default "dev").
	Version string
}

// Write writes v in the named format with default options.
func Write(w io.Writer, format string, v *gate.Verdict) error {
	return WriteWith(w, format, v, Options{})
}

// WriteWith writes v in the named format.
func WriteWith(w io.Writer, format string, v *gate.Verdict, o Options) error {
	switch format {
	case "json":
		return WriteJSON(w, v)
	case "text", "":
		return WriteText(w, v)
	case "sarif":
		return sarif.Write(w, v, sarif.Options{Version: o.Version})
	case "junit":
		return junit.Write(w, v)
	}
	return fmt.Errorf("unknown format %q (want %s)", format, strings.Join(Formats, ", "))
}

// WriteJSON writes the verdict document, indented, with a final newline.
func WriteJSON(w io.Writer, v *gate.Verdict) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// WriteText writes the verdict for people: each control's status and time
// against its budget, findings as `file:line rule message`, deferred work,
// warnings and skipped files.
func WriteText(w io.Writer, v *gate.Verdict) error {
	tw := &errWriter{w: w}
	head := "PASS"
	if !v.Pass() {
		var blockers []string
		for _, c := range v.Controls {
			if c.Blocks {
				blockers = append(blockers, c.Name)
			}
		}
		head = "FAIL: blocked by " + strings.Join(blockers, ", ")
	}
	tw.printf("sluice check: %s\n", head)
	tw.printf("change: %s\n", describeChange(v.Change))
	pol := v.Policy.Source
	if v.Policy.Digest != "" {
		pol += " (" + short(v.Policy.Digest, 19) + ")"
	}
	tw.printf("policy: %s\n\n", pol)

	width := 8
	for _, c := range v.Controls {
		width = max(width, len(c.Name))
	}
	for _, c := range v.Controls {
		tw.printf("  %-*s  %-8s  %s / %s", width, c.Name, c.Status, fmtMS(c.DurationMS), fmtMS(c.BudgetMS))
		switch n := len(c.Findings); {
		case n == 1:
			tw.printf("  1 finding")
		case n > 1:
			tw.printf("  %d findings", n)
		}
		if c.Suppressed > 0 {
			tw.printf(", %d accepted by baseline", c.Suppressed)
		}
		if len(c.Skipped) > 0 {
			tw.printf(", %d skipped", len(c.Skipped))
		}
		tw.printf("\n")
		if c.Reason != "" && c.Status != budgets.Passed && c.Status != budgets.Failed {
			tw.printf("      %s\n", c.Reason)
		}
		for _, f := range c.Findings {
			loc := f.File
			if f.Line > 0 {
				loc = fmt.Sprintf("%s:%d", f.File, f.Line)
			}
			tw.printf("      %s %s %s", loc, f.Rule, f.Message)
			if f.Redacted != "" {
				tw.printf(" [%s]", f.Redacted)
			}
			tw.printf("\n")
		}
		for _, n := range c.Notes {
			tw.printf("      note: %s\n", n)
		}
	}
	if len(v.Deferred) > 0 {
		tw.printf("\ndeferred to the slow path:\n")
		for _, d := range v.Deferred {
			state := "enqueued as " + d.Job
			if !d.Enqueued {
				state = d.Reason
			}
			tw.printf("  %s %s (%s; %s): %s\n", d.Kind, d.Subject, d.Control, d.Why, state)
		}
	}
	if len(v.Warnings) > 0 {
		tw.printf("\nwarnings:\n")
		for _, m := range v.Warnings {
			tw.printf("  ! %s\n", m)
		}
	}
	skipped := v.Change.Skipped
	for _, c := range v.Controls {
		for _, s := range c.Skipped {
			skipped = append(skipped, gate.Skipped{File: s.File, Reason: c.Name + ": " + s.Reason})
		}
	}
	if len(skipped) > 0 {
		tw.printf("\nnot checked:\n")
		for _, s := range skipped {
			tw.printf("  %s: %s\n", s.File, s.Reason)
		}
	}
	return tw.err
}

func describeChange(c gate.ChangeInfo) string {
	files := fmt.Sprintf("%d files", c.Files)
	if c.Files == 1 {
		files = "1 file"
	}
	if c.Mode == gate.RangeMode {
		s := fmt.Sprintf("range %s..%s, %s", short(c.Base, 12), short(c.Head, 12), files)
		if c.BaseSource != "" && c.BaseSource != "--base" {
			s += " (base: " + c.BaseSource + ")"
		}
		return s
	}
	return fmt.Sprintf("paths %s, %s", strings.Join(c.Paths, " "), files)
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func fmtMS(ms int64) string {
	return (time.Duration(ms) * time.Millisecond).String()
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

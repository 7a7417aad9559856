package github

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-ci/sluice/gate"
)

// MaxAnnotations is how many findings become annotations; GitHub shows at
// most 10 error annotations per step and 50 per job, and the rest are in
// the summary and the JSON verdict.
const MaxAnnotations = 50

// Files are the report files a step wrote, named in its outputs.
type Files struct {
	Verdict string // the JSON verdict
	SARIF   string // SARIF, when written
}

// Outputs are the step outputs set from a verdict, by name.
func Outputs(v *gate.Verdict, files Files) map[string]string {
	total, blocking := 0, []string{}
	for _, c := range v.Controls {
		total += len(c.Findings)
		if c.Blocks {
			blocking = append(blocking, c.Name)
		}
	}
	out := map[string]string{
		"verdict":           v.Verdict,
		"findings":          strconv.Itoa(total),
		"blocking-controls": strings.Join(blocking, ","),
		"deferred":          strconv.Itoa(len(v.Deferred)),
		"warnings":          strconv.Itoa(len(v.Warnings)),
	}
	if files.Verdict != "" {
		out["verdict-file"] = files.Verdict
	}
	if files.SARIF != "" {
		out["sarif-file"] = files.SARIF
	}
	return out
}

// OutputNames are the names Outputs may set, in a stable order.
var OutputNames = []string{"verdict", "findings", "blocking-controls", "deferred", "warnings", "verdict-file", "sarif-file"}

// Annotations turns findings into annotations: blocking controls' findings
// are errors, others warnings; a finding already present before the change
// is a notice. At most MaxAnnotations are returned, with the count left out.
func Annotations(v *gate.Verdict) (out []Annotation, left int) {
	for _, c := range v.Controls {
		for _, f := range c.Findings {
			if len(out) == MaxAnnotations {
				left++
				continue
			}
			level := Warning
			if c.Blocks {
				level = Error
			}
			if !f.InChange {
				level = Notice
			}
			msg := f.Message
			if f.Redacted != "" {
				msg += " (" + f.Redacted + ")"
			}
			out = append(out, Annotation{
				Level: level, File: f.File, Line: f.Line, Column: f.Column,
				Title:   fmt.Sprintf("sluice %s: %s (%s)", c.Name, f.Rule, f.Severity),
				Message: msg,
			})
		}
	}
	for _, w := range v.Warnings {
		out = append(out, Annotation{Level: Warning, Title: "sluice", Message: w})
	}
	return out, left
}

// Report writes a verdict to the runner: outputs, the step summary and
// annotations. It goes on after a failure and returns every error joined.
func (wf *Workflow) Report(v *gate.Verdict, files Files) error {
	var errs []error
	outs := Outputs(v, files)
	for _, name := range OutputNames {
		if val, ok := outs[name]; ok {
			errs = append(errs, wf.SetOutput(name, val))
		}
	}
	errs = append(errs, wf.AddSummary(Summary(v)))
	ans, left := Annotations(v)
	for _, a := range ans {
		errs = append(errs, wf.Annotate(a))
	}
	if left > 0 {
		errs = append(errs, wf.Annotate(Annotation{Level: Notice, Title: "sluice", Message: fmt.Sprintf("%d more findings are not annotated; see the step summary and the JSON verdict", left)}))
	}
	return errors.Join(errs...)
}

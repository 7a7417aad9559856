// Package junit writes a verdict as a JUnit XML report for Jenkins and any
// other CI that reads test reports: each control is a test suite holding a
// test case for the control's own run and one failing test case per
// finding; work deferred to the slow path is a skipped test case.
package junit

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
)

// Suites is the document root.
type Suites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Name     string   `xml:"name,attr"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Skipped  int      `xml:"skipped,attr"`
	Time     string   `xml:"time,attr"`
	Suites   []Suite  `xml:"testsuite"`
}

// Suite is one control, or the deferred work.
type Suite struct {
	Name       string      `xml:"name,attr"`
	Tests      int         `xml:"tests,attr"`
	Failures   int         `xml:"failures,attr"`
	Errors     int         `xml:"errors,attr"`
	Skipped    int         `xml:"skipped,attr"`
	Time       string      `xml:"time,attr"`
	Properties *Properties `xml:"properties,omitempty"`
	Cases      []Case      `xml:"testcase"`
	SystemOut  string      `xml:"system-out,omitempty"`
}

// Properties are a suite's name-value pairs.
type Properties struct {
	Items []Property `xml:"property"`
}

// Property is a name and value.
type Property struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// Case is one test case.
type Case struct {
	Name      string   `xml:"name,attr"`
	Classname string   `xml:"classname,attr"`
	Time      string   `xml:"time,attr"`
	File      string   `xml:"file,attr,omitempty"`
	Line      int      `xml:"line,attr,omitempty"`
	Failure   *Problem `xml:"failure,omitempty"`
	Error     *Problem `xml:"error,omitempty"`
	Skipped   *Problem `xml:"skipped,omitempty"`
}

// Problem is a failure, error or skip.
type Problem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// Write writes v as JUnit XML with a final newline.
func Write(w io.Writer, v *gate.Verdict) error {
	doc := Build(v)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("encoding JUnit XML: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// Build turns v into the JUnit document.
func Build(v *gate.Verdict) Suites {
	doc := Suites{Name: "sluice"}
	var totalMS int64
	for _, c := range v.Controls {
		s := Suite{
			Name: "sluice." + c.Name,
			Time: seconds(c.DurationMS),
			Properties: &Properties{[]Property{
				{"status", string(c.Status)}, {"budget", seconds(c.BudgetMS) + "s"},
				{"on_overrun", string(c.OnOverrun)}, {"on_error", string(c.OnError)},
				{"blocks", fmt.Sprint(c.Blocks)},
			}},
		}
		run := Case{Name: c.Name + " (" + string(c.Status) + ")", Classname: "sluice." + c.Name, Time: seconds(c.DurationMS)}
		msg := fmt.Sprintf("%s %s after %s of a %s budget: %s", c.Name, c.Status, seconds(c.DurationMS)+"s", seconds(c.BudgetMS)+"s", c.Reason)
		switch {
		case c.Status == budgets.Deferred:
			run.Skipped = &Problem{Message: msg}
		case (c.Status == budgets.Errored || c.Status == budgets.Overran) && c.Blocks:
			run.Error = &Problem{Message: msg, Type: string(c.Status)}
		case c.Status == budgets.Errored || c.Status == budgets.Overran:
			run.Skipped = &Problem{Message: msg}
		}
		s.Cases = append(s.Cases, run)
		for _, f := range c.Findings {
			loc := f.File
			if f.Line > 0 {
				loc = fmt.Sprintf("%s:%d", f.File, f.Line)
			}
			text := fmt.Sprintf("%s %s %s: %s", loc, f.Severity, f.Rule, f.Message)
			if f.Redacted != "" {
				text += " [" + f.Redacted + "]"
			}
			if !f.InChange {
				text += " (already present before this change)"
			}
			s.Cases = append(s.Cases, Case{
				Name: f.Rule + " " + loc, Classname: "sluice." + c.Name, Time: "0", File: f.File, Line: f.Line,
				Failure: &Problem{Message: f.Message, Type: f.Rule, Text: text},
			})
		}
		var out []string
		for _, sk := range c.Skipped {
			out = append(out, "not checked: "+sk.File+": "+sk.Reason)
		}
		for _, n := range c.Notes {
			out = append(out, "note: "+n)
		}
		s.SystemOut = strings.Join(out, "\n")
		count(&s)
		add(&doc, s)
		totalMS += c.DurationMS
	}
	if len(v.Deferred) > 0 {
		s := Suite{Name: "sluice.deferred", Time: "0"}
		for _, d := range v.Deferred {
			msg := fmt.Sprintf("deferred to the slow path (%s)", d.Why)
			if d.Enqueued {
				msg += "; job " + d.Job
			} else if d.Reason != "" {
				msg += "; " + d.Reason
			}
			s.Cases = append(s.Cases, Case{Name: d.Kind + " " + d.Subject, Classname: "sluice.deferred." + d.Control, Time: "0", Skipped: &Problem{Message: msg}})
		}
		count(&s)
		add(&doc, s)
	}
	doc.Time = seconds(totalMS)
	return doc
}

func count(s *Suite) {
	for _, c := range s.Cases {
		s.Tests++
		switch {
		case c.Failure != nil:
			s.Failures++
		case c.Error != nil:
			s.Errors++
		case c.Skipped != nil:
			s.Skipped++
		}
	}
}

func add(doc *Suites, s Suite) {
	doc.Suites = append(doc.Suites, s)
	doc.Tests += s.Tests
	doc.Failures += s.Failures
	doc.Errors += s.Errors
	doc.Skipped += s.Skipped
}

func seconds(ms int64) string {
	return fmt.Sprintf("%.3f", float64(ms)/1000)
}

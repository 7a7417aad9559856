package budgets

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Formats are the report formats Write knows.
var Formats = []string{"text", "json", "markdown", "html"}

// Write renders the report in format.
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "text":
		return r.WriteText(w)
	case "json":
		return r.WriteJSON(w)
	case "markdown":
		return r.WriteMarkdown(w)
	case "html":
		return r.WriteHTML(w)
	}
	return fmt.Errorf("unknown format %q (want %s)", format, strings.Join(Formats, ", "))
}

// WriteJSON writes the report as the sluice.budgets/v1 document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }

func age(msec int64) string {
	return (time.Duration(msec) * time.Millisecond).Round(time.Second).String()
}

// WriteText writes the report for a terminal.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "control budgets since %s (%s)\n\n", r.Since.UTC().Format(time.RFC3339), r.Store)
	if len(r.Controls) == 0 {
		fmt.Fprintln(ew, "no control runs recorded in the window (checks record them with --queue)")
	} else {
		tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CONTROL\tPATH\tRUNS\tP50\tP95\tP99\tBUDGET\tFAILURE\tOVERRUN\tDEFERRAL\tRETRIES")
		for _, c := range r.Controls {
			mark := ""
			if c.Over() {
				mark = "   over budget"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d%s\n", c.Control, c.Placement, c.Runs,
				ms(c.P50MS), ms(c.P95MS), ms(c.P99MS), ms(c.BudgetMS), pct(c.FailureRate), pct(c.OverrunRate), pct(c.DeferralRate), c.Retries, mark)
		}
		tw.Flush()
	}
	fmt.Fprintln(ew, "\nqueue:")
	for _, q := range r.Queue {
		oldest := "-"
		if q.Waiting+q.Running > 0 {
			oldest = age(q.OldestAgeMS)
		}
		fmt.Fprintf(ew, "  %-16s %d waiting, %d running, oldest %s\n", q.Kind, q.Waiting, q.Running, oldest)
	}
	e := r.Exposure
	fmt.Fprintf(ew, "\nexposure window (fast verdict to deep result): p50 %s, p95 %s, max %s over %d result(s)\n", ms(e.P50MS), ms(e.P95MS), ms(e.MaxMS), e.Closed)
	fmt.Fprintf(ew, "inside it now: %d artifact(s)\n", e.Open)
	for _, x := range e.Inside {
		fmt.Fprintf(ew, "  %s  %s %s (%s) for %s, %s\n", age(x.AgeMS), x.Kind, x.Subject, x.Control, x.Change, x.State)
	}
	if int64(len(e.Inside)) < e.Open {
		fmt.Fprintf(ew, "  ... and %d more\n", e.Open-int64(len(e.Inside)))
	}
	if len(r.OverBudget) > 0 {
		fmt.Fprintln(ew, "\nover budget:")
		for _, o := range r.OverBudget {
			fmt.Fprintf(ew, "  %s (%s): %s\n", o.Control, o.Placement, o.Advice)
		}
	}
	if len(r.Demoted) > 0 {
		fmt.Fprintln(ew, "\ndemoted to the slow path (sluice budgets restore CONTROL moves one back):")
		for _, m := range r.Demoted {
			fmt.Fprintf(ew, "  %s since %s: %s\n", m.Control, m.At.UTC().Format(time.RFC3339), m.Reason)
		}
	}
	if len(r.Moves) > 0 {
		fmt.Fprintln(ew, "\nmoves in the window:")
		for _, m := range r.Moves {
			fmt.Fprintf(ew, "  %s %s %s (%s): %s\n", m.At.UTC().Format(time.RFC3339), m.Action, m.Control, m.By, m.Reason)
		}
	}
	return ew.err
}

// mermaidLabel makes a control name safe inside a Mermaid quoted string.
func mermaidLabel(s string) string {
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune(`"\\[],<>|`+"`", r) || r < ' ' {
			return '_'
		}
		return r
	}, s)
}

// mdCell makes a value safe inside a Markdown table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "<", "&lt;")
	s = strings.ReplaceAll(s, ">", "&gt;")
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "`", "'")
}

// WriteMarkdown writes the report for a GitHub step summary: tables, and a
// Mermaid bar chart of p95 against budget per control for each placement
// (Mermaid renders in step summaries and comments).
func (r *Report) WriteMarkdown(w io.Writer) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "## sluice budgets\n\nControl runs since %s.\n\n", r.Since.UTC().Format(time.RFC3339))
	for _, placement := range []string{"fast", "slow"} {
		var cs []ControlFigures
		for _, c := range r.Controls {
			if c.Placement == placement {
				cs = append(cs, c)
			}
		}
		if len(cs) == 0 {
			continue
		}
		top := int64(1)
		labels, p95s, buds := make([]string, len(cs)), make([]string, len(cs)), make([]string, len(cs))
		for i, c := range cs {
			top = max(top, c.P95MS, c.BudgetMS)
			labels[i] = `"` + mermaidLabel(c.Control) + `"`
			p95s[i], buds[i] = fmt.Sprint(c.P95MS), fmt.Sprint(c.BudgetMS)
		}
		fmt.Fprintf(ew, "```mermaid\nxychart-beta\n    title \"%s path: p95 (bars) against budget (line), ms\"\n", placement)
		fmt.Fprintf(ew, "    x-axis [%s]\n    y-axis \"ms\" 0 --> %d\n    bar [%s]\n    line [%s]\n```\n\n",
			strings.Join(labels, ", "), top+top/10, strings.Join(p95s, ", "), strings.Join(buds, ", "))
	}
	if len(r.Controls) == 0 {
		fmt.Fprint(ew, "No control runs recorded in the window.\n\n")
	} else {
		fmt.Fprint(ew, "| control | path | runs | p50 | p95 | p99 | budget | failure | overrun | deferral | retries |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, c := range r.Controls {
			p95 := ms(c.P95MS)
			if c.Over() {
				p95 = "**" + p95 + "** ⚠"
			}
			fmt.Fprintf(ew, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %d |\n", mdCell(c.Control), c.Placement, c.Runs,
				ms(c.P50MS), p95, ms(c.P99MS), ms(c.BudgetMS), pct(c.FailureRate), pct(c.OverrunRate), pct(c.DeferralRate), c.Retries)
		}
		fmt.Fprintln(ew)
	}
	if len(r.OverBudget) > 0 {
		fmt.Fprint(ew, "### Over budget\n\n")
		for _, o := range r.OverBudget {
			fmt.Fprintf(ew, "- **%s** (%s): %s\n", mdCell(o.Control), o.Placement, mdCell(o.Advice))
		}
		fmt.Fprintln(ew)
	}
	if len(r.Demoted) > 0 {
		fmt.Fprint(ew, "### Demoted to the slow path\n\n")
		for _, m := range r.Demoted {
			fmt.Fprintf(ew, "- **%s** since %s: %s\n", mdCell(m.Control), m.At.UTC().Format(time.RFC3339), mdCell(m.Reason))
		}
		fmt.Fprintln(ew)
	}
	e := r.Exposure
	fmt.Fprintf(ew, "### Exposure window\n\nFast verdict to deep result: p50 %s, p95 %s, max %s over %d result(s). Inside it now: %d artifact(s).\n\n",
		ms(e.P50MS), ms(e.P95MS), ms(e.MaxMS), e.Closed, e.Open)
	if len(e.Inside) > 0 {
		fmt.Fprint(ew, "| age | kind | subject | control | change | state |\n|--:|---|---|---|---|---|\n")
		for _, x := range e.Inside {
			fmt.Fprintf(ew, "| %s | %s | `%s` | %s | `%s` | %s |\n", age(x.AgeMS), mdCell(x.Kind), mdCell(x.Subject), mdCell(x.Control), mdCell(x.Change), x.State)
		}
		fmt.Fprintln(ew)
	}
	fmt.Fprint(ew, "### Queue\n\n| kind | waiting | running | oldest |\n|---|--:|--:|--:|\n")
	for _, q := range r.Queue {
		oldest := "-"
		if q.Waiting+q.Running > 0 {
			oldest = age(q.OldestAgeMS)
		}
		fmt.Fprintf(ew, "| %s | %d | %d | %s |\n", mdCell(q.Kind), q.Waiting, q.Running, oldest)
	}
	return ew.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// bar is one control's row in the HTML chart.
type bar struct {
	Label             string
	Y                 int
	Y2, P95W, BudgetX int
	TextX             int
	Over              bool
	P95, Budget       string
}

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms": ms, "pct": pct, "age": age,
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sluice budgets</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}.over{color:#b00;font-weight:bold}
</style></head><body>
<h1>sluice budgets</h1>
<p>Control runs since {{rfc3339 .R.Since}} ({{.R.Store}}).</p>
{{range .Charts}}<h2>{{.Placement}} path: p95 against budget</h2>
<p>Bars: p95 (red when over budget). Black mark: the budget. Scale: 0 to {{.Top}}.</p>
<svg xmlns="http://www.w3.org/2000/svg" width="800" height="{{.Height}}" role="img" aria-label="{{.Placement}} path p95 against budget">
{{range .Bars}}<text x="0" y="{{.Y}}" dy="14" font-size="13">{{.Label}}</text>
<rect x="160" y="{{.Y}}" width="400" height="18" fill="#eee"/>
<rect x="160" y="{{.Y}}" width="{{.P95W}}" height="18" fill="{{if .Over}}#d9534f{{else}}#5b9bd5{{end}}"/>
<line x1="{{.BudgetX}}" x2="{{.BudgetX}}" y1="{{.Y}}" y2="{{.Y2}}" stroke="#222" stroke-width="2"/>
<text x="{{.TextX}}" y="{{.Y}}" dy="14" font-size="12">p95 {{.P95}} / budget {{.Budget}}</text>
{{end}}</svg>
{{end}}
<h2>Controls</h2>
<table><tr><th>control</th><th>path</th><th>runs</th><th>p50</th><th>p95</th><th>p99</th><th>budget</th><th>failure</th><th>overrun</th><th>deferral</th><th>retries</th></tr>
{{range .R.Controls}}<tr><td>{{.Control}}</td><td>{{.Placement}}</td><td>{{.Runs}}</td><td>{{ms .P50MS}}</td><td{{if .Over}} class="over"{{end}}>{{ms .P95MS}}</td><td>{{ms .P99MS}}</td><td>{{ms .BudgetMS}}</td><td>{{pct .FailureRate}}</td><td>{{pct .OverrunRate}}</td><td>{{pct .DeferralRate}}</td><td>{{.Retries}}</td></tr>
{{end}}</table>
{{if .R.OverBudget}}<h2>Over budget</h2><ul>{{range .R.OverBudget}}<li><b>{{.Control}}</b> ({{.Placement}}): {{.Advice}}</li>{{end}}</ul>{{end}}
{{if .R.Demoted}}<h2>Demoted to the slow path</h2><ul>{{range .R.Demoted}}<li><b>{{.Control}}</b> since {{rfc3339 .At}}: {{.Reason}}</li>{{end}}</ul>{{end}}
<h2>Exposure window</h2>
<p>Fast verdict to deep result: p50 {{ms .R.Exposure.P50MS}}, p95 {{ms .R.Exposure.P95MS}}, max {{ms .R.Exposure.MaxMS}} over {{.R.Exposure.Closed}} result(s). Inside it now: {{.R.Exposure.Open}} artifact(s).</p>
{{if .R.Exposure.Inside}}<table><tr><th>subject</th><th>kind</th><th>control</th><th>change</th><th>state</th><th>age</th></tr>
{{range .R.Exposure.Inside}}<tr><td>{{.Subject}}</td><td>{{.Kind}}</td><td>{{.Control}}</td><td>{{.Change}}</td><td>{{.State}}</td><td>{{age .AgeMS}}</td></tr>
{{end}}</table>{{end}}
<h2>Queue</h2>
<table><tr><th>kind</th><th>waiting</th><th>running</th><th>oldest</th></tr>
{{range .R.Queue}}<tr><td>{{.Kind}}</td><td>{{.Waiting}}</td><td>{{.Running}}</td><td>{{if or .Waiting .Running}}{{age .OldestAgeMS}}{{else}}-{{end}}</td></tr>
{{end}}</table>
</body></html>
`))

// WriteHTML writes a self-contained HTML page (inline SVG charts, inline
// style, no scripts or external assets).
func (r *Report) WriteHTML(w io.Writer) error {
	type chart struct {
		Placement string
		Top       string
		Height    int
		Bars      []bar
	}
	var charts []chart
	for _, placement := range []string{"fast", "slow"} {
		var cs []ControlFigures
		top := int64(1)
		for _, c := range r.Controls {
			if c.Placement == placement {
				cs = append(cs, c)
				top = max(top, c.P95MS, c.BudgetMS)
			}
		}
		if len(cs) == 0 {
			continue
		}
		const span = 400
		ch := chart{Placement: placement, Top: ms(top), Height: 26*len(cs) + 4}
		for i, c := range cs {
			y := 2 + 26*i
			ch.Bars = append(ch.Bars, bar{
				Label: c.Control, Y: y, Over: c.Over(),
				Y2: y + 18, P95W: int(c.P95MS * span / top), BudgetX: 160 + int(c.BudgetMS*span/top), TextX: 160 + span + 16,
				P95: ms(c.P95MS), Budget: ms(c.BudgetMS),
			})
		}
		charts = append(charts, ch)
	}
	return htmlReport.Execute(w, struct {
		R      *Report
		Charts []chart
	}{r, charts})
}

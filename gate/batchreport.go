package gate

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// BatchFormats are the formats a batch plan is written in.
var BatchFormats = []string{"text", "json", "markdown"}

// WriteBatch writes the plan in the named format.
func WriteBatch(w io.Writer, format string, p *BatchPlan) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(p)
	case "markdown":
		return writeBatchMarkdown(w, p)
	case "text", "":
		return writeBatchText(w, p)
	}
	return fmt.Errorf("unknown format %q (want %s)", format, strings.Join(BatchFormats, ", "))
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

func policyLine(p PolicyInfo) string {
	s := p.Source
	if p.Digest != "" {
		s += " (" + p.Digest + ")"
	}
	if p.Org != nil {
		s += "; organisation policy " + p.Org.Source
	}
	return s
}

func changeLabel(pc PlannedChange) string {
	s := pc.ID
	if pc.Title != "" {
		s += " " + fmt.Sprintf("%q", pc.Title)
	}
	return s
}

func writeBatchText(w io.Writer, p *BatchPlan) error {
	tw := &errWriter{w: w}
	tw.printf("sluice batch: %s\n", strings.ToUpper(p.Outcome))
	tw.printf("changes: %s\n", p.Source)
	tw.printf("policy: %s\n", policyLine(p.Policy))
	for _, b := range p.Batches {
		tw.printf("\nbatch %d (%d change(s), %d high-impact)\n", b.Number, len(b.Changes), b.HighImpact)
		for _, c := range b.Changes {
			tw.printf("  %s\n", changeLabel(c))
			tw.printf("    %s; deployability %d\n", strings.Join(c.Reasons, "; "), c.Deployability.Score)
			for _, r := range c.Deployability.Reasons {
				tw.printf("      %s\n", r)
			}
		}
	}
	if len(p.Held) > 0 {
		tw.printf("\nheld back (%d)\n", len(p.Held))
		for _, c := range p.Held {
			tw.printf("  %s: category %s (%s impact), deployability %d\n", changeLabel(c), c.Category, c.Impact, c.Deployability.Score)
			for _, r := range c.Reasons {
				tw.printf("    - %s\n", r)
			}
		}
	}
	writeDebtText(tw, p.Debt)
	return tw.err
}

func writeDebtText(tw *errWriter, d DebtReport) {
	for _, s := range []struct {
		title string
		list  []Debt
	}{{"outstanding debt", d.Outstanding}, {"debt cleared", d.Cleared}, {"debt recorded", d.Recorded}} {
		if len(s.list) == 0 {
			continue
		}
		tw.printf("\n%s (%d)\n", s.title, len(s.list))
		for _, x := range s.list {
			tw.printf("  - %s\n", x)
		}
	}
}

// mdEscape makes untrusted text (titles, paths) inert in Markdown: no
// table breaks, links, HTML or emphasis.
func mdEscape(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune("\\`*_{}[]<>#!|~&", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func writeBatchMarkdown(w io.Writer, p *BatchPlan) error {
	tw := &errWriter{w: w}
	tw.printf("## sluice batch: %s\n\n", p.Outcome)
	tw.printf("Changes: %s  \nPolicy: %s\n", mdEscape(p.Source), mdEscape(policyLine(p.Policy)))
	for _, b := range p.Batches {
		tw.printf("\n### Batch %d\n\n", b.Number)
		tw.printf("| change | category | impact | deployability | why here |\n| --- | --- | --- | --- | --- |\n")
		for _, c := range b.Changes {
			tw.printf("| %s | %s | %s | %d | %s |\n", mdEscape(changeLabel(c)), mdEscape(c.Category), c.Impact,
				c.Deployability.Score, mdEscape(strings.Join(append(slicesClone(c.Reasons), c.Deployability.Reasons...), "; ")))
		}
	}
	if len(p.Held) > 0 {
		tw.printf("\n### Held back\n\n| change | category | impact | deployability | why |\n| --- | --- | --- | --- | --- |\n")
		for _, c := range p.Held {
			tw.printf("| %s | %s | %s | %d | %s |\n", mdEscape(changeLabel(c)), mdEscape(c.Category), c.Impact,
				c.Deployability.Score, mdEscape(strings.Join(c.Reasons, "; ")))
		}
	}
	for _, s := range []struct {
		title string
		list  []Debt
	}{{"Outstanding debt", p.Debt.Outstanding}, {"Debt cleared", p.Debt.Cleared}, {"Debt recorded", p.Debt.Recorded}} {
		if len(s.list) == 0 {
			continue
		}
		tw.printf("\n### %s\n\n", s.title)
		for _, x := range s.list {
			tw.printf("- %s\n", mdEscape(x.String()))
		}
	}
	return tw.err
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

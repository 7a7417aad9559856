// Package sarif writes a verdict as a SARIF 2.1.0 log that GitHub code
// scanning accepts: one run, one rule per control and rule id, locations
// relative to the repository root through the %SRCROOT% base id, partial
// fingerprints, and severities mapped to SARIF levels and to GitHub's
// security-severity. It is built with github.com/owenrumney/go-sarif.
package sarif

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strings"

	gosarif "github.com/owenrumney/go-sarif/v2/sarif"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
)

// SrcRoot is the uriBaseId every location is relative to.
const SrcRoot = "%SRCROOT%"

// FingerprintKey names sluice's entry in partialFingerprints.
const FingerprintKey = "sluiceFindingHash/v1"

// Limits are what GitHub code scanning accepts in one upload; see
// https://docs.github.com/en/code-security/code-scanning/integrating-with-code-scanning/sarif-support-for-code-scanning
type Limits struct {
	// Results is the most results kept in a run (GitHub: 25,000); the
	// rest are dropped with a notification saying how many.
	Results int
	// Rules is the most rules in a run (GitHub: 25,000).
	Rules int
	// Message is the longest result message kept, in bytes.
	Message int
}

// GitHubLimits are GitHub code scanning's documented upload limits.
var GitHubLimits = Limits{Results: 25000, Rules: 25000, Message: 8000}

// Options shape the log. The zero value uses GitHubLimits and version "dev".
type Options struct {
	Limits Limits
	// Version is sluice's version, written as the driver's version.
	Version string
	// InformationURI is the tool's home page.
	InformationURI string
}

// Write writes v as a SARIF 2.1.0 log, indented, with a final newline.
func Write(w io.Writer, v *gate.Verdict, o Options) error {
	rep, err := Build(v, o)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding SARIF: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Build turns v into a SARIF report of one run.
func Build(v *gate.Verdict, o Options) (*gosarif.Report, error) {
	if o.Limits == (Limits{}) {
		o.Limits = GitHubLimits
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.InformationURI == "" {
		o.InformationURI = "https://github.com/sluice-ci/sluice"
	}
	rep, err := gosarif.New(gosarif.Version210)
	if err != nil {
		return nil, fmt.Errorf("starting SARIF report: %w", err)
	}
	driver := gosarif.NewVersionedDriver("sluice", o.Version).WithInformationURI(o.InformationURI)
	driver.Rules = []*gosarif.ReportingDescriptor{}
	run := gosarif.NewRun(*gosarif.NewTool(driver))
	run.Results = []*gosarif.Result{}
	if v.Change.Root != "" {
		run.WithOriginalUriBaseIds(map[string]*gosarif.ArtifactLocation{
			SrcRoot: gosarif.NewArtifactLocation().WithUri(rootURI(v.Change.Root)),
		})
	}
	type item struct {
		control string
		f       gate.Finding
	}
	var items []item
	for _, c := range v.Controls {
		for _, f := range c.Findings {
			items = append(items, item{c.Name, f})
		}
	}
	slices.SortStableFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.control, b.control), cmp.Compare(a.f.File, b.f.File), cmp.Compare(a.f.Line, b.f.Line),
			cmp.Compare(a.f.Column, b.f.Column), cmp.Compare(a.f.Rule, b.f.Rule))
	})

	// A finding on no file (an unsigned image) is placed on the policy
	// file, since GitHub code scanning needs a location on every result.
	fallback := policyFile(v)

	rules := map[string]int{}
	var notes []*gosarif.Notification
	dropped := 0
	for _, it := range items {
		id := RuleID(it.control, it.f.Rule)
		idx, ok := rules[id]
		if !ok {
			if len(rules) >= o.Limits.Rules || len(run.Results) >= o.Limits.Results {
				dropped++
				continue
			}
			idx = len(driver.Rules)
			rules[id] = idx
			driver.AddRule(rule(id, it.control, it.f))
		}
		if len(run.Results) >= o.Limits.Results {
			dropped++
			continue
		}
		f := it.f
		if f.File == "" && fallback != "" {
			f.File, f.Line, f.Column = fallback, 1, 0
		}
		run.AddResult(result(id, idx, it.control, f, o.Limits.Message))
	}
	if dropped > 0 {
		notes = append(notes, gosarif.NewNotification().WithLevel("warning").WithTextMessage(fmt.Sprintf(
			"truncated: %d of %d results were left out to stay within GitHub code scanning's limits (%d results, %d rules per run); the JSON verdict lists them all",
			dropped, len(items), o.Limits.Results, o.Limits.Rules)))
	}

	ok := true
	for _, c := range v.Controls {
		switch c.Status {
		case budgets.Errored, budgets.Overran, budgets.Deferred:
			level := "warning"
			if c.Blocks {
				level = "error"
			}
			if c.Status == budgets.Errored {
				ok = false
			}
			notes = append(notes, gosarif.NewNotification().WithLevel(level).WithTextMessage(fmt.Sprintf("%s %s: %s", c.Name, c.Status, c.Reason)))
		}
	}
	for _, d := range v.Deferred {
		msg := fmt.Sprintf("deferred to the slow path: %s %s (%s)", d.Kind, d.Subject, d.Why)
		if !d.Enqueued && d.Reason != "" {
			msg += ": " + d.Reason
		}
		notes = append(notes, gosarif.NewNotification().WithLevel("note").WithTextMessage(msg))
	}
	for _, w := range v.Warnings {
		notes = append(notes, gosarif.NewNotification().WithLevel("warning").WithTextMessage(w))
	}
	inv := run.AddInvocation(ok)
	if len(notes) > 0 {
		inv.WithToolExecutionNotifications(notes)
	}
	inv.PropertyBag = *gosarif.NewPropertyBag()
	inv.Add("verdict", v.Verdict)
	rep.AddRun(run)
	return rep, nil
}

// RuleID is the stable SARIF rule id of a control's rule: "control/rule".
func RuleID(control, rule string) string {
	if rule == "" {
		rule = "finding"
	}
	return control + "/" + rule
}

// Level maps a sluice severity to a SARIF level.
func Level(severity string) string {
	switch strings.ToUpper(severity) {
	case "CRITICAL", "HIGH":
		return "error"
	case "MEDIUM":
		return "warning"
	default:
		return "note"
	}
}

// SecuritySeverity maps a sluice severity to the score GitHub reads from
// a rule's security-severity property (critical above 9.0, high 7.0 to 8.9,
// medium 4.0 to 6.9, low below).
func SecuritySeverity(severity string) string {
	switch strings.ToUpper(severity) {
	case "CRITICAL":
		return "9.5"
	case "HIGH":
		return "8.0"
	case "MEDIUM":
		return "5.5"
	default:
		return "2.0"
	}
}

func rule(id, control string, f gate.Finding) *gosarif.ReportingDescriptor {
	r := gosarif.NewRule(id).WithName(ruleName(f.Rule)).WithDescription(fmt.Sprintf("%s: %s", control, f.Rule))
	r.DefaultConfiguration = &gosarif.ReportingConfiguration{Level: Level(f.Severity)}
	r.Properties = gosarif.Properties{
		"tags":              []string{"security", control},
		"security-severity": SecuritySeverity(f.Severity),
		"precision":         "high",
	}
	return r
}

// ruleName is the rule id in PascalCase, as SARIF suggests for names.
func ruleName(rule string) string {
	var b strings.Builder
	up := true
	for _, r := range rule {
		switch {
		case r == '-' || r == '_' || r == '.' || r == '/' || r == ' ':
			up = true
		case up:
			b.WriteString(strings.ToUpper(string(r)))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "Finding"
	}
	return b.String()
}

func result(id string, idx int, control string, f gate.Finding, maxMsg int) *gosarif.Result {
	msg := f.Message
	if f.Redacted != "" {
		msg += " (" + f.Redacted + ")"
	}
	if !f.InChange {
		msg += " [already present before this change]"
	}
	if len(msg) > maxMsg {
		msg = msg[:maxMsg] + "…"
	}
	r := gosarif.NewRuleResult(id).WithRuleIndex(idx).WithLevel(Level(f.Severity)).WithMessage(gosarif.NewTextMessage(msg))
	if f.File != "" {
		loc := gosarif.NewArtifactLocation().WithUri(fileURI(f.File)).WithUriBaseId(SrcRoot)
		pl := gosarif.NewPhysicalLocation().WithArtifactLocation(loc)
		if f.Line > 0 {
			reg := gosarif.NewRegion().WithStartLine(f.Line)
			if f.Column > 0 {
				reg.WithStartColumn(f.Column)
			}
			pl.WithRegion(reg)
		}
		r.AddLocation(gosarif.NewLocationWithPhysicalLocation(pl))
	}
	r.WithPartialFingerPrints(map[string]any{FingerprintKey: fingerprint(control, f)})
	r.PropertyBag = *gosarif.NewPropertyBag()
	r.Add("severity", f.Severity)
	r.Add("control", control)
	r.Add("inChange", f.InChange)
	return r
}

// fingerprint is the finding's own when it has one (stable across line
// moves for secrets), else a hash of what identifies it.
func fingerprint(control string, f gate.Finding) string {
	if f.Fingerprint != "" {
		return f.Fingerprint
	}
	return hashOf(control, f.Rule, f.File, fmt.Sprint(f.Line), f.Message)
}

// policyFile is the policy's path relative to the scanned root, when it is
// a file under it.
func policyFile(v *gate.Verdict) string {
	src, root := v.Policy.Source, v.Change.Root
	if src == "" || src == "defaults" || root == "" {
		return ""
	}
	rel, err := filepath.Rel(root, src)
	if err != nil || !filepath.IsLocal(rel) {
		return ""
	}
	return filepath.ToSlash(rel)
}

// fileURI escapes a slash path as a relative URI reference.
func fileURI(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(url.PathEscape(s), ":", "%3A")
	}
	return strings.Join(parts, "/")
}

// rootURI is the file: URI of the scanned root, ending in a slash as SARIF
// requires of a base.
func rootURI(root string) string {
	u := url.URL{Scheme: "file", Path: path.Clean("/" + strings.ReplaceAll(root, "\\", "/"))}
	s := u.String()
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	return s
}

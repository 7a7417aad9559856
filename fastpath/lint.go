package fastpath

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/fastpath/lint"
	"github.com/sluice-ci/sluice/gate"
)

// LintOptions are the lint control's keys in the policy.
type LintOptions struct {
	// Severity is the lowest severity reported as a finding (LOW, MEDIUM,
	// HIGH or CRITICAL); findings below it are counted in the notes.
	// Default MEDIUM.
	Severity string `yaml:"severity"`
	// Allow suppresses a check, in some files or all.
	Allow []LintAllow `yaml:"allow"`
	// ChecksBundle is a folder of Rego checks (an unpacked Trivy checks
	// bundle) used instead of those embedded in sluice; relative to the
	// policy file. Nothing is ever downloaded.
	ChecksBundle string `yaml:"checks_bundle"`
}

// LintAllow accepts a check's findings, with a reason and an optional
// expiry: after the expiry date its findings are reported again.
type LintAllow struct {
	Check string `yaml:"check"`
	// Paths are globs (`**` matches folders) of the files it applies to;
	// none means every file.
	Paths   []string  `yaml:"paths"`
	Reason  string    `yaml:"reason"`
	Expires gate.Date `yaml:"expires"`
}

func newLintOptions() *LintOptions { return &LintOptions{Severity: lint.Medium} }

// LintSpec describes the lint control: on by default, fast, 20s (the first
// run with IaC files compiles Trivy's checks, about a second or two),
// deferred to the slow path on overrun, blocking on error.
func LintSpec() gate.Spec {
	return gate.Spec{
		Name:       "lint",
		Placement:  gate.Fast,
		Budget:     budgets.Budget{Time: 20 * time.Second, OnOverrun: budgets.Defer, OnError: budgets.FailClosed},
		Enabled:    true,
		Kind:       "lint",
		NewOptions: func() any { return newLintOptions() },
		Build: func(opts any, env gate.Env) (gate.Control, error) {
			return NewLint(*opts.(*LintOptions), env)
		},
	}
}

// Lint is the lint control.
type Lint struct {
	opts   LintOptions
	minSev int
	linter *lint.Linter
	now    func() time.Time
}

// NewLint validates the options. It does not compile Trivy's checks: the
// first change with a file for them does.
func NewLint(o LintOptions, env gate.Env) (*Lint, error) {
	o.Severity = strings.ToUpper(strings.TrimSpace(o.Severity))
	if o.Severity == "" {
		o.Severity = lint.Medium
	}
	rank := lint.SeverityRank(o.Severity)
	if rank == 0 {
		return nil, &gate.FieldError{Field: "severity", Err: fmt.Errorf("unknown severity %q (want LOW, MEDIUM, HIGH or CRITICAL)", o.Severity)}
	}
	for i, a := range o.Allow {
		field := fmt.Sprintf("allow[%d]", i)
		switch {
		case strings.TrimSpace(a.Check) == "":
			return nil, &gate.FieldError{Field: field + ".check", Err: errors.New("missing; name the check id to allow (as findings show it, e.g. DS-0002 or gha-unpinned-action)")}
		case strings.TrimSpace(a.Reason) == "":
			return nil, &gate.FieldError{Field: field + ".reason", Err: errors.New("missing; say why this check's findings are accepted")}
		}
		for j, p := range a.Paths {
			if !doublestar.ValidatePattern(p) {
				return nil, &gate.FieldError{Field: fmt.Sprintf("%s.paths[%d]", field, j), Err: fmt.Errorf("bad glob %q", p)}
			}
		}
	}
	if o.ChecksBundle != "" {
		dir := env.Resolve(o.ChecksBundle)
		st, err := os.Stat(dir)
		switch {
		case err != nil:
			return nil, &gate.FieldError{Field: "checks_bundle", Err: fmt.Errorf("checks bundle %s: %w", dir, unwrapPath(err))}
		case !st.IsDir():
			return nil, &gate.FieldError{Field: "checks_bundle", Err: fmt.Errorf("checks bundle %s is not a folder; unpack the bundle and name its folder", dir)}
		}
		o.ChecksBundle = dir
	}
	l := &Lint{opts: o, minSev: rank, linter: lint.New(lint.Options{ChecksBundle: o.ChecksBundle}), now: env.Now}
	if l.now == nil {
		l.now = time.Now
	}
	return l, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Warm compiles Trivy's checks ahead of the first change that needs them.
func (l *Lint) Warm() error { return l.linter.Warm() }

// Run lints the change's files.
func (l *Lint) Run(ctx context.Context, ch *gate.Change) (gate.Result, error) {
	var res gate.Result
	rep, err := l.linter.Lint(ctx, ch)
	if err != nil {
		return res, err
	}
	res.Notes = append(res.Notes, rep.Notes...)
	byPath := make(map[string]*gate.File, len(ch.Files))
	for _, f := range ch.Files {
		byPath[f.Path] = f
	}
	now := l.now()
	used := make([]bool, len(l.opts.Allow))
	expired := make([]bool, len(l.opts.Allow))
	below := map[string]int{}
	for _, f := range rep.Findings {
		if i := l.allowed(f); i >= 0 {
			used[i] = true
			if !l.opts.Allow[i].Expires.Passed(now) {
				res.Suppressed++
				continue
			}
			expired[i] = true
		}
		if lint.SeverityRank(f.Severity) < l.minSev {
			below[f.Check]++
			continue
		}
		inChange := true
		if file := byPath[f.File]; file != nil {
			inChange = file.IsAdded(f.Line)
		}
		res.Findings = append(res.Findings, gate.Finding{
			Rule: f.Check, Severity: f.Severity, File: f.File, Line: f.Line, Column: f.Column,
			Message: f.Message, InChange: inChange,
		})
	}
	if len(below) > 0 {
		var parts []string
		n := 0
		for _, c := range slices.Sorted(maps.Keys(below)) {
			n += below[c]
			parts = append(parts, fmt.Sprintf("%s×%d", c, below[c]))
		}
		res.Notes = append(res.Notes, fmt.Sprintf("lint: %d finding(s) below %s not reported (%s); lower `severity` to see them", n, l.opts.Severity, strings.Join(parts, ", ")))
	}
	for i, a := range l.opts.Allow {
		switch {
		case expired[i]:
			res.Notes = append(res.Notes, fmt.Sprintf("lint: allow[%d] for %s expired on %s; its findings are reported again (reason was: %s)", i, a.Check, a.Expires.Format(time.DateOnly), a.Reason))
		case !used[i] && ch.Mode == gate.PathsMode:
			res.Notes = append(res.Notes, fmt.Sprintf("lint: allow[%d] for %s matched no finding; remove it if it is no longer needed", i, a.Check))
		}
	}
	return res, nil
}

// allowed returns the index of the allow entry matching a finding, or -1.
// An unexpired entry wins over an expired one.
func (l *Lint) allowed(f lint.Finding) int {
	match := -1
	for i, a := range l.opts.Allow {
		if !strings.EqualFold(a.Check, f.Check) {
			continue
		}
		if len(a.Paths) > 0 && !slices.ContainsFunc(a.Paths, func(p string) bool {
			ok, _ := doublestar.Match(p, f.File)
			return ok
		}) {
			continue
		}
		if !a.Expires.Passed(l.now()) {
			return i
		}
		if match < 0 {
			match = i
		}
	}
	return match
}

// Package lint finds misconfigurations in the configuration files a change
// touches: Dockerfiles, Kubernetes manifests, Helm charts, Terraform and
// CloudFormation with Trivy's embedded checks; GitHub Actions workflows with
// actionlint and sluice's supply-chain rules; Tekton tasks and pipelines
// with a small typed parse.
//
// Files are chosen by name before anything is read; YAML and JSON files are
// then read once, and their content decides their kind. Trivy's checks are
// compiled on the first change that has a file for them, never before, and
// only those for the kinds of file it has; Trivy's parsers make their
// input, sluice evaluates them (see checkSet).
package lint

import (
	"cmp"
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/sluice-ci/sluice/gate"
)

// Severities, lowest first. Findings carry one of these.
const (
	Low      = "LOW"
	Medium   = "MEDIUM"
	High     = "HIGH"
	Critical = "CRITICAL"
)

// SeverityRank orders severities: 0 for an unknown one, 1 for LOW up to 4
// for CRITICAL.
func SeverityRank(s string) int {
	switch strings.ToUpper(s) {
	case Low:
		return 1
	case Medium:
		return 2
	case High:
		return 3
	case Critical:
		return 4
	}
	return 0
}

// Kind is what a file is, as far as lint is concerned.
type Kind string

// The file kinds lint knows.
const (
	Dockerfile     Kind = "dockerfile"
	Kubernetes     Kind = "kubernetes"
	Helm           Kind = "helm"
	Terraform      Kind = "terraform"
	CloudFormation Kind = "cloudformation"
	Workflow       Kind = "github-workflow"
	Action         Kind = "github-action"
	Tekton         Kind = "tekton"
	// YAML is a YAML or JSON file of no kind lint checks: only its syntax is
	// checked.
	YAML Kind = "yaml"
)

// Finding is one problem lint found. Message says what to do.
type Finding struct {
	Check    string
	Severity string
	File     string
	Line     int
	Column   int
	Message  string
	Kind     Kind
}

// String formats a finding the way golden files hold it.
func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: [%s] %s %s", f.File, f.Line, f.Check, f.Severity, f.Message)
}

// Report is the outcome of linting a change.
type Report struct {
	Findings []Finding
	// Files counts the files linted, by kind.
	Files map[Kind]int
	// Notes are things worth knowing that are not findings (a chart whose
	// files could not all be read).
	Notes []string
}

// Options configure a Linter. The zero value uses Trivy's embedded checks.
type Options struct {
	// ChecksBundle is a directory of Rego checks (an unpacked Trivy checks
	// bundle) used instead of the checks embedded in Trivy; "" for the
	// embedded ones.
	ChecksBundle string
}

// Linter lints changes. It is safe for concurrent use; Trivy's checks are
// parsed once, on first need, compiled once per input type when first
// needed, and shared.
type Linter struct {
	opts Options
	// newEngine makes the Trivy engine; newTrivyEngine when nil.
	newEngine func(bundle string) (*trivyEngine, error)
	once      sync.Once
	trivy     *trivyEngine
	err       error
}

// New returns a Linter. It costs nothing until a change has a file for
// Trivy's checks.
func New(o Options) *Linter { return &Linter{opts: o} }

// engine starts compiling Trivy's checks the first time it is called; the
// engine waits for them when it first needs them.
func (l *Linter) engine() (*trivyEngine, error) {
	l.once.Do(func() {
		mk := l.newEngine
		if mk == nil {
			mk = newTrivyEngine
		}
		l.trivy, l.err = mk(l.opts.ChecksBundle)
	})
	return l.trivy, l.err
}

// Warm compiles Trivy's checks now rather than on first need.
func (l *Linter) Warm() error {
	e, err := l.engine()
	if err != nil {
		return err
	}
	return e.wait()
}

// Lint lints the files of a change. A returned error means the change could
// not be linted (a file could not be read); problems in files are findings.
func (l *Linter) Lint(ctx context.Context, ch *gate.Change) (*Report, error) {
	rep := &Report{Files: map[Kind]int{}}
	set, err := selectFiles(ctx, ch)
	if err != nil {
		return nil, err
	}
	if set.empty() {
		return rep, nil
	}
	if err := set.read(ctx, ch); err != nil {
		return nil, err
	}
	// Trivy's checks compile while the other files are linted.
	var eng *trivyEngine
	if set.hasIaC() {
		if eng, err = l.engine(); err != nil {
			return nil, err
		}
	}
	var iac []*input
	for _, in := range set.inputs {
		rep.Files[in.kind]++
		switch in.kind {
		case Workflow:
			rep.Findings = append(rep.Findings, lintWorkflow(in)...)
		case Action:
			rep.Findings = append(rep.Findings, lintAction(in)...)
		case Tekton:
			rep.Findings = append(rep.Findings, lintTekton(in)...)
		case YAML:
			// Syntax only, reported by sniffing.
		default:
			iac = append(iac, in)
		}
		rep.Findings = append(rep.Findings, in.syntax...)
	}
	for _, c := range set.charts {
		rep.Files[Helm]++
		rep.Findings = append(rep.Findings, c.checkSyntax()...)
	}
	if len(iac) > 0 || len(set.charts) > 0 {
		if eng == nil {
			if eng, err = l.engine(); err != nil {
				return nil, err
			}
		}
		fs, notes, err := eng.scan(ctx, iac, set.context, set.charts)
		if err != nil {
			return nil, err
		}
		rep.Findings = append(rep.Findings, fs...)
		rep.Notes = append(rep.Notes, notes...)
	}
	sortFindings(rep.Findings)
	rep.Findings = slices.CompactFunc(rep.Findings, func(a, b Finding) bool { return a == b })
	return rep, nil
}

// hasIaC says whether the set has a file for Trivy's checks.
func (s *fileSet) hasIaC() bool {
	if len(s.charts) > 0 {
		return true
	}
	for _, in := range s.inputs {
		switch in.kind {
		case Dockerfile, Kubernetes, Helm, Terraform, CloudFormation:
			return true
		}
	}
	return false
}

func sortFindings(fs []Finding) {
	slices.SortFunc(fs, func(a, b Finding) int {
		return cmp.Or(
			strings.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			strings.Compare(a.Check, b.Check),
			cmp.Compare(a.Column, b.Column),
			strings.Compare(a.Message, b.Message),
		)
	})
}

// input is one file selected for linting, read once and parsed lazily.
type input struct {
	file    *gate.File
	path    string
	kind    Kind
	content []byte
	// docs are the YAML documents, parsed once when the kind needs them.
	docs []*yamlDoc
	// syntax are findings about the file's syntax.
	syntax []Finding
}

func (in *input) dir() string { return path.Dir(in.path) }

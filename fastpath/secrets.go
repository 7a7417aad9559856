package fastpath

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/fastpath/secrets"
	"github.com/sluice-ci/sluice/gate"
)

// Scopes of the secrets control in range mode.
const (
	// ScopeTouchedFiles scans every touched file whole: a secret already
	// present in a file the change touches is reported too.
	ScopeTouchedFiles = "touched-files"
	// ScopeAddedLines reports only secrets on lines the change adds.
	ScopeAddedLines = "added-lines"
)

// DefaultBaseline is the baseline file looked for beside the policy.
const DefaultBaseline = ".sluice-baseline.yaml"

// SecretsOptions are the secrets control's keys in the policy.
type SecretsOptions struct {
	Scope        string        `yaml:"scope"`
	MaxFileSize  gate.Size     `yaml:"max_file_size"`
	Baseline     string        `yaml:"baseline"`
	DefaultRules bool          `yaml:"default_rules"`
	Disable      []string      `yaml:"disable"`
	Rules        []SecretRule  `yaml:"rules"`
	Allow        []SecretAllow `yaml:"allow"`
	Workers      int           `yaml:"workers"`
}

// SecretRule is a custom rule in the policy.
type SecretRule struct {
	ID          string        `yaml:"id"`
	Description string        `yaml:"description"`
	Regex       string        `yaml:"regex"`
	Keywords    []string      `yaml:"keywords"`
	SecretGroup int           `yaml:"secret_group"`
	Entropy     float64       `yaml:"entropy"`
	Path        string        `yaml:"path"`
	Severity    string        `yaml:"severity"`
	Allow       []SecretAllow `yaml:"allow"`
}

// SecretAllow suppresses matches; conditions combine with OR unless
// condition is AND.
type SecretAllow struct {
	Description string   `yaml:"description"`
	Paths       []string `yaml:"paths"`
	Regexes     []string `yaml:"regexes"`
	RegexTarget string   `yaml:"regex_target"`
	StopWords   []string `yaml:"stopwords"`
	Condition   string   `yaml:"condition"`
	Rules       []string `yaml:"rules"`
}

func newSecretsOptions() *SecretsOptions {
	return &SecretsOptions{Scope: ScopeTouchedFiles, MaxFileSize: 2 << 20, DefaultRules: true}
}

// Secrets is the secrets control.
type Secrets struct {
	opts     SecretsOptions
	scanner  *secrets.Scanner
	baseline *Baseline
	now      func() time.Time
}

// NewSecrets compiles the rules and loads the baseline.
func NewSecrets(o SecretsOptions, env gate.Env) (*Secrets, error) {
	if o.Scope != ScopeTouchedFiles && o.Scope != ScopeAddedLines {
		return nil, &gate.FieldError{Field: "scope", Err: fmt.Errorf("unknown scope %q (want %s or %s)", o.Scope, ScopeTouchedFiles, ScopeAddedLines)}
	}
	if o.MaxFileSize <= 0 {
		return nil, &gate.FieldError{Field: "max_file_size", Err: errors.New("must be more than zero")}
	}
	cfg := secrets.Config{Disable: o.Disable, MaxFileSize: int64(o.MaxFileSize), NoDefaults: !o.DefaultRules}
	for i, r := range o.Rules {
		if r.ID == "" {
			return nil, &gate.FieldError{Field: fmt.Sprintf("rules[%d].id", i), Err: errors.New("missing")}
		}
		if r.Regex == "" && r.Path == "" {
			return nil, &gate.FieldError{Field: fmt.Sprintf("rules[%d].regex", i), Err: errors.New("missing; a rule needs a regex or a path")}
		}
		cfg.Rules = append(cfg.Rules, secrets.Rule{
			ID: r.ID, Description: r.Description, Regex: r.Regex, Keywords: r.Keywords, SecretGroup: r.SecretGroup,
			Entropy: r.Entropy, Path: r.Path, Severity: r.Severity, Allow: convertAllows(r.Allow),
		})
	}
	cfg.Allow = convertAllows(o.Allow)
	sc, err := secrets.New(cfg)
	if err != nil {
		return nil, &gate.FieldError{Field: ruleField(err, o), Err: err}
	}
	s := &Secrets{opts: o, scanner: sc, now: env.Now}
	if s.now == nil {
		s.now = time.Now
	}
	path, explicit := env.Resolve(o.Baseline), o.Baseline != ""
	if !explicit {
		path = env.Resolve(DefaultBaseline)
	}
	b, err := LoadBaseline(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
	case errors.Is(err, fs.ErrNotExist):
		return nil, &gate.FieldError{Field: "baseline", Err: fmt.Errorf("baseline file %s not found", path)}
	case err != nil:
		return nil, err
	default:
		s.baseline = b
	}
	return s, nil
}

// ruleField names the policy field a scanner construction error is about,
// when it names a custom rule.
func ruleField(err error, o SecretsOptions) string {
	var re *secrets.RuleError
	if errors.As(err, &re) {
		for i, r := range o.Rules {
			if r.ID == re.Rule {
				return fmt.Sprintf("rules[%d].%s", i, re.Field)
			}
		}
	}
	return "rules"
}

func convertAllows(in []SecretAllow) []secrets.Allow {
	var out []secrets.Allow
	for _, a := range in {
		out = append(out, secrets.Allow{
			Description: a.Description, Paths: a.Paths, Regexes: a.Regexes, RegexTarget: a.RegexTarget,
			StopWords: a.StopWords, Condition: a.Condition, Rules: a.Rules,
		})
	}
	return out
}

// Run scans the change's files.
func (s *Secrets) Run(ctx context.Context, ch *gate.Change) (gate.Result, error) {
	var res gate.Result
	targets := make([]secrets.Target, 0, len(ch.Files))
	byPath := make(map[string]*gate.File, len(ch.Files))
	if ch.HasBlobs() {
		var toRead []*gate.File
		for _, f := range ch.Files {
			if f.Size > int64(s.opts.MaxFileSize) {
				res.Skipped = append(res.Skipped, gate.Skipped{File: f.Path, Reason: secrets.TooLarge(f.Size, int64(s.opts.MaxFileSize))})
				continue
			}
			toRead = append(toRead, f)
		}
		err := ch.ReadFiles(ctx, toRead, func(f *gate.File, content []byte) error {
			targets = append(targets, secrets.Target{Path: f.Path, Content: content})
			byPath[f.Path] = f
			return nil
		})
		if err != nil {
			return res, err
		}
	} else {
		for _, f := range ch.Files {
			targets = append(targets, secrets.Target{Path: f.Path, Abs: f.Abs})
			byPath[f.Path] = f
		}
	}
	rep, err := s.scanner.ScanTargets(ctx, targets, s.opts.Workers)
	if err != nil {
		return res, err
	}
	for _, sk := range rep.Skipped {
		res.Skipped = append(res.Skipped, gate.Skipped{File: sk.File, Reason: sk.Reason})
	}
	slices.SortFunc(res.Skipped, func(a, b gate.Skipped) int { return strings.Compare(a.File, b.File) })
	used := map[string]bool{}
	for _, f := range rep.Findings {
		file := byPath[f.File]
		inChange := file == nil || file.IsAdded(f.Line)
		if s.opts.Scope == ScopeAddedLines && !inChange {
			continue
		}
		if s.baseline != nil {
			if e := s.baseline.Lookup(f.Fingerprint); e != nil {
				used[f.Fingerprint] = true
				if !e.Expired(s.now()) {
					res.Suppressed++
					continue
				}
			}
		}
		msg := f.Description
		if !inChange {
			msg += " (already in this file; not on a line the change adds)"
		}
		res.Findings = append(res.Findings, gate.Finding{
			Rule: f.RuleID, Severity: f.Severity, File: f.File, Line: f.Line, Column: f.Column,
			Message: msg, Redacted: f.Redacted, Fingerprint: f.Fingerprint, InChange: inChange,
		})
	}
	if s.baseline != nil {
		res.Notes = append(res.Notes, s.baseline.Report(used, scanned(byPath), ch.Mode == gate.PathsMode, s.now())...)
	}
	return res, nil
}

func scanned(m map[string]*gate.File) func(string) bool {
	return func(p string) bool { _, ok := m[p]; return ok }
}

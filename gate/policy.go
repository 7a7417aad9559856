package gate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-ci/sluice/budgets"
)

// PolicyFile is the policy's file name, looked for at the root of the
// repository (or the working directory outside one).
const PolicyFile = ".sluice.yaml"

// PolicyVersion is the schema version this build reads.
const PolicyVersion = 1

// Placement says where a control runs.
type Placement string

const (
	// Fast controls run inline on the release path, under their budget.
	Fast Placement = "fast"
	// Slow controls are queued and run by workers.
	Slow Placement = "slow"
)

// Spec describes one control sluice knows: its defaults, where it may run,
// and how to build it from its options. The CLI assembles a Catalog of specs
// from the fastpath and slowpath packages; the gate itself knows none.
type Spec struct {
	Name string
	// Placement, Budget and Enabled are the defaults when the policy is
	// silent.
	Placement Placement
	Budget    budgets.Budget
	Enabled   bool
	// SlowOnly controls (deep analysis) cannot be placed on the fast path.
	SlowOnly bool
	// Kind is the slow-path job kind that runs this control.
	Kind string
	// VerifiesImages is true for a control that checks the images a change
	// releases; a check given images and no such control warns.
	VerifiesImages bool
	// NewOptions returns a pointer to the control's options, holding their
	// defaults; nil when the control has none.
	NewOptions func() any
	// Build makes the fast-path control from its decoded options. Errors
	// about one option should be *FieldError so that they name its line.
	// Nil for slow-only controls.
	Build func(opts any, env Env) (Control, error)
	// Validate checks the decoded options of a control that Build does not
	// make (a slow-only one), so that `sluice policy validate` and a check
	// report their errors with file and line. Errors about one option
	// should be *FieldError. Nil when there is nothing to check.
	Validate func(opts any, env Env) error
	// Subjects lists what a deferred run of this control would analyse in
	// the change (an image digest, a repository at a commit). Nil means the
	// change itself.
	Subjects func(ch *Change) []string
}

// Catalog is the set of controls a build of sluice knows, in report order.
type Catalog []Spec

// Lookup finds a spec by name.
func (c Catalog) Lookup(name string) (Spec, bool) {
	i := slices.IndexFunc(c, func(s Spec) bool { return s.Name == name })
	if i < 0 {
		return Spec{}, false
	}
	return c[i], true
}

func (c Catalog) names() []string {
	out := make([]string, len(c))
	for i, s := range c {
		out[i] = s.Name
	}
	return out
}

// ControlPolicy is one control as the policy declares it.
type ControlPolicy struct {
	Name      string
	Enabled   bool
	Placement Placement
	Budget    budgets.Budget
	// Options is the control's own options (what Spec.NewOptions returned,
	// decoded), or nil.
	Options any
	spec    Spec
}

// Policy is a loaded, validated policy.
type Policy struct {
	// Source is the file it was read from, or "" for the built-in defaults.
	Source string
	// Digest is "sha256:<hex>" of the file's bytes ("" for defaults).
	Digest   string
	Version  int
	Controls []*ControlPolicy
	// Categories are the risk tiers (`categories:`), in declared order.
	Categories []Category
	// Batch are the release-batch rules (`batch:`).
	Batch BatchRules
	// Org names the organisation policy merged in, when there is one.
	Org *PolicyInfo
	// Queue is the top-level `queue:` section.
	Queue QueuePolicy
	// VulnDB is where the vulnerability DB comes from and how old it may be.
	VulnDB VulnDB
	// Budgets is the top-level `budgets:` section: auto-demotion.
	Budgets budgets.Rule
	pos     positions
}

// VulnDB is the policy's `vulndb:` section.
type VulnDB struct {
	// Repositories are OCI repositories of Trivy's DB artifact, tried in
	// order by `sluice db fetch`.
	Repositories []string `yaml:"repositories"`
	// CacheDir is the DB cache shared by runs and workers; relative to the
	// policy file. "" means the CLI's default.
	CacheDir string `yaml:"cache_dir"`
	// WarnAge and FailAge bound the DB's age: a warning past the first, a
	// failure past the second. Zero turns a limit off.
	WarnAge time.Duration `yaml:"warn_age"`
	FailAge time.Duration `yaml:"fail_age"`
}

// DefaultVulnDB is the vulndb section when the policy has none: Trivy's own
// repositories (reached only by an explicit `sluice db fetch`), warn past
// two days, fail past a week.
func DefaultVulnDB() VulnDB {
	return VulnDB{
		Repositories: []string{"mirror.gcr.io/aquasec/trivy-db:2", "ghcr.io/aquasecurity/trivy-db:2"},
		WarnAge:      48 * time.Hour,
		FailAge:      7 * 24 * time.Hour,
	}
}

// Control returns the named control's policy, or nil.
func (p *Policy) Control(name string) *ControlPolicy {
	for _, c := range p.Controls {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// DefaultPolicy is the policy in force when no file is given or found.
func DefaultPolicy(cat Catalog) *Policy {
	p := &Policy{Version: PolicyVersion, Batch: DefaultBatchRules(), Queue: DefaultQueuePolicy(), VulnDB: DefaultVulnDB(), Budgets: budgets.DefaultRule()}
	for _, s := range cat {
		c := &ControlPolicy{Name: s.Name, Enabled: s.Enabled, Placement: s.Placement, Budget: s.Budget, spec: s}
		if s.NewOptions != nil {
			c.Options = s.NewOptions()
		}
		p.Controls = append(p.Controls, c)
	}
	return p
}

// LoadPolicy reads and validates a policy file. A missing file is an
// error satisfying errors.Is(err, fs.ErrNotExist).
func LoadPolicy(path string, cat Catalog) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParsePolicy(path, data, cat)
}

// FindPolicy loads the policy at path if given, else PolicyFile in dir if
// present, else the defaults.
func FindPolicy(path, dir string, cat Catalog) (*Policy, error) {
	if path != "" {
		p, err := LoadPolicy(path, cat)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &ConfigError{File: path, Msg: "policy file not found"}
		}
		return p, err
	}
	p, err := LoadPolicy(filepath.Join(dir, PolicyFile), cat)
	if errors.Is(err, fs.ErrNotExist) {
		return DefaultPolicy(cat), nil
	}
	return p, err
}

// controlCommon are the keys every control accepts.
type controlCommon struct {
	Enabled   *bool          `yaml:"enabled"`
	Placement string         `yaml:"placement"`
	Budget    *time.Duration `yaml:"budget"`
	OnOverrun string         `yaml:"on_overrun"`
	OnError   string         `yaml:"on_error"`
}

var commonKeys = []string{"enabled", "placement", "budget", "on_overrun", "on_error"}

// ParsePolicy validates a policy document; file names it in errors.
func ParsePolicy(file string, data []byte, cat Catalog) (*Policy, error) {
	root, err := parseYAML(file, data)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	p := DefaultPolicy(cat)
	p.Source, p.Digest = file, "sha256:"+hex.EncodeToString(sum[:])
	d := &decoder{file: file, pos: positions{}}
	p.pos = d.pos
	if root == nil {
		return nil, &ConfigError{File: file, Line: 1, Field: "version", Msg: "empty policy; want at least `version: 1`"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, d.errf(root, "", "want a mapping at the top, got %s", kindName(root))
	}
	var haveVersion bool
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "version":
			if err := d.decode(v, reflectValue(&p.Version), "version"); err != nil {
				return nil, err
			}
			if p.Version != PolicyVersion {
				return nil, d.errf(v, "version", "unsupported policy version %d (this sluice reads version %d)", p.Version, PolicyVersion)
			}
			haveVersion = true
		case "controls":
			if err := d.controls(p, v, cat); err != nil {
				return nil, err
			}
		case "categories":
			if err := d.categories(p, v); err != nil {
				return nil, err
			}
		case "batch":
			if err := d.batch(p, v, cat); err != nil {
				return nil, err
			}
		case "queue":
			if err := d.queue(&p.Queue, v); err != nil {
				return nil, err
			}
		case "vulndb":
			if err := d.vulnDB(p, v); err != nil {
				return nil, err
			}
		case "budgets":
			if err := d.budgets(&p.Budgets, v); err != nil {
				return nil, err
			}
		default:
			return nil, d.errf(k, k.Value, "unknown key %q (known: batch, budgets, categories, controls, queue, version, vulndb)", k.Value)
		}
	}
	if !haveVersion {
		return nil, d.errf(root, "version", "missing; want `version: %d` at the top", PolicyVersion)
	}
	if err := d.checkShipAlone(p); err != nil {
		return nil, err
	}
	return p, nil
}

// queueSection is the `queue:` section as written.
type queueSection struct {
	URL            string         `yaml:"url"`
	OnUnreachable  string         `yaml:"on_unreachable"`
	Timeout        *time.Duration `yaml:"timeout"`
	MaxAttempts    *int           `yaml:"max_attempts"`
	DeferredBudget *time.Duration `yaml:"deferred_budget"`
}

func (d *decoder) queue(q *QueuePolicy, n *yaml.Node) error {
	d.pos["queue"] = n
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	var raw queueSection
	if err := d.decode(n, reflectValue(&raw), "queue"); err != nil {
		return err
	}
	q.URL = raw.URL
	if raw.OnUnreachable != "" {
		m, err := budgets.ParseMode(raw.OnUnreachable)
		if err != nil || m == budgets.Defer {
			return d.errf(d.pos["queue.on_unreachable"], "queue.on_unreachable", "unknown mode %q (want fail-closed or fail-open)", raw.OnUnreachable)
		}
		q.OnUnreachable = m
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		dst  *time.Duration
	}{{"timeout", raw.Timeout, &q.Timeout}, {"deferred_budget", raw.DeferredBudget, &q.DeferredBudget}} {
		if f.v == nil {
			continue
		}
		if *f.v <= 0 {
			return d.errf(d.pos["queue."+f.name], "queue."+f.name, "must be more than zero")
		}
		*f.dst = *f.v
	}
	if raw.MaxAttempts != nil {
		if *raw.MaxAttempts < 1 || *raw.MaxAttempts > 100 {
			return d.errf(d.pos["queue.max_attempts"], "queue.max_attempts", "must be between 1 and 100, got %d", *raw.MaxAttempts)
		}
		q.MaxAttempts = *raw.MaxAttempts
	}
	return nil
}

func (d *decoder) vulnDB(p *Policy, n *yaml.Node) error {
	if err := d.decode(n, reflectValue(&p.VulnDB), "vulndb"); err != nil {
		return err
	}
	v := p.VulnDB
	for i, r := range v.Repositories {
		if strings.TrimSpace(r) == "" || strings.ContainsAny(r, " \t") {
			f := fmt.Sprintf("vulndb.repositories[%d]", i)
			return d.errf(d.pos[f], f, "bad repository %q (want e.g. registry.example/trivy-db:2)", r)
		}
	}
	if v.WarnAge < 0 {
		return d.errf(d.pos["vulndb.warn_age"], "vulndb.warn_age", "must not be negative")
	}
	if v.FailAge < 0 {
		return d.errf(d.pos["vulndb.fail_age"], "vulndb.fail_age", "must not be negative")
	}
	if v.WarnAge > 0 && v.FailAge > 0 && v.FailAge < v.WarnAge {
		return d.errf(d.pos["vulndb.fail_age"], "vulndb.fail_age", "fail_age %s is shorter than warn_age %s", v.FailAge, v.WarnAge)
	}
	return nil
}

func (d *decoder) controls(p *Policy, n *yaml.Node, cat Catalog) error {
	if n.Kind != yaml.MappingNode {
		return d.errf(n, "controls", "want a mapping of control names, got %s", kindName(n))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := "controls." + k.Value
		spec, ok := cat.Lookup(k.Value)
		if !ok {
			return d.errf(k, path, "unknown control %q (known: %s)", k.Value, strings.Join(cat.names(), ", "))
		}
		if seen[k.Value] {
			return d.errf(k, path, "control given twice")
		}
		seen[k.Value] = true
		if err := d.control(p.Control(k.Value), spec, v, path); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) control(c *ControlPolicy, spec Spec, n *yaml.Node, path string) error {
	d.pos[path] = n
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return d.errf(n, path, "want a mapping, got %s", kindName(n))
	}
	var common controlCommon
	opts := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	commonNode := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if slices.Contains(commonKeys, n.Content[i].Value) {
			commonNode.Content = append(commonNode.Content, n.Content[i], n.Content[i+1])
		} else {
			opts.Content = append(opts.Content, n.Content[i], n.Content[i+1])
		}
	}
	if err := d.decode(commonNode, reflectValue(&common), path); err != nil {
		return err
	}
	if common.Enabled != nil {
		c.Enabled = *common.Enabled
	}
	if common.Placement != "" {
		switch pl := Placement(common.Placement); pl {
		case Fast, Slow:
			c.Placement = pl
		default:
			return d.errf(d.pos[path+".placement"], path+".placement", "unknown placement %q (want fast or slow)", common.Placement)
		}
	}
	if common.Budget != nil {
		if *common.Budget <= 0 {
			return d.errf(d.pos[path+".budget"], path+".budget", "must be more than zero")
		}
		c.Budget.Time = *common.Budget
	}
	if common.OnOverrun != "" {
		m, err := budgets.ParseMode(common.OnOverrun)
		if err != nil {
			return d.errf(d.pos[path+".on_overrun"], path+".on_overrun", "%v", err)
		}
		c.Budget.OnOverrun = m
	}
	if common.OnError != "" {
		m, err := budgets.ParseMode(common.OnError)
		if err != nil || m == budgets.Defer {
			return d.errf(d.pos[path+".on_error"], path+".on_error", "unknown mode %q (want fail-closed or fail-open; defer applies to overruns only)", common.OnError)
		}
		c.Budget.OnError = m
	}
	// Impossible combinations.
	if spec.SlowOnly && c.Placement == Fast {
		return d.errf(d.pos[path+".placement"], path+".placement", "%s is deep analysis and runs on the slow path only", spec.Name)
	}
	if c.Placement == Slow && c.Budget.OnOverrun == budgets.Defer {
		field := path + ".on_overrun"
		if d.pos[field] == nil {
			field = path + ".placement"
		}
		return d.errf(d.pos[field], field, "on_overrun: defer moves an overrun to the slow path, but %s already runs there; use fail-closed or fail-open", spec.Name)
	}
	if len(opts.Content) > 0 && spec.NewOptions == nil {
		k := opts.Content[0]
		return d.errf(k, path+"."+k.Value, "unknown key %q (known: %s)", k.Value, strings.Join(commonKeys, ", "))
	}
	if spec.NewOptions != nil {
		c.Options = spec.NewOptions()
		d.extraPath, d.extraKnown = path, commonKeys
		err := d.decode(opts, reflectValue(c.Options), path)
		d.extraPath, d.extraKnown = "", nil
		if err != nil {
			return err
		}
	}
	return nil
}

// locate turns a control constructor's error into a ConfigError that names
// the option's file position where it can.
func (p *Policy) locate(control string, err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return err
	}
	file := p.Source
	if file == "" {
		file = "(default policy)"
	}
	base := "controls." + control
	var fe *FieldError
	if errors.As(err, &fe) {
		field := base + "." + fe.Field
		e := &ConfigError{File: file, Field: field, Msg: fe.Err.Error()}
		// The nearest enclosing field we know a position for.
		for f := field; f != ""; f = parentField(f) {
			if n := p.pos[f]; n != nil {
				e.Line, e.Column = n.Line, n.Column
				break
			}
		}
		return e
	}
	e := &ConfigError{File: file, Field: base, Msg: err.Error()}
	if n := p.pos[base]; n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

func parentField(f string) string {
	i := strings.LastIndexAny(f, ".[")
	if i < 0 {
		return ""
	}
	return f[:i]
}

// Validate builds every enabled fast control without running any, so that
// errors in control options surface as they would in a check.
func (p *Policy) Validate(env Env) error {
	_, err := p.build(env)
	return err
}

func (p *Policy) build(env Env) (map[string]Control, error) {
	out := map[string]Control{}
	for _, c := range p.Controls {
		if c.Enabled && c.spec.Validate != nil {
			if err := c.spec.Validate(c.Options, env); err != nil {
				return nil, p.locate(c.Name, err)
			}
		}
		if !c.Enabled || c.spec.Build == nil {
			continue
		}
		ctl, err := c.spec.Build(c.Options, env)
		if err != nil {
			return nil, p.locate(c.Name, err)
		}
		out[c.Name] = ctl
	}
	return out, nil
}

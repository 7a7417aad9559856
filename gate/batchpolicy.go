package gate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
	"gopkg.in/yaml.v3"
)

// FastVerdict is the result a Requirement names for a change's fast-path
// verdict (sluice check passed over it).
const FastVerdict = "fast-verdict"

// BatchRules are the policy's release-batch rules (`batch:`).
type BatchRules struct {
	// MaxChanges is the most changes one batch may hold (default 10).
	MaxChanges int
	// MaxHighImpact is the most high-impact changes one batch may hold
	// (default 1).
	MaxHighImpact int
	// ShipAlone are categories whose changes ship in a batch of their own.
	ShipAlone []string
	// Require lists the results that must be complete and clean before a
	// change may ship (default: the fast verdict for every change, the deep
	// image scan of every image for high-impact changes).
	Require []Requirement
	// ClearDebt: fail-open and deferred results of shipped changes are debt
	// that must be cleared before the next batch is approved (default true).
	ClearDebt bool
	// DefaultImpact is the impact of a change that touches no category
	// (default medium).
	DefaultImpact Impact
	// MinDeployability holds back changes scoring below it (default 0).
	MinDeployability int
	// MigrationPaths, DownMigrationPaths and ConfigPaths are the globs the
	// deployability score reads.
	MigrationPaths     []string
	DownMigrationPaths []string
	ConfigPaths        []string
}

// Requirement is one result that must be complete and clean.
type Requirement struct {
	// Result is FastVerdict or a slow-path job kind ("image-scan",
	// "dependency-scan"); the subjects it is looked up for are those the
	// kind's control analyses (each image for image-scan).
	Result string
	// Impact is the lowest impact it applies to (default low: all changes).
	Impact Impact
}

// DefaultBatchRules are the rules when the policy has no `batch:`.
func DefaultBatchRules() BatchRules {
	return BatchRules{
		MaxChanges:    10,
		MaxHighImpact: 1,
		Require:       []Requirement{{Result: FastVerdict, Impact: Low}, {Result: "image-scan", Impact: High}},
		ClearDebt:     true,
		DefaultImpact: Medium,
		MigrationPaths: []string{
			"**/migrations/**", "**/migrate/**", "**/*.sql",
		},
		DownMigrationPaths: []string{"**/*.down.sql", "**/*_down.sql", "**/down/**", "**/*.down.*"},
		ConfigPaths: []string{
			"**/*.yaml", "**/*.yml", "**/*.toml", "**/*.ini", "**/*.conf", "**/*.cfg",
			"**/*.properties", "**/*.env", "**/.env", "**/config/**", "config/**",
		},
	}
}

type batchYAML struct {
	MaxChanges         *int             `yaml:"max_changes"`
	MaxHighImpact      *int             `yaml:"max_high_impact"`
	ShipAlone          []string         `yaml:"ship_alone"`
	Require            []requirementYML `yaml:"require"`
	ClearDebt          *bool            `yaml:"clear_debt"`
	DefaultImpact      string           `yaml:"default_impact"`
	MinDeployability   *int             `yaml:"min_deployability"`
	MigrationPaths     []string         `yaml:"migration_paths"`
	DownMigrationPaths []string         `yaml:"down_migration_paths"`
	ConfigPaths        []string         `yaml:"config_paths"`
}

type requirementYML struct {
	Result string `yaml:"result"`
	Impact string `yaml:"impact"`
}

func (d *decoder) batch(p *Policy, n *yaml.Node, cat Catalog) error {
	d.pos["batch"] = n
	var y batchYAML
	if err := d.decode(n, reflectValue(&y), "batch"); err != nil {
		return err
	}
	b := &p.Batch
	if y.MaxChanges != nil {
		if *y.MaxChanges < 1 {
			return d.errf(d.pos["batch.max_changes"], "batch.max_changes", "must be at least 1")
		}
		b.MaxChanges = *y.MaxChanges
	}
	if y.MaxHighImpact != nil {
		if *y.MaxHighImpact < 0 {
			return d.errf(d.pos["batch.max_high_impact"], "batch.max_high_impact", "must be 0 or more (0: high-impact changes never ship in a batch)")
		}
		b.MaxHighImpact = *y.MaxHighImpact
	}
	if y.ShipAlone != nil {
		b.ShipAlone = y.ShipAlone
	}
	if y.Require != nil {
		b.Require = nil
		kinds := []string{FastVerdict}
		for _, s := range cat {
			if s.Kind != "" && s.Placement == Slow && !slices.Contains(kinds, s.Kind) {
				kinds = append(kinds, s.Kind)
			}
		}
		for i, r := range y.Require {
			f := fmt.Sprintf("batch.require[%d]", i)
			if r.Result == "" {
				return d.errf(d.pos[f], f+".result", "missing; want one of %s", strings.Join(kinds, ", "))
			}
			if !slices.Contains(kinds, r.Result) {
				return d.errf(d.pos[f+".result"], f+".result", "unknown result %q (want one of %s)", r.Result, strings.Join(kinds, ", "))
			}
			req := Requirement{Result: r.Result, Impact: Low}
			if r.Impact != "" {
				im, err := ParseImpact(r.Impact)
				if err != nil {
					return d.errf(d.pos[f+".impact"], f+".impact", "%v", err)
				}
				req.Impact = im
			}
			b.Require = append(b.Require, req)
		}
	}
	if y.ClearDebt != nil {
		b.ClearDebt = *y.ClearDebt
	}
	if y.DefaultImpact != "" {
		im, err := ParseImpact(y.DefaultImpact)
		if err != nil {
			return d.errf(d.pos["batch.default_impact"], "batch.default_impact", "%v", err)
		}
		b.DefaultImpact = im
	}
	if y.MinDeployability != nil {
		if *y.MinDeployability < 0 || *y.MinDeployability > 100 {
			return d.errf(d.pos["batch.min_deployability"], "batch.min_deployability", "want a score from 0 to 100, got %d", *y.MinDeployability)
		}
		b.MinDeployability = *y.MinDeployability
	}
	for _, g := range []struct {
		key  string
		val  []string
		into *[]string
	}{{"migration_paths", y.MigrationPaths, &b.MigrationPaths}, {"down_migration_paths", y.DownMigrationPaths, &b.DownMigrationPaths}, {"config_paths", y.ConfigPaths, &b.ConfigPaths}} {
		if g.val == nil {
			continue
		}
		for j, s := range g.val {
			if !doublestar.ValidatePattern(s) {
				f := fmt.Sprintf("batch.%s[%d]", g.key, j)
				return d.errf(d.pos[f], f, "bad glob %q", s)
			}
		}
		*g.into = g.val
	}
	return nil
}

// checkShipAlone runs once the whole document is read: ship_alone must
// name declared categories.
func (d *decoder) checkShipAlone(p *Policy) error {
	for i, name := range p.Batch.ShipAlone {
		if !slices.ContainsFunc(p.Categories, func(c Category) bool { return c.Name == name }) {
			f := fmt.Sprintf("batch.ship_alone[%d]", i)
			var known []string
			for _, c := range p.Categories {
				known = append(known, c.Name)
			}
			return d.errf(d.pos[f], f, "unknown category %q (declared: %s)", name, orNone(known))
		}
	}
	return nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func matchAny(globs []string, path string) bool {
	for _, g := range globs {
		if ok, _ := doublestar.Match(g, path); ok {
			return true
		}
	}
	return false
}

package gate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
	"gopkg.in/yaml.v3"
)

// Impact is how much harm a change of a category can do when it goes wrong.
type Impact int

const (
	// NoImpact is the zero value: not set.
	NoImpact Impact = iota
	Low
	Medium
	High
)

var impactNames = []string{"", "low", "medium", "high"}

func (i Impact) String() string {
	if i < 0 || int(i) >= len(impactNames) {
		return fmt.Sprintf("impact(%d)", int(i))
	}
	return impactNames[i]
}

// MarshalText writes the impact's name.
func (i Impact) MarshalText() ([]byte, error) { return []byte(i.String()), nil }

// UnmarshalText reads an impact's name.
func (i *Impact) UnmarshalText(b []byte) error {
	v, err := ParseImpact(string(b))
	*i = v
	return err
}

// ParseImpact reads low, medium or high.
func ParseImpact(s string) (Impact, error) {
	if k := slices.Index(impactNames, s); k > 0 {
		return Impact(k), nil
	}
	return NoImpact, fmt.Errorf("unknown impact %q (want low, medium or high)", s)
}

// Category is a risk tier: the paths it covers, the impact of a change that
// touches them, and whether such a change may share a release batch.
type Category struct {
	Name string
	// Paths are doublestar globs on slash paths relative to the
	// repository root ("deploy/**", "**/*.sql").
	Paths       []string
	Impact      Impact
	SafeToBatch bool
}

// Matches reports whether the category covers the path.
func (c *Category) Matches(path string) bool {
	for _, p := range c.Paths {
		if ok, _ := doublestar.Match(p, path); ok {
			return true
		}
	}
	return false
}

// Uncategorised names the category of a change that touches no declared
// category's paths.
const Uncategorised = "uncategorised"

// Classify returns the category a change touching paths takes: the one of
// highest impact among those covering any of its paths (ties go to the one
// declared first), safe to batch only when every category it touches is.
// matched lists every category it touches. A change that matches none
// takes Uncategorised, with the policy's default impact, and is safe to
// batch.
func (p *Policy) Classify(paths []string) (cat Category, matched []string) {
	best := -1
	safe := true
	for i := range p.Categories {
		c := &p.Categories[i]
		hit := false
		for _, f := range paths {
			if c.Matches(f) {
				hit = true
				break
			}
		}
		if !hit {
			continue
		}
		matched = append(matched, c.Name)
		safe = safe && c.SafeToBatch
		if best < 0 || c.Impact > p.Categories[best].Impact {
			best = i
		}
	}
	if best < 0 {
		return Category{Name: Uncategorised, Impact: p.Batch.DefaultImpact, SafeToBatch: true}, nil
	}
	cat = p.Categories[best]
	cat.SafeToBatch = safe
	return cat, matched
}

// categoryYAML is one entry of `categories:` as written.
type categoryYAML struct {
	Paths       []string `yaml:"paths"`
	Impact      string   `yaml:"impact"`
	SafeToBatch *bool    `yaml:"safe_to_batch"`
}

func (d *decoder) categories(p *Policy, n *yaml.Node) error {
	d.pos["categories"] = n
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return d.errf(n, "categories", "want a mapping of category names, got %s", kindName(n))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := "categories." + k.Value
		if k.Value == "" || k.Value == Uncategorised {
			return d.errf(k, path, "%q cannot name a category", k.Value)
		}
		if slices.ContainsFunc(p.Categories, func(c Category) bool { return c.Name == k.Value }) {
			return d.errf(k, path, "category given twice")
		}
		var y categoryYAML
		if err := d.decode(v, reflectValue(&y), path); err != nil {
			return err
		}
		c := Category{Name: k.Value, Paths: y.Paths, SafeToBatch: true}
		if len(y.Paths) == 0 {
			return d.errf(v, path+".paths", "missing; want at least one path glob")
		}
		for j, g := range y.Paths {
			if !doublestar.ValidatePattern(g) || strings.HasPrefix(g, "/") {
				f := fmt.Sprintf("%s.paths[%d]", path, j)
				return d.errf(d.pos[f], f, "bad glob %q (want a slash path relative to the repository root, e.g. deploy/** or **/*.sql)", g)
			}
		}
		if y.Impact == "" {
			return d.errf(v, path+".impact", "missing; want low, medium or high")
		}
		im, err := ParseImpact(y.Impact)
		if err != nil {
			return d.errf(d.pos[path+".impact"], path+".impact", "%v", err)
		}
		c.Impact = im
		if y.SafeToBatch != nil {
			c.SafeToBatch = *y.SafeToBatch
		}
		p.Categories = append(p.Categories, c)
	}
	return nil
}

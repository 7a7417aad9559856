package secrets

import (
	"fmt"

	"github.com/pelletier/go-toml/v2"
	gitleaksconfig "github.com/zricethezav/gitleaks/v8/config"
)

// tomlConfig mirrors the parts of gitleaks' config file format sluice reads.
type tomlConfig struct {
	Allowlist  *tomlAllow  `toml:"allowlist"`
	Allowlists []tomlAllow `toml:"allowlists"`
	Rules      []tomlRule  `toml:"rules"`
}

type tomlRule struct {
	ID          string      `toml:"id"`
	Description string      `toml:"description"`
	Regex       string      `toml:"regex"`
	Path        string      `toml:"path"`
	SecretGroup int         `toml:"secretGroup"`
	Entropy     float64     `toml:"entropy"`
	Keywords    []string    `toml:"keywords"`
	Allowlist   *tomlAllow  `toml:"allowlist"`
	Allowlists  []tomlAllow `toml:"allowlists"`
}

type tomlAllow struct {
	Description string   `toml:"description"`
	Condition   string   `toml:"condition"`
	Paths       []string `toml:"paths"`
	RegexTarget string   `toml:"regexTarget"`
	Regexes     []string `toml:"regexes"`
	StopWords   []string `toml:"stopwords"`
	TargetRules []string `toml:"targetRules"`
}

func (a tomlAllow) allow() Allow {
	return Allow{
		Description: a.Description,
		Paths:       a.Paths,
		Regexes:     a.Regexes,
		StopWords:   a.StopWords,
		RegexTarget: a.RegexTarget,
		Condition:   a.Condition,
		Rules:       a.TargetRules,
	}
}

// DefaultRules returns gitleaks' default rules and global allowlists, parsed
// from the gitleaks.toml embedded in gitleaks' Go module (config.DefaultConfig).
func DefaultRules() ([]Rule, []Allow, error) {
	return parseGitleaksTOML(gitleaksconfig.DefaultConfig)
}

func parseGitleaksTOML(doc string) ([]Rule, []Allow, error) {
	var tc tomlConfig
	if err := toml.Unmarshal([]byte(doc), &tc); err != nil {
		return nil, nil, fmt.Errorf("parsing gitleaks config: %w", err)
	}
	var global []Allow
	if tc.Allowlist != nil {
		global = append(global, tc.Allowlist.allow())
	}
	for _, a := range tc.Allowlists {
		global = append(global, a.allow())
	}
	rules := make([]Rule, 0, len(tc.Rules))
	for _, tr := range tc.Rules {
		r := Rule{
			ID:          tr.ID,
			Description: tr.Description,
			Regex:       tr.Regex,
			Keywords:    tr.Keywords,
			SecretGroup: tr.SecretGroup,
			Entropy:     tr.Entropy,
			Path:        tr.Path,
		}
		if tr.Allowlist != nil {
			r.Allow = append(r.Allow, tr.Allowlist.allow())
		}
		for _, a := range tr.Allowlists {
			r.Allow = append(r.Allow, a.allow())
		}
		rules = append(rules, r)
	}
	return rules, global, nil
}

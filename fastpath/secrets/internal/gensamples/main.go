// Command gensamples extracts the true- and false-positive samples that
// gitleaks' rule definitions carry (cmd/generate/config/rules/*.go in the
// gitleaks module) and writes them as JSON, so that sluice's secret engine can
// be checked against every default rule.
//
// Gitleaks checks its samples with utils.Validate and utils.ValidateWithPaths
// while generating its default config. This program builds gitleaks' own
// generator from a copy of its module in which cmd/generate/config/utils/validate.go
// is replaced by a version that also records each call (`go build -overlay`
// refuses files under GOMODCACHE), runs it, and merges the recorded samples by
// rule id. Many samples are random (generated
// from regexes), so the fixture is generated once and committed:
//
//	GOEXPERIMENT=jsonv2 go run ./fastpath/secrets/internal/gensamples -o testdata/secrets/gitleaks-samples.json
//
// (run from the repository root; the gitleaks version is the one in go.mod).
package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

const gitleaksModule = "github.com/zricethezav/gitleaks/v8"
const generatorPkg = "github.com/zricethezav/gitleaks/v8/cmd/generate/config"

// recordingValidate replaces validate.go: the original functions, plus a
// record of every sample, appended as one JSON line per call to the file
// named by $GENSAMPLES_OUT.
const recordingValidate = `package utils

import (
	"encoding/json"
	"os"
	"strings"

	"github.com/zricethezav/gitleaks/v8/cmd/generate/config/base"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
	"github.com/zricethezav/gitleaks/v8/logging"
)

type recorded struct {
	Rule    string            ` + "`json:\"rule\"`" + `
	TPs     []string          ` + "`json:\"tps,omitempty\"`" + `
	FPs     []string          ` + "`json:\"fps,omitempty\"`" + `
	PathTPs map[string]string ` + "`json:\"pathTps,omitempty\"`" + `
	PathFPs map[string]string ` + "`json:\"pathFps,omitempty\"`" + `
}

func record(r recorded) {
	f, err := os.OpenFile(os.Getenv("GENSAMPLES_OUT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		logging.Fatal().Err(err).Msg("recording samples")
	}
	defer f.Close()
	b, _ := json.Marshal(r)
	if _, err := f.Write(append(b, '\n')); err != nil {
		logging.Fatal().Err(err).Msg("recording samples")
	}
}

func Validate(rule config.Rule, truePositives []string, falsePositives []string) *config.Rule {
	record(recorded{Rule: rule.RuleID, TPs: truePositives, FPs: falsePositives})
	r := &rule
	d := createSingleRuleDetector(r)
	for _, tp := range truePositives {
		if len(d.DetectString(tp)) < 1 {
			logging.Fatal().Str("rule", r.RuleID).Str("value", tp).Msg("Failed to Validate. True positive was not detected by regex.")
		}
	}
	for _, fp := range falsePositives {
		if len(d.DetectString(fp)) != 0 {
			logging.Fatal().Str("rule", r.RuleID).Str("value", fp).Msg("Failed to Validate. False positive was detected by regex.")
		}
	}
	return r
}

func ValidateWithPaths(rule config.Rule, truePositives map[string]string, falsePositives map[string]string) *config.Rule {
	record(recorded{Rule: rule.RuleID, PathTPs: truePositives, PathFPs: falsePositives})
	r := &rule
	d := createSingleRuleDetector(r)
	for path, tp := range truePositives {
		if len(d.Detect(detect.Fragment{Raw: tp, FilePath: path})) != 1 {
			logging.Fatal().Str("rule", r.RuleID).Str("value", tp).Msg("Failed to Validate. True positive was not detected by regex and/or path.")
		}
	}
	for path, fp := range falsePositives {
		if len(d.Detect(detect.Fragment{Raw: fp, FilePath: path})) != 0 {
			logging.Fatal().Str("rule", r.RuleID).Str("value", fp).Msg("Failed to Validate. False positive was detected by regex and/or path.")
		}
	}
	return r
}

func createSingleRuleDetector(r *config.Rule) *detect.Detector {
	var (
		uniqueKeywords = make(map[string]struct{})
		keywords       []string
	)
	for _, keyword := range r.Keywords {
		k := strings.ToLower(keyword)
		if _, ok := uniqueKeywords[k]; ok {
			continue
		}
		keywords = append(keywords, k)
		uniqueKeywords[k] = struct{}{}
	}
	r.Keywords = keywords
	cfg := base.CreateGlobalConfig()
	cfg.Rules = map[string]config.Rule{r.RuleID: *r}
	cfg.Keywords = uniqueKeywords
	for _, a := range cfg.Allowlists {
		if err := a.Validate(); err != nil {
			logging.Fatal().Err(err).Msg("invalid global allowlist")
		}
	}
	return detect.NewDetector(cfg)
}
`

// Sample is one rule's samples, as written to the fixture.
type Sample struct {
	Rule    string            `json:"rule"`
	TPs     []string          `json:"tps,omitempty"`
	FPs     []string          `json:"fps,omitempty"`
	PathTPs map[string]string `json:"pathTps,omitempty"`
	PathFPs map[string]string `json:"pathFps,omitempty"`
}

func main() {
	out := flag.String("o", "testdata/secrets/gitleaks-samples.json", "where to write the samples")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gensamples:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	tmp, err := os.MkdirTemp("", "gensamples")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// The go command refuses overlays of files under GOMODCACHE, so copy the
	// gitleaks module, swap validate.go in the copy, and build the generator
	// against the copy with a temporary go.mod (ours plus a replace), which
	// keeps every other dependency at the version sluice resolves.
	modDir, err := goListModule(gitleaksModule)
	if err != nil {
		return err
	}
	copyDir := filepath.Join(tmp, "gitleaks")
	if err := os.CopyFS(copyDir, os.DirFS(modDir)); err != nil {
		return fmt.Errorf("copying the gitleaks module: %w", err)
	}
	validate := filepath.Join(copyDir, "cmd", "generate", "config", "utils", "validate.go")
	if err := os.Chmod(filepath.Dir(validate), 0o755); err != nil {
		return err
	}
	_ = os.Remove(validate)
	if err := os.WriteFile(validate, []byte(recordingValidate), 0o644); err != nil {
		return err
	}
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		return fmt.Errorf("reading go.mod (run from the repository root): %w", err)
	}
	gosum, err := os.ReadFile("go.sum")
	if err != nil {
		return err
	}
	modfile := filepath.Join(tmp, "go.mod")
	gomod = fmt.Appendf(gomod, "\nreplace %s => %s\n", gitleaksModule, copyDir)
	if err := os.WriteFile(modfile, gomod, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "go.sum"), gosum, 0o644); err != nil {
		return err
	}
	// The generator needs a few modules sluice does not (e.g. lucasjones/reggen):
	// resolve them into the temporary go.mod and go.sum only.
	get := exec.Command("go", "get", "-modfile", modfile, generatorPkg)
	get.Stdout, get.Stderr = os.Stderr, os.Stderr
	if err := get.Run(); err != nil {
		return fmt.Errorf("resolving the generator's dependencies: %w", err)
	}
	bin := filepath.Join(tmp, "generate")
	build := exec.Command("go", "build", "-modfile", modfile, "-o", bin, generatorPkg)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building gitleaks' generator with the recording validate.go: %w", err)
	}
	genDir := filepath.Join(copyDir, "cmd", "generate", "config")

	// The generator reads rules/config.tmpl relative to its working directory.
	records := filepath.Join(tmp, "records.jsonl")
	gen := exec.Command(bin, filepath.Join(tmp, "gitleaks.toml"))
	gen.Dir = genDir
	gen.Env = append(os.Environ(), "GENSAMPLES_OUT="+records)
	gen.Stdout, gen.Stderr = os.Stderr, os.Stderr
	if err := gen.Run(); err != nil {
		return fmt.Errorf("running gitleaks' generator: %w", err)
	}

	data, err := os.ReadFile(records)
	if err != nil {
		return err
	}
	byRule := map[string]*Sample{}
	for line := range strings.Lines(string(data)) {
		var r Sample
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return fmt.Errorf("parsing recorded samples: %w", err)
		}
		s := byRule[r.Rule]
		if s == nil {
			s = &Sample{Rule: r.Rule}
			byRule[r.Rule] = s
		}
		s.TPs = append(s.TPs, r.TPs...)
		s.FPs = append(s.FPs, r.FPs...)
		for k, v := range r.PathTPs {
			if s.PathTPs == nil {
				s.PathTPs = map[string]string{}
			}
			s.PathTPs[k] = v
		}
		for k, v := range r.PathFPs {
			if s.PathFPs == nil {
				s.PathFPs = map[string]string{}
			}
			s.PathFPs[k] = v
		}
	}
	samples := make([]*Sample, 0, len(byRule))
	for _, s := range byRule {
		samples = append(samples, s)
	}
	slices.SortFunc(samples, func(a, b *Sample) int { return cmp.Compare(a.Rule, b.Rule) })
	b, err := json.MarshalIndent(samples, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "gensamples: %d rules written to %s\n", len(samples), out)
	return nil
}

func goListModule(mod string) (string, error) {
	b, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
	if err != nil {
		return "", fmt.Errorf("locating %s: %w", mod, err)
	}
	return strings.TrimSpace(string(b)), nil
}

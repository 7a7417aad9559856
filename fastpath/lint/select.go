package lint

import (
	"context"
	"path"
	"slices"
	"strings"

	"github.com/sluice-ci/sluice/gate"
)

// fileSet is what a change gives lint: the touched files chosen by name,
// the charts they belong to, and the untouched files read for context.
type fileSet struct {
	inputs []*input
	charts []*chart
	// context are untouched Terraform files beside touched ones, read so
	// that a module is evaluated whole; their findings are not reported.
	context []*input
}

func (s *fileSet) empty() bool { return len(s.inputs) == 0 && len(s.charts) == 0 }

// chart is a Helm chart the change touches, read whole.
type chart struct {
	dir   string            // the chart's folder, as a change path
	files map[string][]byte // by change path
}

// checkSyntax parses the chart's Chart.yaml and values files (its
// templates are not YAML until rendered).
func (c *chart) checkSyntax() []Finding {
	var out []Finding
	for _, p := range sortedKeys(c.files) {
		rel := strings.TrimPrefix(p, c.dir+"/")
		if c.dir == "." {
			rel = p
		}
		if rel != "Chart.yaml" && !(strings.HasPrefix(rel, "values") && (strings.HasSuffix(rel, ".yaml") || strings.HasSuffix(rel, ".yml"))) {
			continue
		}
		in := &input{path: p, kind: Helm, content: c.files[p]}
		if !parseYAML(in) {
			out = append(out, in.syntax...)
		}
	}
	return out
}

// byName says what a file is from its path alone, or "" when lint has no
// use for it. Candidates whose kind depends on content are YAML.
func byName(p string) Kind {
	base := path.Base(p)
	lower := strings.ToLower(base)
	switch {
	case lower == "dockerfile" || lower == "containerfile" ||
		strings.HasPrefix(lower, "dockerfile.") || strings.HasSuffix(lower, ".dockerfile") ||
		strings.HasPrefix(lower, "containerfile.") || strings.HasSuffix(lower, ".containerfile"):
		return Dockerfile
	case strings.HasSuffix(lower, ".tf") || strings.HasSuffix(lower, ".tf.json"):
		return Terraform
	case lower == "action.yml" || lower == "action.yaml":
		return Action
	case strings.HasSuffix(lower, ".yml") || strings.HasSuffix(lower, ".yaml"):
		if path.Dir(p) == ".github/workflows" || strings.HasSuffix(path.Dir(p), "/.github/workflows") {
			return Workflow
		}
		return YAML
	case strings.HasSuffix(lower, ".json"):
		return YAML
	}
	return ""
}

// chartCandidate reports whether a file could belong to a Helm chart in a
// way that matters for rendering it.
func chartCandidate(p string) bool {
	lower := strings.ToLower(p)
	return strings.HasSuffix(lower, ".yaml") || strings.HasSuffix(lower, ".yml") ||
		strings.HasSuffix(lower, ".tpl") || strings.HasSuffix(lower, ".json") || strings.HasSuffix(lower, ".txt")
}

// selectFiles chooses the change's files lint looks at, by name and by
// what lies beside them (a Chart.yaml above), without reading any.
func selectFiles(ctx context.Context, ch *gate.Change) (*fileSet, error) {
	set := &fileSet{}
	var candidates []*gate.File
	for _, f := range ch.Files {
		k := byName(f.Path)
		if k == "" && !chartCandidate(f.Path) {
			continue
		}
		candidates = append(candidates, f)
	}
	if len(candidates) == 0 {
		return set, nil
	}
	roots, err := chartRoots(ctx, ch, candidates)
	if err != nil {
		return nil, err
	}
	charts := map[string]*chart{}
	for _, f := range candidates {
		if root, ok := roots[f]; ok {
			c := charts[root.dir]
			if c == nil {
				c = root
				charts[root.dir] = c
				set.charts = append(set.charts, c)
			}
			continue
		}
		if k := byName(f.Path); k != "" {
			set.inputs = append(set.inputs, &input{file: f, path: f.Path, kind: k})
		}
	}
	return set, nil
}

// read reads the selected files once, sorts YAML files into their kinds by
// content, and reads the charts and Terraform modules whole.
func (s *fileSet) read(ctx context.Context, ch *gate.Change) error {
	files := make([]*gate.File, len(s.inputs))
	byFile := make(map[*gate.File]*input, len(s.inputs))
	for i, in := range s.inputs {
		files[i] = in.file
		byFile[in.file] = in
	}
	err := ch.ReadFiles(ctx, files, func(f *gate.File, content []byte) error {
		byFile[f].content = content
		return nil
	})
	if err != nil {
		return err
	}
	kept := s.inputs[:0]
	for _, in := range s.inputs {
		sniff(in)
		if in.kind != "" {
			kept = append(kept, in)
		}
	}
	s.inputs = kept

	// Terraform evaluates a folder as one module: read the untouched .tf
	// files beside the touched ones.
	touched := map[string]bool{}
	dirs := map[string]bool{}
	for _, in := range s.inputs {
		if in.kind == Terraform {
			touched[in.path] = true
			dirs[in.dir()] = true
		}
	}
	var extra []*gate.File
	for _, dir := range sortedKeys(dirs) {
		fs, err := ch.ListDir(ctx, dir, false)
		if err != nil {
			return err
		}
		for _, f := range fs {
			if !touched[f.Path] && strings.HasSuffix(f.Path, ".tf") {
				extra = append(extra, f)
			}
		}
	}
	for _, c := range s.charts {
		fs, err := ch.ListDir(ctx, c.dir, true)
		if err != nil {
			return err
		}
		c.files = map[string][]byte{}
		for _, f := range fs {
			c.files[f.Path] = nil
		}
		extra = append(extra, fs...)
	}
	if len(extra) == 0 {
		return nil
	}
	chartOf := func(p string) *chart {
		for _, c := range s.charts {
			if _, ok := c.files[p]; ok {
				return c
			}
		}
		return nil
	}
	return ch.ReadFiles(ctx, extra, func(f *gate.File, content []byte) error {
		if c := chartOf(f.Path); c != nil {
			c.files[f.Path] = content
			return nil
		}
		in := &input{file: f, path: f.Path, kind: Terraform, content: content}
		if checkHCL(in); len(in.syntax) == 0 {
			s.context = append(s.context, in)
		}
		return nil
	})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// chartRoots finds, for each candidate, the innermost folder above it that
// holds a Chart.yaml, looking no higher than the change's root.
func chartRoots(ctx context.Context, ch *gate.Change, candidates []*gate.File) (map[*gate.File]*chart, error) {
	inChange := map[string]bool{}
	for _, f := range ch.Files {
		if path.Base(f.Path) == "Chart.yaml" {
			inChange[path.Dir(f.Path)] = true
		}
	}
	// Every folder above a candidate, innermost first.
	ancestors := map[*gate.File][]string{}
	var unknown []string
	seen := map[string]bool{}
	for _, f := range candidates {
		var dirs []string
		for d := path.Dir(f.Path); ; d = path.Dir(d) {
			dirs = append(dirs, d)
			if !inChange[d] && !seen[d] {
				seen[d] = true
				unknown = append(unknown, d)
			}
			if d == "." || d == "/" || len(dirs) > 12 {
				break
			}
		}
		ancestors[f] = dirs
	}
	charts := make([]string, len(unknown))
	for i, d := range unknown {
		charts[i] = path.Join(d, "Chart.yaml")
	}
	found, err := ch.Existing(ctx, charts)
	if err != nil {
		return nil, err
	}
	has := map[string]bool{}
	for p := range found {
		has[path.Dir(p)] = true
	}
	out := map[*gate.File]*chart{}
	for _, f := range candidates {
		for _, d := range ancestors[f] {
			if inChange[d] || has[d] {
				out[f] = &chart{dir: d}
				break
			}
		}
	}
	return out, nil
}

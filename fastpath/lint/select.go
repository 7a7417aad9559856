package lint

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
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
	// dir is the chart's folder as a change path; abs where it is on disk
	// in paths mode.
	dir, abs string
	files    map[string][]byte // by change path
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
	tree := newTree(ch)
	roots, err := tree.chartRoots(ctx, candidates)
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

	tree := newTree(ch)
	// Terraform evaluates a folder as one module: read the untouched .tf
	// files beside the touched ones.
	touched := map[string]bool{}
	dirs := map[string]string{} // change dir -> disk dir
	for _, in := range s.inputs {
		if in.kind == Terraform {
			touched[in.path] = true
			dirs[in.dir()] = filepath.Dir(in.file.Abs)
		}
	}
	var extra []*gate.File
	for _, dir := range sortedKeys(dirs) {
		fs, err := tree.list(ctx, dir, dirs[dir], false)
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
		fs, err := tree.list(ctx, c.dir, c.abs, true)
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

// tree finds files beside a change's files: on disk in paths mode, in the
// head commit in range mode.
type tree struct {
	ch *gate.Change
}

func newTree(ch *gate.Change) *tree { return &tree{ch: ch} }

// chartRoots finds, for each candidate, the innermost folder above it that
// holds a Chart.yaml, looking no higher than the change's root.
func (t *tree) chartRoots(ctx context.Context, candidates []*gate.File) (map[*gate.File]*chart, error) {
	inChange := map[string]bool{}
	for _, f := range t.ch.Files {
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
	has, err := t.chartFiles(ctx, unknown)
	if err != nil {
		return nil, err
	}
	out := map[*gate.File]*chart{}
	for _, f := range candidates {
		for i, d := range ancestors[f] {
			if !inChange[d] && !has[d] {
				continue
			}
			abs := ""
			if f.Abs != "" {
				abs = filepath.Dir(f.Abs)
				for range i {
					abs = filepath.Dir(abs)
				}
			}
			out[f] = &chart{dir: d, abs: abs}
			break
		}
	}
	return out, nil
}

// chartFiles reports which of the folders hold a Chart.yaml.
func (t *tree) chartFiles(ctx context.Context, dirs []string) (map[string]bool, error) {
	has := map[string]bool{}
	if len(dirs) == 0 {
		return has, nil
	}
	if !t.ch.HasBlobs() {
		for _, d := range dirs {
			p := filepath.FromSlash(path.Join(d, "Chart.yaml"))
			if !filepath.IsAbs(p) {
				p = filepath.Join(t.ch.Root, p)
			}
			if _, err := os.Stat(p); err == nil {
				has[d] = true
			}
		}
		return has, nil
	}
	args := []string{"ls-tree", "--name-only", "--full-tree", "-z", t.ch.Head, "--"}
	for _, d := range dirs {
		args = append(args, path.Join(d, "Chart.yaml"))
	}
	out, err := t.git(ctx, args...)
	if err != nil {
		return nil, err
	}
	for _, p := range bytes.Split(out, []byte{0}) {
		if len(p) > 0 {
			has[path.Dir(string(p))] = true
		}
	}
	return has, nil
}

// list returns the files in a folder (and below it when recursive), as
// files of the change that ReadFiles can read.
func (t *tree) list(ctx context.Context, dir, absDir string, recursive bool) ([]*gate.File, error) {
	var out []*gate.File
	if !t.ch.HasBlobs() {
		if absDir == "" || absDir == "." {
			absDir = filepath.Join(t.ch.Root, filepath.FromSlash(dir))
		}
		err := filepath.WalkDir(absDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				if p != absDir && (!recursive || d.Name() == ".git") {
					return fs.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			rel, err := filepath.Rel(absDir, p)
			if err != nil {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			out = append(out, &gate.File{Path: path.Join(dir, filepath.ToSlash(rel)), Abs: p, Size: info.Size()})
			return nil
		})
		return out, err
	}
	args := []string{"ls-tree", "--full-tree", "-z"}
	if recursive {
		args = append(args, "-r")
	}
	prefix := dir + "/"
	if dir == "." {
		prefix = ""
	}
	args = append(args, t.ch.Head, "--", prefix)
	data, err := t.git(ctx, args...)
	if err != nil {
		return nil, err
	}
	for _, rec := range bytes.Split(data, []byte{0}) {
		meta, name, ok := bytes.Cut(rec, []byte{'\t'})
		if !ok {
			continue
		}
		fields := strings.Fields(string(meta))
		if len(fields) != 3 || fields[1] != "blob" || fields[0] == "120000" {
			continue
		}
		out = append(out, &gate.File{Path: string(name), Blob: fields[2], Size: -1})
	}
	return out, nil
}

func (t *tree) git(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = t.ch.Root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if sc := bufio.NewScanner(&stderr); msg != "" && sc.Scan() {
			msg = sc.Text()
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) && msg != "" {
			return nil, fmt.Errorf("git %s: %s", args[0], msg)
		}
		return nil, fmt.Errorf("git %s: %w", args[0], err)
	}
	return out, nil
}

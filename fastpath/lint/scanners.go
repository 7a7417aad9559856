package lint

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/zclconf/go-cty/cty"

	cfadapter "github.com/aquasecurity/trivy/pkg/iac/adapters/cloudformation"
	tfadapter "github.com/aquasecurity/trivy/pkg/iac/adapters/terraform"
	"github.com/aquasecurity/trivy/pkg/iac/detection"
	"github.com/aquasecurity/trivy/pkg/iac/ignore"
	"github.com/aquasecurity/trivy/pkg/iac/scan"
	cfparser "github.com/aquasecurity/trivy/pkg/iac/scanners/cloudformation/parser"
	dfparser "github.com/aquasecurity/trivy/pkg/iac/scanners/dockerfile/parser"
	helmparser "github.com/aquasecurity/trivy/pkg/iac/scanners/helm/parser"
	k8sparser "github.com/aquasecurity/trivy/pkg/iac/scanners/kubernetes/parser"
	tfparser "github.com/aquasecurity/trivy/pkg/iac/scanners/terraform/parser"
	"github.com/aquasecurity/trivy/pkg/iac/terraform"
	iactypes "github.com/aquasecurity/trivy/pkg/iac/types"
	"github.com/aquasecurity/trivy/pkg/mapfs"
)

// The functions here build the checks' inputs from Trivy's own parsers the
// way each of Trivy's scanners' ScanFS does, then run them on a checkSet.
// Each keeps its scanner's handling of inline ignore rules.

// lazyChecks returns the checks compiled for a source type, waiting for
// them if they are still being parsed or compiled: files are parsed
// meanwhile.
type lazyChecks func(iactypes.Source) (*checkSet, error)

func (cs lazyChecks) scanInput(ctx context.Context, source iactypes.Source, inputs ...regoInput) (scan.Results, error) {
	c, err := cs(source)
	if err != nil {
		return nil, err
	}
	return c.scanInput(ctx, source, inputs...)
}

// scanNative scans the files of one kind with the compiled checks.
func (cs lazyChecks) scanNative(ctx context.Context, k Kind, fsys fs.FS) (scan.Results, error) {
	switch k {
	case Dockerfile:
		return cs.scanGeneric(ctx, fsys, iactypes.SourceDockerfile, true, func(ctx context.Context, p string, f fs.File) ([]any, error) {
			dfs, err := dfparser.NewParser().Parse(ctx, f, p)
			return toRego(dfs), err
		})
	case Kubernetes:
		return cs.scanGeneric(ctx, fsys, iactypes.SourceKubernetes, false, func(ctx context.Context, p string, f fs.File) ([]any, error) {
			ms, err := k8sparser.Parse(ctx, f, p)
			return toRego(ms), err
		})
	case Helm:
		return cs.scanHelm(ctx, fsys)
	case Terraform:
		return cs.scanTerraform(ctx, fsys)
	case CloudFormation:
		return cs.scanCloudFormation(ctx, fsys)
	}
	return nil, nil
}

func toRego[T interface{ ToRego() any }](xs []T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x.ToRego()
	}
	return out
}

// scanGeneric is Trivy's generic.GenericScanner.ScanFS.
func (cs lazyChecks) scanGeneric(ctx context.Context, fsys fs.FS, source iactypes.Source, inlineIgnore bool,
	parse func(context.Context, string, fs.File) ([]any, error),
) (scan.Results, error) {
	var inputs []regoInput
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err != nil || d.IsDir() {
			return err
		}
		f, err := fsys.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		objs, err := parse(ctx, p, f)
		if err != nil {
			trivyLogger().Debug("Trivy cannot parse a file", "file", p, "err", err)
			return nil
		}
		for _, o := range objs {
			inputs = append(inputs, regoInput{path: p, fsys: fsys, contents: o})
		}
		return nil
	})
	if err != nil || len(inputs) == 0 {
		return nil, err
	}
	results, err := cs.scanInput(ctx, source, inputs...)
	if err != nil {
		return nil, err
	}
	results.SetSourceAndFilesystem("", fsys, false)
	if inlineIgnore {
		var files []string
		for _, r := range results.GetFailed() {
			files = append(files, r.Metadata().Range().GetFilename())
		}
		slices.Sort(files)
		for _, name := range slices.Compact(files) {
			content, err := fs.ReadFile(fsys, name)
			if err != nil {
				return nil, err
			}
			results.Ignore(ignore.Parse(string(content), name, ""), nil)
		}
	}
	return results, nil
}

// scanCloudFormation is Trivy's cloudformation.Scanner.ScanFS.
func (cs lazyChecks) scanCloudFormation(ctx context.Context, fsys fs.FS) (scan.Results, error) {
	fctxs, err := cfparser.New().ParseFS(ctx, fsys, ".")
	if err != nil {
		return nil, err
	}
	var results scan.Results
	for _, fc := range fctxs {
		if fc == nil {
			continue
		}
		state := cfadapter.Adapt(*fc)
		if state == nil {
			continue
		}
		rs, err := cs.scanInput(ctx, iactypes.SourceCloud, regoInput{
			path: fc.Metadata().Range().GetFilename(), fsys: fsys, contents: state.ToRego(),
		})
		if err != nil {
			return nil, fmt.Errorf("rego scan error: %w", err)
		}
		rs.Ignore(fc.Ignores, nil)
		results = append(results, rs...)
	}
	return results, nil
}

// chartLoc is a chart folder or a packaged chart.
type chartLoc struct {
	path      string
	isArchive bool
}

// scanHelm is Trivy's helm.Scanner.ScanFS.
func (cs lazyChecks) scanHelm(ctx context.Context, fsys fs.FS) (scan.Results, error) {
	var charts []chartLoc
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err != nil || d.IsDir() {
			return err
		}
		if detection.IsArchive(p) {
			if !chartAlreadyDiscovered(fsys, p) {
				charts = append(charts, chartLoc{path: p, isArchive: true})
			}
		} else if path.Base(p) == "Chart.yaml" {
			charts = append(charts, chartLoc{path: path.Dir(p)})
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var results scan.Results
	for _, loc := range charts {
		rs, err := cs.scanChart(ctx, fsys, loc)
		if err != nil {
			trivyLogger().Debug("skipping chart", "chart", loc.path, "err", err)
			continue
		}
		results = append(results, rs...)
	}
	return results, nil
}

func (cs lazyChecks) scanChart(ctx context.Context, fsys fs.FS, loc chartLoc) (scan.Results, error) {
	hp, err := helmparser.New()
	if err != nil {
		return nil, err
	}
	dir := loc.path
	var manifests []helmparser.Manifest
	if loc.isArchive {
		manifests, err = hp.ParseArchive(ctx, fsys, dir)
	} else {
		manifests, err = hp.ParseFS(ctx, fsys, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("parse chart: %w", err)
	}
	var results scan.Results
	for _, file := range manifests {
		rules := ignore.Parse(file.Content, file.Path, dir)
		ks, err := k8sparser.Parse(ctx, strings.NewReader(file.Content), file.Path)
		if err != nil {
			return nil, fmt.Errorf("parse rendered manifest %q: %w", file.Path, err)
		}
		mfs := mapfs.New()
		if err := mfs.MkdirAll(path.Dir(file.Path), fs.ModePerm); err != nil {
			return nil, err
		}
		if err := mfs.WriteVirtualFile(file.Path, []byte(file.Content), fs.ModePerm); err != nil {
			return nil, err
		}
		for _, m := range ks {
			rs, err := cs.scanInput(ctx, iactypes.SourceKubernetes, regoInput{path: file.Path, fsys: mfs, contents: m.ToRego()})
			if err != nil {
				return nil, fmt.Errorf("rego scan %q: %w", file.Path, err)
			}
			rs.SetSourceAndFilesystem(dir, mfs, loc.isArchive)
			rs.Ignore(rules, nil)
			results = append(results, rs...)
		}
	}
	return results, nil
}

// chartAlreadyDiscovered is Trivy's helm scanner's: a packaged chart inside
// a chart folder, or beside its unpacked copy, is not scanned again.
func chartAlreadyDiscovered(fsys fs.FS, archive string) bool {
	if _, err := fs.Stat(fsys, path.Join(path.Dir(archive), "Chart.yaml")); err == nil {
		return true
	}
	f, err := fsys.Open(archive)
	if err != nil {
		return false
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return false
	}
	defer gz.Close()
	hdr, err := tar.NewReader(gz).Next()
	if err != nil {
		return false
	}
	name := path.Clean(filepath.ToSlash(hdr.Name))
	if path.IsAbs(name) {
		return false
	}
	first, _, _ := strings.Cut(name, "/")
	if first == "." || first == ".." {
		return false
	}
	_, err = fs.Stat(fsys, path.Join(path.Dir(archive), first))
	return err == nil
}

// scanTerraform is Trivy's terraform.Scanner.ScanFS with every directory
// a module root, no downloads and no cached modules, and its executor's
// Execute without rendering causes (sluice reports none).
func (cs lazyChecks) scanTerraform(ctx context.Context, fsys fs.FS) (scan.Results, error) {
	dirs := findTFModules(fsys, ".")
	slices.Sort(dirs)
	if len(dirs) == 0 {
		return nil, nil
	}
	opts := []tfparser.Option{tfparser.OptionWithDownloads(false), tfparser.OptionWithSkipCachedModules(true)}
	roots, err := tfparser.New(fsys, "", opts...).FindRootModules(ctx, dirs)
	if err != nil {
		return nil, fmt.Errorf("failed to find root modules: %w", err)
	}
	var all scan.Results
	for _, dir := range roots {
		p := tfparser.New(fsys, "", opts...)
		if err := p.ParseFS(ctx, dir); err != nil {
			return nil, err
		}
		modules, err := p.EvaluateAll(ctx)
		if err != nil {
			return nil, err
		}
		results, err := cs.executeTerraform(ctx, modules, dir)
		if err != nil {
			return nil, err
		}
		fsMap := p.GetFilesystemMap()
		for i, r := range results {
			if r.Metadata().Range().GetFS() != nil {
				continue
			}
			key := r.Metadata().Range().GetFSKey()
			if key == "" {
				continue
			}
			if f, ok := fsMap[key]; ok {
				o := scan.Results{r}
				o.SetSourceAndFilesystem(r.Range().GetSourcePrefix(), f, false)
				results[i] = o[0]
			}
		}
		all = append(all, results...)
	}
	return all, nil
}

func (cs lazyChecks) executeTerraform(ctx context.Context, modules terraform.Modules, base string) (scan.Results, error) {
	infra := tfadapter.Adapt(modules)
	results, err := cs.scanInput(ctx, iactypes.SourceCloud, regoInput{path: base, contents: infra.ToRego()})
	if err != nil {
		return nil, err
	}
	var rules ignore.Rules
	for _, m := range modules {
		rules = append(rules, m.Ignores()...)
	}
	results.Ignore(rules, map[string]ignore.Ignorer{
		"ws": func(_ iactypes.Metadata, param any) bool {
			ws, ok := param.(string)
			return ok && ignore.MatchPatternCaseSensitive("", ws)
		},
		"ignore": func(meta iactypes.Metadata, param any) bool {
			params, ok := param.(map[string]string)
			return ok && ignoreByParams(params, modules, &meta)
		},
	})
	return results, nil
}

// ignoreByParams is Trivy's terraform executor's: an ignore rule with
// attribute conditions holds when the block's attributes have those values.
func ignoreByParams(params map[string]string, modules terraform.Modules, m *iactypes.Metadata) bool {
	if len(params) == 0 {
		return true
	}
	block := modules.GetBlockByIgnoreRange(m)
	if block == nil {
		return true
	}
	for key, param := range params {
		val := block.GetValueByPath(key)
		if val.IsNull() || !val.IsKnown() {
			return false
		}
		switch val.Type() {
		case cty.String:
			if val.AsString() != param {
				return false
			}
		case cty.Number:
			f64, _ := val.AsBigFloat().Float64()
			if param != strconv.Itoa(int(f64)) && param != fmt.Sprintf("%f", f64) {
				return false
			}
		case cty.Bool:
			if strconv.FormatBool(val.True()) != param {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// findTFModules is Trivy's terraform scanner's findModules with all
// directories forced: every directory holding Terraform files.
func findTFModules(fsys fs.FS, dirs ...string) []string {
	var roots, others []string
	for _, dir := range dirs {
		entries, err := fs.ReadDir(fsys, filepath.ToSlash(dir))
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() && isTFFile(e.Name()) {
				roots = append(roots, dir)
				break
			}
		}
		for _, e := range entries {
			if e.IsDir() {
				others = append(others, path.Join(dir, e.Name()))
			}
		}
	}
	if len(others) > 0 {
		roots = append(roots, findTFModules(fsys, others...)...)
	}
	return roots
}

func isTFFile(name string) bool {
	for _, suf := range []string{".tf", ".tf.json", ".tofu", ".tofu.json"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return false
}

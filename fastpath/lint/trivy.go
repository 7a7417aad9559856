package lint

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"
	"testing/fstest"

	"github.com/sourcegraph/conc"
	"github.com/sourcegraph/conc/pool"

	trivylog "github.com/aquasecurity/trivy/pkg/log"

	"github.com/aquasecurity/trivy/pkg/iac/rego"
	"github.com/aquasecurity/trivy/pkg/iac/scan"
	cfscanner "github.com/aquasecurity/trivy/pkg/iac/scanners/cloudformation"
	dfscanner "github.com/aquasecurity/trivy/pkg/iac/scanners/dockerfile"
	"github.com/aquasecurity/trivy/pkg/iac/scanners/helm"
	k8sscanner "github.com/aquasecurity/trivy/pkg/iac/scanners/kubernetes"
	"github.com/aquasecurity/trivy/pkg/iac/scanners/options"
	"github.com/aquasecurity/trivy/pkg/iac/scanners/terraform"
	iactypes "github.com/aquasecurity/trivy/pkg/iac/types"
)

// trivyEngine runs Trivy's misconfiguration checks. It runs them with
// sluice's checkLib (checks parsed once, compiled once per input type, each
// rule's query prepared once) over the inputs Trivy's parsers make; with rs
// set instead it hands the files to Trivy's scanners whole, which is slower
// and kept to show that both give the same findings.
type trivyEngine struct {
	checks lazyChecks
	rs     *rego.Scanner
}

// quietTrivyLog stops Trivy's logger from keeping every record in memory:
// until initialised, Trivy's log package buffers all of them. Only a
// default left as Trivy's init set it is replaced.
func quietTrivyLog() {
	if _, ok := slog.Default().Handler().(*trivylog.DeferredHandler); ok {
		trivylog.InitLogger(false, true)
	}
}

// trivyLogger logs where Trivy's scanners would: quiet unless Trivy's
// logger is set up to speak (see quietTrivyLog).
func trivyLogger() *trivylog.Logger { return trivylog.WithPrefix("lint") }

// skipRuleRegistry stops rego.NewScanner from parsing and compiling every
// embedded check a second time only to fill Trivy's global rule registry,
// which serves Trivy's cloud and compliance commands and nothing sluice
// calls: scans take each check's metadata from the scanner's own compiled
// modules. It halves the cost of loading the checks (see the lint
// benchmark). Done once, before the first scanner is made.
var skipRuleRegistry = sync.OnceFunc(func() { rego.LoadAndRegister = func() {} })

func newTrivyEngine(bundle string) (*trivyEngine, error) {
	quietTrivyLog()
	if bundle != "" {
		if err := checkBundleDir(bundle); err != nil {
			return nil, err
		}
	}
	// The checks are parsed while the change's files are read and parsed.
	var (
		wg  conc.WaitGroup
		lib *checkLib
		err error
	)
	wg.Go(func() {
		if lib, err = loadCheckLib(context.Background(), bundle); err != nil {
			err = fmt.Errorf("loading Trivy checks: %w", err)
		}
	})
	loaded := sync.OnceValues(func() (*checkLib, error) {
		wg.Wait()
		return lib, err
	})
	return &trivyEngine{checks: func(src iactypes.Source) (*checkSet, error) {
		l, err := loaded()
		if err != nil {
			return nil, err
		}
		return l.set(src)
	}}, nil
}

// wait compiles the checks for every source type, two at a time.
func (e *trivyEngine) wait() error {
	if e.checks == nil {
		return nil
	}
	p := pool.New().WithErrors().WithMaxGoroutines(2)
	for _, src := range checkSources {
		p.Go(func() error {
			_, err := e.checks(src)
			return err
		})
	}
	return p.Wait()
}

func checkBundleDir(bundle string) error {
	st, err := os.Stat(bundle)
	if err != nil {
		return fmt.Errorf("reading checks bundle: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("checks bundle %s is not a folder (unpack the bundle first)", bundle)
	}
	return nil
}

// newTrivyScannerEngine runs the checks with Trivy's own Rego scanner and
// file scanners.
func newTrivyScannerEngine(bundle string) (*trivyEngine, error) {
	quietTrivyLog()
	skipRuleRegistry()
	opts := []options.ScannerOption{
		rego.WithEmbeddedPolicies(bundle == ""),
		rego.WithEmbeddedLibraries(bundle == ""),
	}
	if bundle != "" {
		if err := checkBundleDir(bundle); err != nil {
			return nil, err
		}
		opts = append(opts, rego.WithPolicyFilesystem(os.DirFS(bundle)), rego.WithPolicyDirs("."))
	}
	rs := rego.NewScanner(opts...)
	if err := rs.LoadPolicies(nil); err != nil {
		return nil, fmt.Errorf("loading Trivy checks: %w", err)
	}
	return &trivyEngine{rs: rs}, nil
}

// target is one Trivy scanner over the files of its kind.
type target struct {
	kind  Kind
	fsys  fstest.MapFS
	files map[string]string // fs path -> change path
	// report says whether findings in a file (by change path) are reported.
	report map[string]bool
}

// fsPath makes a change path valid in an fs.FS.
func fsPath(p string) string {
	p = strings.TrimPrefix(path.Clean(p), "/")
	p = strings.ReplaceAll(p, "../", "_up_/")
	if p == ".." {
		p = "_up_"
	}
	return p
}

func (t *target) add(p string, content []byte, report bool) {
	fp := fsPath(p)
	t.fsys[fp] = &fstest.MapFile{Data: content, Mode: 0o644}
	t.files[fp] = p
	if report {
		t.report[p] = true
	}
}

func newTarget(k Kind) *target {
	return &target{kind: k, fsys: fstest.MapFS{}, files: map[string]string{}, report: map[string]bool{}}
}

// scan runs the checks for each kind present, side by side.
func (e *trivyEngine) scan(ctx context.Context, inputs, extra []*input, charts []*chart) ([]Finding, []string, error) {
	targets := map[Kind]*target{}
	get := func(k Kind) *target {
		if targets[k] == nil {
			targets[k] = newTarget(k)
		}
		return targets[k]
	}
	for _, in := range inputs {
		if len(in.syntax) > 0 {
			continue // reported as a syntax finding; Trivy would only log it
		}
		get(in.kind).add(in.path, in.content, true)
	}
	for _, in := range extra {
		if targets[Terraform] != nil {
			targets[Terraform].add(in.path, in.content, false)
		}
	}
	for _, c := range charts {
		t := get(Helm)
		for p, data := range c.files {
			t.add(p, data, true)
		}
	}
	order := []Kind{Dockerfile, Kubernetes, Helm, Terraform, CloudFormation}
	results := make([][]Finding, len(order))
	p := pool.New().WithErrors().WithContext(ctx).WithMaxGoroutines(2)
	if e.checks != nil && (targets[Terraform] != nil || targets[CloudFormation] != nil) {
		// The cloud checks are the most to compile: start them first, beside
		// the other kinds, which compile their own checks when they need them.
		p.Go(func(context.Context) error {
			_, err := e.checks(iactypes.SourceCloud)
			return err
		})
	}
	for i, k := range order {
		t := targets[k]
		if t == nil {
			continue
		}
		p.Go(func(ctx context.Context) error {
			fs, err := e.scanTarget(ctx, t)
			results[i] = fs
			return err
		})
	}
	if err := p.Wait(); err != nil {
		return nil, nil, err
	}
	var out []Finding
	for _, r := range results {
		out = append(out, r...)
	}
	return out, nil, nil
}

type fsScanner interface {
	ScanFS(ctx context.Context, fsys fs.FS, dir string) (scan.Results, error)
}

func (e *trivyEngine) scanTarget(ctx context.Context, t *target) ([]Finding, error) {
	var res scan.Results
	var err error
	if e.checks != nil {
		res, err = e.checks.scanNative(ctx, t.kind, newMemFS(t.fsys))
	} else {
		res, err = e.scanTrivy(ctx, t)
	}
	if err != nil {
		return nil, fmt.Errorf("scanning %s files: %w", t.kind, err)
	}
	return t.findings(res), nil
}

// scanTrivy scans a target with Trivy's scanner for its kind.
func (e *trivyEngine) scanTrivy(ctx context.Context, t *target) (scan.Results, error) {
	withRego := rego.WithRegoScanner(e.rs)
	var sc fsScanner
	switch t.kind {
	case Dockerfile:
		sc = dfscanner.NewScanner(withRego)
	case Kubernetes:
		sc = k8sscanner.NewScanner(withRego)
	case Helm:
		sc = helm.New(withRego)
	case Terraform:
		sc = terraform.New(withRego,
			terraform.ScannerWithAllDirectories(true),
			terraform.ScannerWithDownloadsAllowed(false),
			terraform.ScannerWithSkipCachedModules(true),
		)
	case CloudFormation:
		sc = cfscanner.New(withRego)
	default:
		return nil, nil
	}
	return sc.ScanFS(ctx, newMemFS(t.fsys), ".")
}

// findings turns the failed results into findings in the files reported.
func (t *target) findings(res scan.Results) []Finding {
	var out []Finding
	for _, r := range res {
		if r.Status() != scan.StatusFailed {
			continue
		}
		flat := r.Flatten()
		file, ok := t.files[fsPath(flat.Location.Filename)]
		if !ok {
			file = flat.Location.Filename
		}
		if !t.report[file] {
			continue
		}
		rule := r.Rule()
		id := rule.ID
		if id == "" {
			id = rule.AVDID
		}
		msg := strings.TrimSpace(flat.Description)
		if res := strings.TrimSpace(flat.Resolution); res != "" {
			msg = strings.TrimSuffix(msg, ".") + "; " + lowerFirst(strings.TrimSuffix(res, "."))
		}
		line := flat.Location.StartLine
		if line <= 0 {
			line = 1
		}
		out = append(out, Finding{
			Check: id, Severity: string(flat.Severity), File: file, Line: line, Message: msg, Kind: t.kind,
		})
	}
	return out
}

func lowerFirst(s string) string {
	if s == "" || strings.ToUpper(s[:1]) != s[:1] || len(s) > 1 && strings.ToUpper(s[1:2]) == s[1:2] {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

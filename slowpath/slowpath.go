// Package slowpath owns deep analysis: the durable queue, the worker, the
// deep controls (image scan, dependency scan, SBOM), the results store and
// the vulnerability DB lifecycle.
//
// The deep controls themselves are in package deep (Trivy as a library)
// and the vulnerability DB's lifecycle in package vulndb; this package
// declares the controls to the gate, with their policy options.
package slowpath

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/slowpath/deep"
)

// ScanOptions are the policy keys of image-scan and dependency-scan.
type ScanOptions struct {
	// Severity is the lowest severity reported (UNKNOWN, LOW, MEDIUM, HIGH,
	// CRITICAL); every severity is reported unless set.
	Severity string `yaml:"severity"`
	// IgnoreUnfixed drops vulnerabilities that have no fixed version yet.
	IgnoreUnfixed bool `yaml:"ignore_unfixed"`
	// SBOM keeps a CycloneDX SBOM of what was scanned (default true).
	SBOM bool `yaml:"sbom"`
	// Platform picks the image of a multi-platform index (image-scan only;
	// default linux/amd64).
	Platform string `yaml:"platform"`
}

func newScanOptions() any { return &ScanOptions{SBOM: true} }

// DeepOptions turns the policy's options into the scanners' options; the
// caller adds DBDir, Logger and registry settings.
func (o *ScanOptions) DeepOptions() deep.Options {
	return deep.Options{MinSeverity: strings.ToUpper(o.Severity), IgnoreUnfixed: o.IgnoreUnfixed, SkipSBOM: !o.SBOM, Platform: o.Platform}
}

func validateScan(image bool) func(any, gate.Env) error {
	return func(opts any, _ gate.Env) error {
		o, ok := opts.(*ScanOptions)
		if !ok {
			return fmt.Errorf("internal: options of type %T", opts)
		}
		if o.Severity != "" && !slices.Contains(deep.Severities, strings.ToUpper(o.Severity)) {
			return &gate.FieldError{Field: "severity", Err: fmt.Errorf("unknown severity %q (want one of %s)", o.Severity, strings.Join(deep.Severities, ", "))}
		}
		if o.Platform != "" {
			if !image {
				return &gate.FieldError{Field: "platform", Err: errors.New("applies to image-scan only")}
			}
			if os, arch, ok := strings.Cut(o.Platform, "/"); !ok || os == "" || arch == "" {
				return &gate.FieldError{Field: "platform", Err: fmt.Errorf("bad platform %q (want os/arch, e.g. linux/arm64)", o.Platform)}
			}
		}
		return nil
	}
}

// Specs returns the deep controls, all slow-only.
func Specs() []gate.Spec {
	slow := budgets.Budget{Time: 10 * time.Minute, OnOverrun: budgets.FailClosed, OnError: budgets.FailClosed}
	return []gate.Spec{
		{
			Name: "image-scan", Kind: "image-scan", Placement: gate.Slow, SlowOnly: true, Enabled: true, Budget: slow,
			NewOptions: newScanOptions, Validate: validateScan(true),
			Subjects: func(ch *gate.Change) []string { return slices.Clone(ch.Images) },
		},
		{
			Name: "dependency-scan", Kind: "dependency-scan", Placement: gate.Slow, SlowOnly: true, Enabled: true, Budget: slow,
			NewOptions: newScanOptions, Validate: validateScan(false),
			Subjects: dependencySubjects,
		},
	}
}

// manifests are dependency manifests and lockfiles whose change calls for a
// dependency scan.
var manifests = []string{
	"go.mod", "go.sum", "package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml",
	"requirements.txt", "Pipfile.lock", "poetry.lock", "uv.lock", "pyproject.toml", "Gemfile.lock", "Cargo.lock",
	"composer.lock", "pom.xml", "build.gradle", "build.gradle.kts", "gradle.lockfile", "packages.lock.json",
	"mix.lock", "pubspec.lock", "Podfile.lock", "conan.lock",
}

// IsManifest reports whether a slash-separated path names a dependency
// manifest or lockfile: what a dependency scan reads.
func IsManifest(p string) bool {
	base := path.Base(p)
	return slices.Contains(manifests, base) || strings.HasPrefix(base, "requirements") && strings.HasSuffix(base, ".txt")
}

// dependencySubjects names the change once if it touches any manifest.
func dependencySubjects(ch *gate.Change) []string {
	for _, f := range ch.Files {
		if IsManifest(f.Path) {
			return []string{ch.Subject()}
		}
	}
	return nil
}

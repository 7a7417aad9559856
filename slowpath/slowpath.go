// Package slowpath owns deep analysis: the durable queue, the worker, the
// deep controls (image scan, dependency scan, SBOM), the results store and
// the vulnerability DB lifecycle.
//
// Not built yet: this version only declares the deep controls so that a
// policy can place and budget them and a verdict can list the work it
// defers. Nothing is enqueued and nothing runs it; every verdict says so.
package slowpath

import (
	"path"
	"slices"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
)

// Specs returns the deep controls, all slow-only.
func Specs() []gate.Spec {
	slow := budgets.Budget{Time: 10 * time.Minute, OnOverrun: budgets.FailClosed, OnError: budgets.FailClosed}
	return []gate.Spec{
		{
			Name: "image-scan", Kind: "image-scan", Placement: gate.Slow, SlowOnly: true, Enabled: true, Budget: slow,
			Subjects: func(ch *gate.Change) []string { return slices.Clone(ch.Images) },
		},
		{
			Name: "dependency-scan", Kind: "dependency-scan", Placement: gate.Slow, SlowOnly: true, Enabled: true, Budget: slow,
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

// dependencySubjects names the change once if it touches any manifest.
func dependencySubjects(ch *gate.Change) []string {
	for _, f := range ch.Files {
		base := path.Base(f.Path)
		if slices.Contains(manifests, base) || strings.HasPrefix(base, "requirements") && strings.HasSuffix(base, ".txt") {
			return []string{ch.Subject()}
		}
	}
	return nil
}

package deep_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sluice-ci/sluice/slowpath/deep"
)

// TestCompareWithTrivyCLI scans the fixture image with sluice and with
// Trivy's CLI (offline, the same DB) and compares the (vulnerability,
// package) pairs. It runs only when CMP_TRIVY names a trivy binary; build
// one from the module sluice links as bench/image-scan.sh does:
//
//	CMP_TRIVY=$(go env GOPATH)/bin/trivy GOEXPERIMENT=jsonv2 \
//	  go test -run TestCompareWithTrivyCLI -v ./slowpath/deep
func TestCompareWithTrivyCLI(t *testing.T) {
	trivy := os.Getenv("CMP_TRIVY")
	if trivy == "" {
		t.Skip("set CMP_TRIVY to a trivy binary to compare with Trivy's CLI")
	}
	e := setup(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "image.tar")
	tag, _ := name.NewTag("compare/debian:12")
	if err := tarball.WriteToFile(file, tag, e.img); err != nil {
		t.Fatal(err)
	}
	// Trivy's CLI reads <cache-dir>/db.
	cache := filepath.Join(dir, "trivy-cache")
	os.MkdirAll(cache, 0o755)
	real, err := filepath.EvalSymlinks(e.dbDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(cache, "db")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "trivy.json")
	cmd := exec.Command(trivy, "image", "--input", file, "--skip-db-update", "--skip-java-db-update", "--offline-scan",
		"--scanners", "vuln", "--cache-dir", cache, "--format", "json", "--quiet", "--output", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("trivy: %v\n%s", err, b)
	}
	var trep struct {
		Results []struct {
			Vulnerabilities []struct{ VulnerabilityID, PkgName, InstalledVersion string }
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &trep); err != nil {
		t.Fatal(err)
	}
	var theirs []string
	for _, r := range trep.Results {
		for _, v := range r.Vulnerabilities {
			theirs = append(theirs, v.VulnerabilityID+" "+v.PkgName+" "+v.InstalledVersion)
		}
	}
	rep, err := deep.ScanImage(context.Background(), "tarball:"+file, e.opts())
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, f := range rep.Findings {
		ours = append(ours, f.Rule+" "+f.Message)
	}
	// The message starts "pkg version: ..."; compare on id, package, version.
	for i, o := range ours {
		var id, pkg, ver string
		if _, err := fmt.Sscan(o, &id, &pkg, &ver); err != nil {
			t.Fatalf("parsing %q: %v", o, err)
		}
		ours[i] = id + " " + pkg + " " + ver[:len(ver)-1]
	}
	slices.Sort(ours)
	slices.Sort(theirs)
	if !slices.Equal(ours, theirs) {
		t.Errorf("sluice and trivy differ:\nsluice %q\ntrivy  %q", ours, theirs)
	}
	if len(theirs) == 0 {
		t.Error("trivy found nothing; the comparison proves nothing")
	}
	t.Logf("%d findings agree: %q", len(ours), ours)
}

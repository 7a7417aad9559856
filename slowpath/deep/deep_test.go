package deep_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/sourcegraph/conc"

	"github.com/sluice-ci/sluice/internal/vulnfixture"
	"github.com/sluice-ci/sluice/slowpath/deep"
	"github.com/sluice-ci/sluice/slowpath/vulndb"
)

// packages are real packages of this machine's dpkg database that the
// fixture advisories (testdata/debian.yaml.tmpl) are written for.
var packages = []string{"libc6", "zlib1g", "openssl", "bash", "tar"}

// wantImageIDs are the vulnerabilities the fixtures make of them: libc6
// and bash fixed just above their installed versions, openssl affected
// with no fix; zlib1g fixed at its installed version and tar long fixed
// are not vulnerable.
var wantImageIDs = []string{"CVE-2099-0001", "CVE-2099-0003", "CVE-2099-0004"}

type env struct {
	host   string
	ref    string // the image by tag in the in-process registry
	img    v1.Image
	dbDir  string
	pkgs   map[string]vulnfixture.Pkg
	logger *slog.Logger
}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := deep.Cleanup(); err != nil {
		log.Print(err)
	}
	os.Exit(code)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setup builds the fixture DB, serves it and the image from an in-process
// registry, and installs the DB with vulndb.Fetch, as `sluice db fetch`
// does.
func setup(t *testing.T) *env {
	t.Helper()
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		t.Skip("needs a Debian machine: /var/lib/dpkg/status")
	}
	ctx := context.Background()
	pkgs, err := vulnfixture.Installed("/var/lib/dpkg/status", packages...)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	rendered := filepath.Join(work, "debian.yaml")
	if err := vulnfixture.Render("testdata/debian.yaml.tmpl", rendered, pkgs); err != nil {
		t.Fatal(err)
	}
	built := filepath.Join(work, "built")
	if err := vulnfixture.BuildDB(built, []string{rendered, "testdata/lang.yaml"}, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	archive, err := vulnfixture.PackDB(built)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	art, err := vulnfixture.DBArtifact(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := vulnfixture.Push(ctx, host+"/aquasec/trivy-db:2", art); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(work, "cache")
	if _, err := vulndb.Fetch(ctx, []string{host + "/aquasec/trivy-db:2"}, cache, vulndb.Options{Insecure: true, Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	img, err := vulnfixture.DebianImage("/")
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/app/debian:12"
	if err := vulnfixture.Push(ctx, ref, img); err != nil {
		t.Fatal(err)
	}
	return &env{host: host, ref: ref, img: img, dbDir: vulndb.Path(cache), pkgs: pkgs, logger: quiet()}
}

func (e *env) opts() deep.Options {
	return deep.Options{DBDir: e.dbDir, Insecure: true, Logger: e.logger}
}

func ids(rep *deep.Report) []string {
	var out []string
	for _, f := range rep.Findings {
		if !slices.Contains(out, f.Rule) {
			out = append(out, f.Rule)
		}
	}
	slices.Sort(out)
	return out
}

func TestScanImage(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	digest, err := e.img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	// The first scan of the process, with the zero Logger: slog's default,
	// which is Trivy's buffering handler until a scan quietens it.
	o := e.opts()
	o.Logger = nil
	rep, err := deep.ScanImage(ctx, e.ref, o)
	if err != nil {
		t.Fatalf("ScanImage: %v", err)
	}
	if got := ids(rep); !slices.Equal(got, wantImageIDs) {
		t.Errorf("vulnerabilities = %v, want %v", got, wantImageIDs)
	}
	if rep.Digest != digest.String() || rep.Subject != e.host+"/app/debian@"+digest.String() {
		t.Errorf("Subject %q Digest %q, want the image pulled by its digest %s", rep.Subject, rep.Digest, digest)
	}
	if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, "resolved to "+digest.String()) }) {
		t.Errorf("Notes %q do not say the tag was resolved", rep.Notes)
	}
	if !strings.HasPrefix(rep.OS, "debian 12") {
		t.Errorf("OS = %q, want debian 12.x", rep.OS)
	}
	if rep.DBVersion == "" {
		t.Error("no DBVersion")
	}
	libc := e.pkgs["libc6"]
	for _, f := range rep.Findings {
		if f.Rule != "CVE-2099-0001" {
			continue
		}
		if f.Severity != "HIGH" || !strings.HasPrefix(f.File, "debian 12") || f.Fingerprint == "" {
			t.Errorf("finding %+v: want HIGH, target debian 12.x, a fingerprint", f)
		}
		if !strings.Contains(f.Message, libc.Version) || !strings.Contains(f.Message, "fixed in "+libc.SrcVersion+"+sluice1; upgrade") {
			t.Errorf("message %q, want the installed version %s and the fix", f.Message, libc.Version)
		}
	}

	t.Run("the SBOM is CycloneDX listing the installed packages", func(t *testing.T) {
		var bom cdx.BOM
		if err := json.Unmarshal(rep.SBOM, &bom); err != nil {
			t.Fatalf("SBOM does not parse: %v", err)
		}
		if bom.BOMFormat != "CycloneDX" || bom.Components == nil {
			t.Fatalf("not a CycloneDX BOM with components: format %q", bom.BOMFormat)
		}
		have := map[string]string{}
		for _, c := range *bom.Components {
			have[c.Name] = c.Version
		}
		for _, n := range packages {
			if v, ok := have[n]; !ok || v != e.pkgs[n].Version {
				t.Errorf("SBOM lists %s at %q, want %q", n, v, e.pkgs[n].Version)
			}
		}
	})

	t.Run("the same scan twice gives the same findings and fingerprints", func(t *testing.T) {
		again, err := deep.ScanImage(ctx, e.host+"/app/debian@"+digest.String(), e.opts())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(again.Findings, rep.Findings) {
			t.Errorf("second scan differs:\n%v\n%v", again.Findings, rep.Findings)
		}
		if len(again.Notes) != 0 {
			t.Errorf("a digest reference needs no resolving, got notes %q", again.Notes)
		}
	})

	t.Run("options filter by severity and fix", func(t *testing.T) {
		o := e.opts()
		o.MinSeverity, o.SkipSBOM = "HIGH", true
		hi, err := deep.ScanImage(ctx, e.ref, o)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ids(hi), []string{"CVE-2099-0001", "CVE-2099-0004"}; !slices.Equal(got, want) {
			t.Errorf("HIGH and above = %v, want %v", got, want)
		}
		if hi.SBOM != nil {
			t.Error("SBOM made though skipped")
		}
		o = e.opts()
		o.IgnoreUnfixed = true
		fixed, err := deep.ScanImage(ctx, e.ref, o)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ids(fixed), []string{"CVE-2099-0001", "CVE-2099-0004"}; !slices.Equal(got, want) {
			t.Errorf("ignoring unfixed = %v, want %v", got, want)
		}
	})
}

func TestScanImageFromLayoutAndTarball(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	digest, _ := e.img.Digest()
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(e.img); err != nil {
		t.Fatal(err)
	}
	tarFile := filepath.Join(dir, "image.tar")
	tag, _ := name.NewTag("app/debian:12")
	if err := tarball.WriteToFile(tarFile, tag, e.img); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ref, subject string
	}{
		{"an OCI layout with its only image", "oci:" + filepath.Join(dir, "layout"), "oci:" + filepath.Join(dir, "layout") + "@" + digest.String()},
		{"an OCI layout naming the digest", "oci:" + filepath.Join(dir, "layout") + "@" + digest.String(), "oci:" + filepath.Join(dir, "layout") + "@" + digest.String()},
		{"a docker-save tarball", "tarball:" + tarFile, "tarball:" + tarFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := deep.ScanImage(ctx, tt.ref, e.opts())
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(rep); !slices.Equal(got, wantImageIDs) {
				t.Errorf("vulnerabilities = %v, want %v", got, wantImageIDs)
			}
			if rep.Subject != tt.subject {
				t.Errorf("Subject = %q, want %q", rep.Subject, tt.subject)
			}
		})
	}
	t.Run("a layout without that digest is an error", func(t *testing.T) {
		_, err := deep.ScanImage(ctx, "oci:"+filepath.Join(dir, "layout")+"@sha256:"+strings.Repeat("0", 64), e.opts())
		if err == nil || !strings.Contains(err.Error(), "no manifest") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestScanDependencies(t *testing.T) {
	e := setup(t)
	rep, err := deep.ScanDependencies(context.Background(), "testdata/repo", e.opts())
	if err != nil {
		t.Fatal(err)
	}
	// x/text v0.3.7 and lodash 4.17.20 are vulnerable; uuid v1.6.0 and
	// minimist 1.2.8 are past their fixes.
	if got, want := ids(rep), []string{"CVE-2021-23337", "CVE-2022-32149"}; !slices.Equal(got, want) {
		t.Errorf("vulnerabilities = %v, want %v", got, want)
	}
	files := map[string]string{}
	for _, f := range rep.Findings {
		files[f.Rule] = f.File
	}
	if files["CVE-2022-32149"] != "go.mod" || files["CVE-2021-23337"] != "web/package-lock.json" {
		t.Errorf("targets = %v, want go.mod and web/package-lock.json", files)
	}
	if rep.OS != "" {
		t.Errorf("OS = %q for a repository tree", rep.OS)
	}
}

func TestMissingDBNamesTheCommand(t *testing.T) {
	_, err := deep.ScanDependencies(context.Background(), "testdata/repo", deep.Options{DBDir: t.TempDir(), Logger: quiet()})
	if !errors.Is(err, vulndb.ErrNotInstalled) || !strings.Contains(err.Error(), "sluice db fetch") {
		t.Errorf("err = %v, want ErrNotInstalled naming `sluice db fetch`", err)
	}
}

func TestANewDBIsUsedByTheNextScan(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	cache := filepath.Dir(e.dbDir)
	o := e.opts()
	o.DBDir, o.SkipSBOM = cache, true // the cache directory is accepted too
	before, err := deep.ScanImage(ctx, e.ref, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(before); !slices.Equal(got, wantImageIDs) {
		t.Fatalf("before: %v", got)
	}
	// A newer DB without any Debian advisory, imported as an operator would.
	dir := t.TempDir()
	if err := vulnfixture.BuildDB(dir, []string{"testdata/lang.yaml"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	archive, err := vulnfixture.PackDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "db.tar.gz")
	os.WriteFile(file, archive, 0o644)
	info, err := vulndb.Import(ctx, file, cache, vulndb.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	after, err := deep.ScanImage(ctx, e.ref, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(after); len(got) != 0 {
		t.Errorf("after a DB without Debian advisories: %v", got)
	}
	if after.DBVersion != info.String() || after.DBVersion == before.DBVersion {
		t.Errorf("DBVersion %q, want the new DB's %q", after.DBVersion, info.String())
	}
}

// TestScansSideBySide: a worker with several slots may start image scans and
// a dependency scan at once; both finish with their own findings. (Trivy's
// analyzers are process-wide, so deep runs one scan at a time; under
// `go test -race` this test fails if that guard goes.)
func TestScansSideBySide(t *testing.T) {
	e := setup(t)
	var (
		wg    conc.WaitGroup
		imgs  [2]*deep.Report
		ierrs [2]error
		deps  *deep.Report
		derr  error
	)
	// From a tarball, not the registry: the HTTP client's own locking
	// would order the scans and hide a race from the detector.
	tarFile := filepath.Join(t.TempDir(), "image.tar")
	tag, _ := name.NewTag("app/debian:12")
	if err := tarball.WriteToFile(tarFile, tag, e.img); err != nil {
		t.Fatal(err)
	}
	for i := range imgs {
		wg.Go(func() { imgs[i], ierrs[i] = deep.ScanImage(context.Background(), "tarball:"+tarFile, e.opts()) })
	}
	wg.Go(func() { deps, derr = deep.ScanDependencies(context.Background(), "testdata/repo", e.opts()) })
	wg.Wait()
	if err := errors.Join(ierrs[0], ierrs[1], derr); err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		if got := ids(img); !slices.Equal(got, wantImageIDs) {
			t.Errorf("image IDs %v, want %v", got, wantImageIDs)
		}
	}
	if got, want := ids(deps), []string{"CVE-2021-23337", "CVE-2022-32149"}; !slices.Equal(got, want) {
		t.Errorf("dependency IDs %v, want %v", got, want)
	}
}

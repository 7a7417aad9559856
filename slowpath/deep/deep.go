// Package deep runs the deep controls with Trivy as a library: the
// vulnerabilities of an image's OS and language packages (pulled by digest
// from a registry, or read from an OCI layout or a tarball), those of a
// repository tree's lockfiles and manifests, and a CycloneDX SBOM of what
// was found.
//
// The scanners only read the vulnerability DB installed by package vulndb
// (`sluice db fetch`); they never download it, and fail with an error that
// says so when it is missing.
package deep

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/go-containerregistry/pkg/authn"

	trivydb "github.com/aquasecurity/trivy-db/pkg/db"
	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/aquasecurity/trivy/pkg/cache"
	"github.com/aquasecurity/trivy/pkg/db"
	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	"github.com/aquasecurity/trivy/pkg/fanal/applier"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact/image"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact/local"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/fanal/walker"
	trivylog "github.com/aquasecurity/trivy/pkg/log"
	sbomcdx "github.com/aquasecurity/trivy/pkg/sbom/cyclonedx"
	"github.com/aquasecurity/trivy/pkg/scan"
	"github.com/aquasecurity/trivy/pkg/scan/langpkg"
	scanlocal "github.com/aquasecurity/trivy/pkg/scan/local"
	"github.com/aquasecurity/trivy/pkg/scan/ospkg"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/vulnerability"
	xos "github.com/aquasecurity/trivy/pkg/x/os"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/slowpath/vulndb"
)

// Severities in Trivy's order, most severe last.
var Severities = []string{"UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"}

// Options configure a scan. DBDir is required; the zero value of every
// other field is a working default.
type Options struct {
	// DBDir holds trivy.db and metadata.json: vulndb.Path of the cache (the
	// cache directory itself is accepted too). Each scan opens the DB the
	// directory holds then, so a DB installed meanwhile is used by the next.
	DBDir string
	// CacheDir is where scratch files go (an OCI tarball unpacked); ""
	// means the system's temporary directory.
	CacheDir string
	// Insecure allows plain-HTTP registries.
	Insecure bool
	// Keychain resolves registry credentials; nil means authn.DefaultKeychain.
	Keychain authn.Keychain
	// Logger receives progress; nil means slog.Default().
	Logger *slog.Logger
	// MinSeverity drops findings below it ("" keeps every severity).
	MinSeverity string
	// IgnoreUnfixed drops vulnerabilities with no fixed version.
	IgnoreUnfixed bool
	// SkipSBOM leaves Report.SBOM empty.
	SkipSBOM bool
	// Platform picks an image from a multi-platform index ("os/arch");
	// "" means linux/amd64.
	Platform string
}

// Report is what a deep scan found.
type Report struct {
	// Subject is what was scanned: "repo@sha256:..." for a registry image,
	// "oci:DIR@sha256:...", "tarball:FILE" or the directory.
	Subject string `json:"subject"`
	// Digest is the manifest digest of the image scanned (empty for a
	// directory).
	Digest string `json:"digest,omitempty"`
	// OS is the detected distribution, e.g. "debian 12.11".
	OS string `json:"os,omitempty"`
	// Findings are one per vulnerability and package, sorted.
	Findings []gate.Finding `json:"findings"`
	// SBOM is the CycloneDX JSON of the packages found.
	SBOM []byte `json:"-"`
	// DBVersion names the vulnerability DB used (vulndb.Info.String()).
	DBVersion string `json:"db_version"`
	// Notes say what a reader should know besides findings (a tag resolved
	// to a digest, an OS past its end of life).
	Notes []string `json:"notes,omitempty"`
	// Packages counts the packages found.
	Packages int `json:"packages"`
}

// scanning runs one scan at a time in a process: Trivy's analyzers are
// process-wide instances that every scan re-initialises (found by the race
// detector with two worker slots scanning at once). A scan is parallel
// inside (layers side by side); more worker processes scan more at once.
var scanning sync.Mutex

// trivyDB guards trivy-db's process-wide handle: Trivy keeps one open DB
// per process, so scans share it and a scan with another DBDir waits for
// the running ones and reopens it.
var trivyDB struct {
	sync.RWMutex
	dir string
}

// openDB makes dbDir the open DB and returns a release function holding it
// open until called.
func openDB(dbDir string) (vulndb.Info, func(), error) {
	if _, err := os.Stat(filepath.Join(dbDir, "trivy.db")); err != nil {
		// A cache directory given where its current DB was meant.
		if _, cerr := os.Stat(filepath.Join(vulndb.Path(dbDir), "trivy.db")); cerr == nil {
			dbDir = vulndb.Path(dbDir)
		}
	}
	info, err := vulndb.LoadDir(dbDir)
	if err != nil {
		return vulndb.Info{}, nil, fmt.Errorf("opening vulnerability DB: %w", err)
	}
	real, err := filepath.EvalSymlinks(dbDir)
	if err != nil {
		return vulndb.Info{}, nil, fmt.Errorf("opening vulnerability DB: %w", err)
	}
	for {
		trivyDB.RLock()
		if trivyDB.dir == real {
			return info, trivyDB.RUnlock, nil
		}
		trivyDB.RUnlock()
		trivyDB.Lock()
		if trivyDB.dir != real {
			if trivyDB.dir != "" {
				_ = db.Close()
				trivyDB.dir = ""
			}
			if err := db.Init(real); err != nil {
				trivyDB.Unlock()
				return vulndb.Info{}, nil, fmt.Errorf("opening vulnerability DB %s: %w", real, err)
			}
			trivyDB.dir = real
		}
		trivyDB.Unlock()
	}
}

// Cleanup removes the temporary directory Trivy makes for the process
// (trivy-* under the system's temporary directory) on its first scan. Call
// it once when the process will scan no more (a worker's shutdown); Trivy's
// CLI does the same on exit.
func Cleanup() error {
	if err := xos.Cleanup(); err != nil {
		return fmt.Errorf("removing Trivy's temporary directory: %w", err)
	}
	return nil
}

// quietTrivyLog stops Trivy's logger from keeping every record in memory
// when nobody initialised it (Trivy buffers records until told where to
// write).
func quietTrivyLog() {
	if _, ok := slog.Default().Handler().(*trivylog.DeferredHandler); ok {
		trivylog.InitLogger(false, true)
	}
}

func (o *Options) defaults() error {
	if o.DBDir == "" {
		return errors.New("no vulnerability DB directory given; run `sluice db fetch` and pass its cache")
	}
	// First: until told where to write, Trivy's default handler buffers
	// every record, and slog.Default() is that handler.
	quietTrivyLog()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.MinSeverity != "" && !slices.Contains(Severities, strings.ToUpper(o.MinSeverity)) {
		return fmt.Errorf("unknown severity %q (want one of %s)", o.MinSeverity, strings.Join(Severities, ", "))
	}
	return nil
}

// disabledAnalyzers are the analyzers a vulnerability scan does not need,
// as Trivy's CLI disables them for `--scanners vuln` (no secrets, no
// misconfiguration, no license files, no executables, no image history).
func disabledAnalyzers() []analyzer.Type {
	out := []analyzer.Type{analyzer.TypeApkCommand, analyzer.TypeSecret, analyzer.TypeLicenseFile,
		analyzer.TypeHistoryDockerfile, analyzer.TypeExecutable, analyzer.TypeRpmArchive}
	return append(out, analyzer.TypeConfigFiles...)
}

// artifactOption is what Trivy's CLI passes for `--scanners vuln
// --offline-scan` with its flags' defaults.
func artifactOption() artifact.Option {
	return artifact.Option{
		DisabledAnalyzers: disabledAnalyzers(),
		Offline:           true,
		NoProgress:        true,
		Parallel:          5,
		DetectionPriority: ftypes.PriorityPrecise,
		LicenseScannerOption: analyzer.LicenseScannerOption{
			ClassifierConfidenceLevel: 0.9,
		},
	}
}

func scanOptions() types.ScanOptions {
	return types.ScanOptions{
		PkgTypes:         []string{types.PkgTypeOS, types.PkgTypeLibrary},
		PkgRelationships: ftypes.Relationships,
		Scanners:         types.Scanners{types.VulnerabilityScanner},
		// Trivy's CLI default: the data source's own severity, else NVD's.
		VulnSeveritySources: []dbtypes.SourceID{"auto"},
	}
}

// run inspects an artifact and scans it against the open DB.
func run(ctx context.Context, art artifact.Artifact, c cache.Cache) (types.Report, error) {
	backend := scanlocal.NewService(applier.NewApplier(c), ospkg.NewScanner(), langpkg.NewScanner(), vulnerability.NewClient(trivydb.Config{}))
	rep, err := scan.NewService(backend, art).ScanArtifact(ctx, scanOptions())
	if err != nil {
		return types.Report{}, err
	}
	return rep, nil
}

// ScanImage scans an image: a registry reference (a tag is resolved to a
// digest, which is what is pulled and reported), "oci:DIR[@digest]" for an
// OCI layout, or "tarball:FILE" for `docker save` output or a tar of an OCI
// layout.
func ScanImage(ctx context.Context, ref string, opts Options) (*Report, error) {
	scanning.Lock()
	defer scanning.Unlock()
	if err := opts.defaults(); err != nil {
		return nil, fmt.Errorf("scanning image %s: %w", ref, err)
	}
	info, release, err := openDB(opts.DBDir)
	if err != nil {
		return nil, fmt.Errorf("scanning image %s: %w", ref, err)
	}
	defer release()
	src, err := openImage(ctx, ref, opts)
	if err != nil {
		return nil, fmt.Errorf("scanning image %s: %w", ref, err)
	}
	defer src.cleanup()
	c := cache.NewMemoryCache()
	ao := artifactOption()
	// As `trivy image`: lockfiles in an image are build leftovers, not
	// what runs; the packages installed are found by the other analyzers.
	ao.DisabledAnalyzers = append(ao.DisabledAnalyzers, analyzer.TypeLockfiles...)
	art, err := image.NewArtifact(src.img, c, ao)
	if err != nil {
		return nil, fmt.Errorf("scanning image %s: %w", ref, err)
	}
	opts.Logger.Info("scanning image", "subject", src.subject)
	trep, err := run(ctx, art, c)
	if err != nil {
		return nil, fmt.Errorf("scanning image %s: %w", ref, err)
	}
	rep, err := newReport(ctx, trep, src.subject, info, opts)
	if err != nil {
		return nil, fmt.Errorf("scanning image %s: %w", ref, err)
	}
	rep.Digest = src.digest
	rep.Notes = append(src.notes, rep.Notes...)
	return rep, nil
}

// ScanDependencies scans the lockfiles and manifests under dir (a
// repository materialised at a commit).
func ScanDependencies(ctx context.Context, dir string, opts Options) (*Report, error) {
	scanning.Lock()
	defer scanning.Unlock()
	if err := opts.defaults(); err != nil {
		return nil, fmt.Errorf("scanning dependencies of %s: %w", dir, err)
	}
	info, release, err := openDB(opts.DBDir)
	if err != nil {
		return nil, fmt.Errorf("scanning dependencies of %s: %w", dir, err)
	}
	defer release()
	c := cache.NewMemoryCache()
	ao := artifactOption()
	// A repository tree is not a root filesystem: no OS packages.
	ao.DisabledAnalyzers = append(ao.DisabledAnalyzers, analyzer.TypeOSes...)
	ao.DisabledAnalyzers = append(ao.DisabledAnalyzers, analyzer.TypeIndividualPkgs...)
	// As `trivy fs` and `trivy repo`: an SBOM file in the tree is not read.
	ao.DisabledAnalyzers = append(ao.DisabledAnalyzers, analyzer.TypeSBOM)
	art, err := local.NewArtifact(dir, c, walker.NewFS(), ao)
	if err != nil {
		return nil, fmt.Errorf("scanning dependencies of %s: %w", dir, err)
	}
	trep, err := run(ctx, art, c)
	if err != nil {
		return nil, fmt.Errorf("scanning dependencies of %s: %w", dir, err)
	}
	rep, err := newReport(ctx, trep, dir, info, opts)
	if err != nil {
		return nil, fmt.Errorf("scanning dependencies of %s: %w", dir, err)
	}
	return rep, nil
}

// newReport turns Trivy's report into sluice's: findings filtered by the
// options, sorted, and the SBOM.
func newReport(ctx context.Context, trep types.Report, subject string, info vulndb.Info, opts Options) (*Report, error) {
	rep := &Report{Subject: subject, DBVersion: info.String(), Findings: []gate.Finding{}}
	if trep.Metadata.OS != nil {
		rep.OS = strings.TrimSpace(string(trep.Metadata.OS.Family) + " " + trep.Metadata.OS.Name)
		if trep.Metadata.OS.Eosl {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s is past its end of life: its packages get no more security fixes", rep.OS))
		}
	}
	minRank := 0
	if opts.MinSeverity != "" {
		minRank = slices.Index(Severities, strings.ToUpper(opts.MinSeverity))
	}
	for _, res := range trep.Results {
		rep.Packages += len(res.Packages)
		target := res.Target
		if res.Class == types.ClassOSPkg {
			// "debian 12.11 (dpkg)", not the image's name: a finding's
			// fingerprint is the same whichever reference named the image.
			target = rep.OS + " (" + packageManager(trep.Metadata.OS) + ")"
		}
		for _, v := range res.Vulnerabilities {
			sev := v.Severity
			if sev == "" {
				sev = "UNKNOWN"
			}
			if slices.Index(Severities, sev) < minRank {
				continue
			}
			if opts.IgnoreUnfixed && v.FixedVersion == "" {
				continue
			}
			rep.Findings = append(rep.Findings, finding(target, v, sev))
		}
	}
	slices.SortFunc(rep.Findings, func(a, b gate.Finding) int {
		return strings.Compare(a.File+"\x00"+a.Rule+"\x00"+a.Message, b.File+"\x00"+b.Rule+"\x00"+b.Message)
	})
	if !opts.SkipSBOM {
		m := sbomcdx.NewMarshaler("sluice")
		bom, err := m.MarshalReport(ctx, trep)
		if err != nil {
			return nil, fmt.Errorf("making SBOM: %w", err)
		}
		var buf bytes.Buffer
		enc := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON)
		enc.SetPretty(false)
		if err := enc.Encode(bom); err != nil {
			return nil, fmt.Errorf("making SBOM: %w", err)
		}
		rep.SBOM = buf.Bytes()
	}
	return rep, nil
}

// packageManager names the OS's package database.
func packageManager(os *ftypes.OS) string {
	if os == nil {
		return "os packages"
	}
	switch os.Family {
	case ftypes.Debian, ftypes.Ubuntu:
		return "dpkg"
	case ftypes.Alpine, ftypes.Wolfi, ftypes.Chainguard:
		return "apk"
	case ftypes.RedHat, ftypes.CentOS, ftypes.Rocky, ftypes.Alma, ftypes.Amazon, ftypes.Oracle, ftypes.Fedora,
		ftypes.OpenSUSE, ftypes.OpenSUSELeap, ftypes.OpenSUSETumbleweed, ftypes.SLES, ftypes.SLEMicro,
		ftypes.CBLMariner, ftypes.Azure, ftypes.Photon:
		return "rpm"
	default:
		return "os packages"
	}
}

// finding is one vulnerability of one package as a gate finding.
func finding(target string, v types.DetectedVulnerability, sev string) gate.Finding {
	pkg := v.PkgName
	if v.PkgPath != "" {
		pkg += " (" + v.PkgPath + ")"
	}
	msg := fmt.Sprintf("%s %s: ", pkg, v.InstalledVersion)
	if v.FixedVersion != "" {
		msg += "fixed in " + v.FixedVersion + "; upgrade"
	} else {
		msg += "no fixed version yet (" + v.Status.String() + ")"
	}
	if v.Title != "" {
		msg += " — " + v.Title
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{v.VulnerabilityID, target, v.PkgName, v.PkgPath, v.InstalledVersion}, "\x00")))
	return gate.Finding{
		Rule: v.VulnerabilityID, Severity: sev, File: target, Message: msg,
		Fingerprint: hex.EncodeToString(sum[:8]), InChange: true,
	}
}

// Package vulndb owns the vulnerability DB's lifecycle on a machine: fetching
// Trivy's DB (an OCI artifact) from a list of mirrors, importing it from a
// file for air-gapped use, installing it atomically into a cache directory
// that runs share, and telling its version and age.
//
// A cache directory holds one directory per installed DB, named after the
// digest of its archive, and a symbolic link "current" to the one in use:
//
//	<cache>/current -> sha256-<hex>
//	<cache>/sha256-<hex>/trivy.db
//	<cache>/sha256-<hex>/metadata.json    (Trivy's: version, updated, next update)
//	<cache>/sha256-<hex>/sluice.json      (where it came from, when)
//
// Installing writes a new directory beside the old one and swaps the link
// with a rename, so a reader sees the old DB or the new one, never half of
// either. Path(cache) is the directory to hand to the scanners (and, as
// "<x>/db", to Trivy's CLI).
package vulndb

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// MediaType is the media type of the single layer of Trivy's DB artifact.
const MediaType = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"

// DefaultRepository is Trivy's own DB repository (schema 2). sluice never
// uses it unless the policy or a flag names it.
const DefaultRepository = "ghcr.io/aquasecurity/trivy-db:2"

const (
	dbFile       = "trivy.db"
	metadataFile = "metadata.json"
	infoFile     = "sluice.json"
	currentLink  = "current"
)

// ErrNotInstalled is returned by Load when the cache holds no DB.
var ErrNotInstalled = errors.New("no vulnerability DB installed; run `sluice db fetch` (or `sluice db import FILE` offline)")

// Info describes an installed DB.
type Info struct {
	// Version is the DB schema version (Trivy's metadata).
	Version int `json:"version"`
	// UpdatedAt is when the DB was built; its age counts from here.
	UpdatedAt time.Time `json:"updated_at"`
	// NextUpdate is when its publisher plans the next build.
	NextUpdate time.Time `json:"next_update"`
	// DownloadedAt is when it was installed here.
	DownloadedAt time.Time `json:"downloaded_at"`
	// Source is the repository (repo@digest) or file it came from.
	Source string `json:"source"`
	// Digest is "sha256:<hex>" of the archive (the artifact's layer).
	Digest string `json:"digest"`
	// Dir is the directory holding trivy.db and metadata.json.
	Dir string `json:"dir"`
}

// String names the DB in one line, for reports and cache keys.
func (i Info) String() string {
	return fmt.Sprintf("v%d %s (%s)", i.Version, i.UpdatedAt.UTC().Format(time.RFC3339), i.Digest)
}

// Age is how old the DB is at now, counted from its build.
func (i Info) Age(now time.Time) time.Duration { return now.Sub(i.UpdatedAt) }

// Path is the directory holding the DB in use in a cache directory.
func Path(cacheDir string) string { return filepath.Join(cacheDir, currentLink) }

// Options tune Fetch. The zero value uses the default keychain, HTTPS, and
// slog's default logger.
type Options struct {
	// Keychain resolves registry credentials; nil means authn.DefaultKeychain.
	Keychain authn.Keychain
	// Insecure allows plain-HTTP registries (tests, local mirrors).
	Insecure bool
	// Logger receives one line per mirror tried; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Fetch installs the DB from the first repository in repos that answers
// (e.g. "mirror.example/trivy-db:2"), verifying the layer's digest. When the
// digest is the one installed already, nothing is downloaded and the
// installed DB's Info is returned.
func Fetch(ctx context.Context, repos []string, dir string, o Options) (Info, error) {
	o.defaults()
	if len(repos) == 0 {
		return Info{}, errors.New("fetching DB: no repository given")
	}
	var errs []error
	for _, repo := range repos {
		info, err := fetchOne(ctx, repo, dir, o)
		if err == nil {
			return info, nil
		}
		if ctx.Err() != nil {
			return Info{}, fmt.Errorf("fetching DB from %s: %w", repo, ctx.Err())
		}
		o.Logger.Warn("DB mirror failed; trying the next", "repository", repo, "error", err)
		errs = append(errs, fmt.Errorf("%s: %w", repo, err))
	}
	return Info{}, fmt.Errorf("fetching DB: every repository failed: %w", errors.Join(errs...))
}

func fetchOne(ctx context.Context, repo, dir string, o Options) (Info, error) {
	var nopts []name.Option
	if o.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(repo, nopts...)
	if err != nil {
		return Info{}, fmt.Errorf("parsing repository %q: %w", repo, err)
	}
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(o.Keychain))
	if err != nil {
		return Info{}, fmt.Errorf("reading manifest: %w", err)
	}
	m, err := img.Manifest()
	if err != nil {
		return Info{}, fmt.Errorf("reading manifest: %w", err)
	}
	if len(m.Layers) != 1 {
		return Info{}, fmt.Errorf("want an artifact of one layer, got %d layers", len(m.Layers))
	}
	desc := m.Layers[0]
	if string(desc.MediaType) != MediaType {
		return Info{}, fmt.Errorf("layer media type %q is not a Trivy DB (%s)", desc.MediaType, MediaType)
	}
	digest := desc.Digest.String()
	if cur, err := Load(dir); err == nil && cur.Digest == digest {
		o.Logger.Info("DB already installed", "digest", digest)
		return cur, nil
	}
	layer, err := img.LayerByDigest(desc.Digest)
	if err != nil {
		return Info{}, fmt.Errorf("reading layer: %w", err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return Info{}, fmt.Errorf("reading layer: %w", err)
	}
	defer rc.Close()
	source := ref.Context().String() + "@" + digest
	if d, err := img.Digest(); err == nil {
		source = ref.Context().String() + "@" + d.String()
	}
	return install(ctx, rc, desc.Digest, source, dir, o)
}

// Import installs the DB from a file: the db.tar.gz of Trivy's DB artifact
// (its single layer), for machines without a registry.
func Import(ctx context.Context, file, dir string, o Options) (Info, error) {
	o.defaults()
	f, err := os.Open(file)
	if err != nil {
		return Info{}, fmt.Errorf("importing DB: %w", err)
	}
	defer f.Close()
	abs, err := filepath.Abs(file)
	if err != nil {
		abs = file
	}
	info, err := install(ctx, f, v1.Hash{}, "file:"+abs, dir, o)
	if err != nil {
		return Info{}, fmt.Errorf("importing DB from %s: %w", file, err)
	}
	return info, nil
}

// install unpacks a db.tar.gz into a new directory of dir, checks it, and
// makes it current. want, when set, is the digest the archive must have.
func install(ctx context.Context, r io.Reader, want v1.Hash, source, dir string, o Options) (Info, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Info{}, fmt.Errorf("creating cache directory: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".incoming-")
	if err != nil {
		return Info{}, fmt.Errorf("creating cache directory: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	h := sha256.New()
	if err := unpack(ctx, io.TeeReader(r, h), tmp); err != nil {
		return Info{}, err
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if want.Hex != "" && digest != want.String() {
		return Info{}, fmt.Errorf("digest mismatch: the layer is %s but the manifest says %s", digest, want)
	}
	meta, err := readMetadata(tmp)
	if err != nil {
		return Info{}, err
	}
	info := Info{
		Version: meta.Version, UpdatedAt: meta.UpdatedAt, NextUpdate: meta.NextUpdate,
		DownloadedAt: o.Now().UTC(), Source: source, Digest: digest,
	}
	// Trivy's CLI reads DownloadedAt from metadata.json; keep it true.
	meta.DownloadedAt = info.DownloadedAt
	if err := writeJSON(filepath.Join(tmp, metadataFile), meta); err != nil {
		return Info{}, err
	}
	if err := writeJSON(filepath.Join(tmp, infoFile), info); err != nil {
		return Info{}, err
	}
	final := filepath.Join(dir, strings.Replace(digest, ":", "-", 1))
	if have, err := LoadDir(final); err == nil && have.Digest == digest {
		// The same archive is installed already (perhaps as the previous
		// DB): make it current as it is; a reader may have it open.
		if err := swapLink(dir, filepath.Base(final)); err != nil {
			return Info{}, err
		}
		have.Dir = Path(dir)
		o.Logger.Info("DB already installed", "digest", digest)
		return have, nil
	}
	if err := os.RemoveAll(final); err != nil { // a broken leftover
		return Info{}, fmt.Errorf("replacing %s: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return Info{}, fmt.Errorf("installing DB: %w", err)
	}
	if err := swapLink(dir, filepath.Base(final)); err != nil {
		return Info{}, err
	}
	prune(dir, filepath.Base(final), o.Logger)
	info.Dir = Path(dir)
	o.Logger.Info("DB installed", "source", source, "digest", digest, "updated_at", info.UpdatedAt)
	return info, nil
}

// unpack extracts trivy.db and metadata.json from a tar.gz; other entries
// are skipped. The rest of the stream is read so that the digest covers it
// all.
func unpack(ctx context.Context, r io.Reader, dst string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("reading DB archive: %w", err)
	}
	tr := tar.NewReader(zr)
	found := map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading DB archive: %w", err)
		}
		base := filepath.Clean(hdr.Name)
		if hdr.Typeflag != tar.TypeReg || (base != dbFile && base != metadataFile) {
			continue
		}
		if err := writeFile(filepath.Join(dst, base), tr); err != nil {
			return err
		}
		found[base] = true
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("reading DB archive: %w", err)
	}
	for _, f := range []string{dbFile, metadataFile} {
		if !found[f] {
			return fmt.Errorf("reading DB archive: no %s in it (is it Trivy's db.tar.gz?)", f)
		}
	}
	return nil
}

func writeFile(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	return nil
}

// metadata is Trivy's metadata.json.
type metadata struct {
	Version      int `json:",omitempty"`
	NextUpdate   time.Time
	UpdatedAt    time.Time
	DownloadedAt time.Time
}

func readMetadata(dir string) (metadata, error) {
	var m metadata
	b, err := os.ReadFile(filepath.Join(dir, metadataFile))
	if err != nil {
		return m, fmt.Errorf("reading DB metadata: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("reading DB metadata: %w", err)
	}
	if m.Version == 0 || m.UpdatedAt.IsZero() {
		return m, errors.New("reading DB metadata: metadata.json has no Version or UpdatedAt")
	}
	return m, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	return nil
}

// swapLink points dir/current at target with a rename, atomically.
func swapLink(dir, target string) error {
	tmp := filepath.Join(dir, ".current-"+target)
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("installing DB: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, currentLink)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("installing DB: %w", err)
	}
	return nil
}

// prune removes installed DBs other than the current one and the one
// before it (a worker may still have the previous one open), and
// incoming directories left by an interrupted install over an hour old.
func prune(dir, current string, logger *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type inst struct {
		name string
		mod  time.Time
	}
	var old []inst
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(e.Name(), ".incoming-") && time.Since(fi.ModTime()) > time.Hour:
			os.RemoveAll(filepath.Join(dir, e.Name()))
		case strings.HasPrefix(e.Name(), "sha256-") && e.Name() != current && e.IsDir():
			old = append(old, inst{e.Name(), fi.ModTime()})
		}
	}
	sort.Slice(old, func(i, j int) bool { return old[i].mod.After(old[j].mod) })
	for i, o := range old {
		if i == 0 {
			continue // the previous DB
		}
		if err := os.RemoveAll(filepath.Join(dir, o.name)); err != nil {
			logger.Warn("removing an old DB", "dir", o.name, "error", err)
		}
	}
}

// Load reads the Info of the DB in use in a cache directory. It fails with
// ErrNotInstalled when there is none.
func Load(dir string) (Info, error) {
	cur := Path(dir)
	if _, err := os.Stat(filepath.Join(cur, dbFile)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Info{}, fmt.Errorf("%w (cache %s)", ErrNotInstalled, dir)
		}
		return Info{}, fmt.Errorf("reading DB: %w", err)
	}
	return LoadDir(cur)
}

// LoadDir reads the Info of the DB whose files are in dbDir (a directory
// holding trivy.db and metadata.json, such as Path(cache) or Trivy's own
// <cache>/db).
func LoadDir(dbDir string) (Info, error) {
	if _, err := os.Stat(filepath.Join(dbDir, dbFile)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Info{}, fmt.Errorf("%w (looked in %s)", ErrNotInstalled, dbDir)
		}
		return Info{}, fmt.Errorf("reading DB: %w", err)
	}
	meta, err := readMetadata(dbDir)
	if err != nil {
		return Info{}, err
	}
	info := Info{Version: meta.Version, UpdatedAt: meta.UpdatedAt, NextUpdate: meta.NextUpdate, DownloadedAt: meta.DownloadedAt, Dir: dbDir}
	if b, err := os.ReadFile(filepath.Join(dbDir, infoFile)); err == nil {
		var own Info
		if json.Unmarshal(b, &own) == nil {
			info.Source, info.Digest, info.DownloadedAt = own.Source, own.Digest, own.DownloadedAt
		}
	}
	return info, nil
}

// Staleness is the policy's age limits. A zero limit is not checked.
type Staleness struct {
	WarnAge time.Duration
	FailAge time.Duration
}

// StaleError says the DB is older than the fail age.
type StaleError struct {
	Age, Limit time.Duration
	Info       Info
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("vulnerability DB is %s old, past the fail age of %s (built %s); run `sluice db fetch`",
		roundAge(e.Age), roundAge(e.Limit), e.Info.UpdatedAt.UTC().Format(time.RFC3339))
}

// Check compares the DB's age with the limits: a warning (a sentence to
// show) past WarnAge, a *StaleError past FailAge.
func (s Staleness) Check(info Info, now time.Time) (warning string, err error) {
	age := info.Age(now)
	if s.FailAge > 0 && age > s.FailAge {
		return "", &StaleError{Age: age, Limit: s.FailAge, Info: info}
	}
	if s.WarnAge > 0 && age > s.WarnAge {
		return fmt.Sprintf("vulnerability DB is %s old, past the warn age of %s; run `sluice db fetch`", roundAge(age), roundAge(s.WarnAge)), nil
	}
	return "", nil
}

func roundAge(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Minute:
		return d.Round(time.Minute).String()
	default:
		return d.Round(time.Second).String()
	}
}

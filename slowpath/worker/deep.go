package worker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/slowpath"
	"github.com/sluice-ci/sluice/slowpath/deep"
	"github.com/sluice-ci/sluice/slowpath/queue"
	"github.com/sluice-ci/sluice/slowpath/vulndb"
)

// DeepConfig is what the deep analyzers need besides the job. Zero values
// state their defaults.
type DeepConfig struct {
	// DBCache is the vulnerability DB cache `sluice db fetch` fills
	// (vulndb.Path of it is opened). Workers never download the DB: a job
	// finding none fails with an error naming `sluice db fetch`.
	DBCache string
	// Staleness are the policy's age limits, checked before every job: past
	// FailAge the job fails (and is retried: a DB fetched meanwhile is
	// used), past WarnAge the result carries a note.
	Staleness vulndb.Staleness
	// Catalog is every control of the build, to load the job's policy (the
	// options of image-scan and dependency-scan).
	Catalog gate.Catalog
	// Keychain resolves registry credentials; nil means the default one.
	Keychain authn.Keychain
	// Insecure allows plain-HTTP registries.
	Insecure bool
	// ScratchDir is where repositories are materialised for a dependency
	// scan; "" means the system's temporary directory.
	ScratchDir string
	Logger     *slog.Logger
	// Now is the clock of the staleness check; nil means time.Now.
	Now func() time.Time
}

// ImageScan is the analyzer of image-scan jobs: the job's subject (an image
// reference, tarball:FILE or oci:DIR) scanned by Trivy with the options of
// the job's control, against the cached DB.
func ImageScan(c DeepConfig) Analyzer {
	return func(ctx context.Context, job queue.Job) (Outcome, error) {
		opts, notes, err := c.options(job)
		if err != nil {
			return Outcome{}, err
		}
		rep, err := deep.ScanImage(ctx, job.Subject, opts)
		if err != nil {
			return Outcome{}, err
		}
		return outcome(rep, notes), nil
	}
}

// DependencyScan is the analyzer of dependency-scan jobs: the manifests and
// lockfiles of the repository at the job's head commit (taken from git, not
// from a working tree that may have moved on), or the job's root in paths
// mode.
func DependencyScan(c DeepConfig) Analyzer {
	return func(ctx context.Context, job queue.Job) (Outcome, error) {
		opts, notes, err := c.options(job)
		if err != nil {
			return Outcome{}, err
		}
		dir := job.Root
		if gate.Mode(job.Mode) == gate.RangeMode {
			tmp, err := os.MkdirTemp(c.ScratchDir, "sluice-deps-")
			if err != nil {
				return Outcome{}, fmt.Errorf("making a scratch folder: %w", err)
			}
			defer os.RemoveAll(tmp)
			n, err := extractManifests(ctx, job.Root, job.Head, tmp)
			if err != nil {
				return Outcome{}, err
			}
			if n == 0 {
				notes = append(notes, fmt.Sprintf("no dependency manifest at %s", shortSHA(job.Head)))
			}
			dir = tmp
		}
		rep, err := deep.ScanDependencies(ctx, dir, opts)
		if err != nil {
			return Outcome{}, err
		}
		return outcome(rep, notes), nil
	}
}

func outcome(rep *deep.Report, notes []string) Outcome {
	return Outcome{Findings: rep.Findings, SBOM: rep.SBOM, Notes: append(notes, rep.Notes...), DBVersion: rep.DBVersion}
}

// options checks the DB and builds the scan options of the job's control.
func (c DeepConfig) options(job queue.Job) (deep.Options, []string, error) {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	if c.DBCache == "" {
		return deep.Options{}, nil, errors.New("no vulnerability DB cache folder: set vulndb.cache_dir in the policy, or XDG_CACHE_HOME or HOME, then run `sluice db fetch`")
	}
	info, err := vulndb.Load(c.DBCache)
	if err != nil {
		return deep.Options{}, nil, err
	}
	var notes []string
	warning, err := c.Staleness.Check(info, now())
	if err != nil {
		return deep.Options{}, nil, err
	}
	if warning != "" {
		notes = append(notes, warning)
	}
	var opts deep.Options
	pol, _, pnotes, err := jobPolicy(job, c.Catalog)
	if err != nil {
		return deep.Options{}, nil, err
	}
	notes = append(notes, pnotes...)
	if cp := pol.Control(job.Control); cp != nil {
		if so, ok := cp.Options.(*slowpath.ScanOptions); ok && so != nil {
			opts = so.DeepOptions()
		}
	}
	opts.DBDir = vulndb.Path(c.DBCache)
	opts.Keychain = c.Keychain
	opts.Insecure = c.Insecure
	opts.Logger = c.Logger
	return opts, notes, nil
}

// extractManifests writes the dependency manifests of the repository at
// commit into dst, with their repository paths, and returns how many. git
// runs without a shell; paths come from git and are checked to stay inside
// dst.
func extractManifests(ctx context.Context, repo, commit, dst string) (int, error) {
	if commit == "" {
		return 0, errors.New("materialising the repository: the job names no commit")
	}
	ls := exec.CommandContext(ctx, "git", "-C", repo, "ls-tree", "-r", "-z", "--name-only", commit)
	out, err := ls.Output()
	if err != nil {
		return 0, fmt.Errorf("listing %s at %s: %w%s", repo, shortSHA(commit), err, stderrOf(err))
	}
	var paths []string
	for p := range bytes.SplitSeq(out, []byte{0}) {
		if len(p) > 0 && slowpath.IsManifest(string(p)) {
			paths = append(paths, string(p))
		}
	}
	if len(paths) == 0 {
		return 0, nil
	}
	// --literal-pathspecs: a file name is a path, never pathspec magic.
	args := append([]string{"--literal-pathspecs", "-C", repo, "archive", "--format=tar", commit, "--"}, paths...)
	cmd := exec.CommandContext(ctx, "git", args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	r, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("running git archive: %w", err)
	}
	n, uerr := untar(bufio.NewReader(r), dst)
	_, _ = io.Copy(io.Discard, r)
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("git archive of %s at %s: %w: %s", repo, shortSHA(commit), err, strings.TrimSpace(errb.String()))
	}
	return n, uerr
}

// untar writes the regular files of a tar stream under dst.
func untar(r io.Reader, dst string) (int, error) {
	tr := tar.NewReader(r)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("reading git archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg || !filepath.IsLocal(h.Name) {
			continue
		}
		p := filepath.Join(dst, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return n, err
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
		if err != nil {
			return n, err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return n, fmt.Errorf("writing %s: %w", h.Name, err)
		}
		n++
	}
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

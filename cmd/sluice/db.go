package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/slowpath/vulndb"
)

const dbUsage = `Usage:
  sluice db fetch [--repository REPO]... [--cache-dir DIR] [--policy FILE] [--insecure]
                         install the newest DB from the first repository that answers
  sluice db import [--cache-dir DIR] FILE
                         install the DB from a db.tar.gz (air-gapped machines)
  sluice db show [--format text|json] [--cache-dir DIR] [--policy FILE]
                         print the installed DB's version and age

The cache is --cache-dir, else the policy's vulndb.cache_dir, else
$XDG_CACHE_HOME/sluice/db (~/.cache/sluice/db). Exit codes: 0 ok (a DB past
warn_age warns on stderr), 1 no DB installed or past fail_age, 2 usage or
configuration error, 3 any other error (every repository failed).
`

// dbShow is `sluice db show --format json`.
type dbShow struct {
	Schema    string       `json:"schema"`
	CacheDir  string       `json:"cache_dir"`
	Installed bool         `json:"installed"`
	Info      *vulndb.Info `json:"db,omitempty"`
	// Status is "fresh", "warn" (past warn_age), "stale" (past fail_age)
	// or "missing".
	Status     string `json:"status"`
	AgeSeconds int64  `json:"age_seconds,omitempty"`
	WarnAge    string `json:"warn_age"`
	FailAge    string `json:"fail_age"`
	Message    string `json:"message,omitempty"`
}

func runDB(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dbUsage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("sluice db "+sub, stderr)
	fs.Usage = func() { fmt.Fprint(stderr, dbUsage, "\nFlags:\n"); fs.PrintDefaults() }
	var (
		cacheDir = fs.String("cache-dir", "", "DB cache `DIR` (default: the policy's vulndb.cache_dir, else $XDG_CACHE_HOME/sluice/db)")
		policy   = fs.String("policy", "", "policy `FILE` whose vulndb section applies (default .sluice.yaml at the repository root or working directory)")
		verbose  = fs.Bool("v", false, "log progress to stderr")
		format   *string
		insecure *bool
		repos    listFlag
	)
	switch sub {
	case "fetch":
		fs.Var(&repos, "repository", "OCI `REPO` of Trivy's DB, e.g. mirror.example/trivy-db:2 (repeatable, tried in order; replaces the policy's vulndb.repositories)")
		insecure = fs.Bool("insecure", false, "allow plain-HTTP registries")
	case "import":
	case "show":
		format = fs.String("format", "text", "output `FORMAT`: text or json")
	case "help", "-h", "--help":
		fmt.Fprint(stdout, dbUsage)
		return exitPass
	default:
		fmt.Fprintf(stderr, "sluice db: unknown subcommand %q\n\n%s", sub, dbUsage)
		return exitUsage
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cmd := "db " + sub
	if sub == "import" && fs.NArg() != 1 || sub != "import" && fs.NArg() != 0 {
		fmt.Fprintf(stderr, "sluice %s: unexpected arguments\n\n%s", cmd, dbUsage)
		return exitUsage
	}
	if format != nil && *format != "text" && *format != "json" {
		fmt.Fprintf(stderr, "sluice %s: --format %q: want text or json\n", cmd, *format)
		return exitUsage
	}
	logger := newLogger(stderr, *verbose)
	pol, dir, err := dbPolicy(ctx, *policy)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	cache := *cacheDir
	if cache == "" {
		cache = defaultDBCache(pol.VulnDB, dir, getenv)
	}
	if cache == "" {
		fmt.Fprintf(stderr, "sluice %s: no cache directory: set --cache-dir, vulndb.cache_dir, XDG_CACHE_HOME or HOME\n", cmd)
		return exitUsage
	}
	limits := vulndb.Staleness{WarnAge: pol.VulnDB.WarnAge, FailAge: pol.VulnDB.FailAge}
	opts := vulndb.Options{Logger: logger}

	switch sub {
	case "fetch":
		if len(repos) == 0 {
			repos = pol.VulnDB.Repositories
		}
		if len(repos) == 0 {
			fmt.Fprintf(stderr, "sluice %s: no repository: give --repository or set vulndb.repositories in the policy\n", cmd)
			return exitUsage
		}
		opts.Insecure = *insecure
		info, err := vulndb.Fetch(ctx, repos, cache, opts)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		fmt.Fprintf(stdout, "installed %s from %s into %s\n", info, info.Source, cache)
		return checkAge(stderr, cmd, limits, info)
	case "import":
		info, err := vulndb.Import(ctx, fs.Arg(0), cache, opts)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		fmt.Fprintf(stdout, "installed %s from %s into %s\n", info, info.Source, cache)
		return checkAge(stderr, cmd, limits, info)
	default: // show
		return showDB(stdout, stderr, *format, cache, limits)
	}
}

// dbPolicy loads the policy whose vulndb section applies, and the
// directory its relative paths are resolved against.
func dbPolicy(ctx context.Context, path string) (*gate.Policy, string, error) {
	pol, dir, err := workspacePolicy(ctx, path)
	if err != nil {
		return nil, "", err
	}
	if pol.Source != "" {
		dir = filepath.Dir(pol.Source)
	}
	return pol, dir, nil
}

// defaultDBCache is the policy's cache_dir (relative to the policy), else
// $XDG_CACHE_HOME/sluice/db, else $HOME/.cache/sluice/db.
func defaultDBCache(v gate.VulnDB, policyDir string, getenv env) string {
	switch {
	case v.CacheDir != "" && filepath.IsAbs(v.CacheDir):
		return v.CacheDir
	case v.CacheDir != "":
		return filepath.Join(policyDir, v.CacheDir)
	case getenv("XDG_CACHE_HOME") != "":
		return filepath.Join(getenv("XDG_CACHE_HOME"), "sluice", "db")
	case getenv("HOME") != "":
		return filepath.Join(getenv("HOME"), ".cache", "sluice", "db")
	}
	return ""
}

func checkAge(stderr io.Writer, cmd string, limits vulndb.Staleness, info vulndb.Info) int {
	warning, err := limits.Check(info, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "sluice %s: %v\n", cmd, err)
		return exitBlocked
	}
	if warning != "" {
		fmt.Fprintf(stderr, "sluice %s: warning: %s\n", cmd, warning)
	}
	return exitPass
}

func showDB(stdout, stderr io.Writer, format, cache string, limits vulndb.Staleness) int {
	out := dbShow{Schema: "sluice.db/v1", CacheDir: cache, Status: "missing", WarnAge: limits.WarnAge.String(), FailAge: limits.FailAge.String()}
	code := exitPass
	info, err := vulndb.Load(cache)
	switch {
	case errors.Is(err, vulndb.ErrNotInstalled):
		out.Message = err.Error()
		code = exitBlocked
	case err != nil:
		return fail(stderr, "db show", err)
	default:
		now := time.Now()
		out.Installed, out.Info, out.Status = true, &info, "fresh"
		out.AgeSeconds = int64(info.Age(now).Seconds())
		warning, serr := limits.Check(info, now)
		switch {
		case serr != nil:
			out.Status, out.Message, code = "stale", serr.Error(), exitBlocked
		case warning != "":
			out.Status, out.Message = "warn", warning
		}
	}
	if format == "json" {
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return fail(stderr, "db show", err)
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else if out.Installed {
		fmt.Fprintf(stdout, "vulnerability DB in %s\n", cache)
		fmt.Fprintf(stdout, "  version:     %d\n", info.Version)
		fmt.Fprintf(stdout, "  built:       %s (%s ago)\n", info.UpdatedAt.UTC().Format(time.RFC3339), time.Duration(out.AgeSeconds)*time.Second)
		fmt.Fprintf(stdout, "  next update: %s\n", info.NextUpdate.UTC().Format(time.RFC3339))
		fmt.Fprintf(stdout, "  downloaded:  %s\n", info.DownloadedAt.UTC().Format(time.RFC3339))
		fmt.Fprintf(stdout, "  source:      %s\n", info.Source)
		fmt.Fprintf(stdout, "  digest:      %s\n", info.Digest)
		fmt.Fprintf(stdout, "  status:      %s (warn past %s, fail past %s)\n", out.Status, out.WarnAge, out.FailAge)
	}
	if out.Message != "" {
		kind := "warning"
		if code != exitPass {
			kind = "error"
		}
		fmt.Fprintf(stderr, "sluice db show: %s: %s\n", kind, out.Message)
	}
	return code
}

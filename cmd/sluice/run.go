package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/sluice-ci/sluice/actions"
	"github.com/sluice-ci/sluice/fastpath"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/atomicfile"
	"github.com/sluice-ci/sluice/slowpath"
)

// Exit codes.
const (
	exitPass     = 0
	exitBlocked  = 1
	exitUsage    = 2
	exitInternal = 3
)

const usage = `sluice: a CI/CD security gate

Usage:
  sluice check [flags] [PATH...]   run the fast path over a change; prints a verdict
  sluice policy validate [--policy FILE|oci://REGISTRY/REPO@sha256:...]
                                   check a policy file without running anything
  sluice policy push FILE oci://REGISTRY/REPO[:TAG] --key cosign.key
                                   publish and sign an organisation policy
  sluice batch [flags]             plan release batches over a set of changes
  sluice hook install [--force]    install the git pre-push hook (respects core.hooksPath)
  sluice hook pre-push REMOTE URL  what the hook runs: checks each pushed range
  sluice worker [--drain] [flags]  run slow-path jobs from the queue
  sluice status [--commit SHA | --image REF@sha256:...] [flags]
                                   slow-path jobs, results and exposure window
  sluice db fetch|import FILE|show the vulnerability DB: fetch from mirrors, import, version and age
  sluice rescan (--image REF@sha256:... | --since 7d)
                                   queue rescans of released images on the bulk lane
  sluice budgets [--since 7d] [--format text|json|markdown|html]
                                   controls against their budgets (SLO report)
  sluice budgets restore CONTROL   move a demoted control back to the fast path
  sluice version                   print the version

Exit codes: 0 pass, 1 blocked by policy, 2 usage or configuration error,
3 internal error; sluice batch: 0 approved, 4 partly approved, 1 refused;
sluice status: 4 while work is still queued or running.
Run 'sluice check -h' for the flags of check.
`

// env is the process environment as a function, so tests can inject it.
type env func(string) string

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) (code int) {
	defer func() {
		if v := recover(); v != nil {
			fmt.Fprintf(stderr, "sluice: internal error: %v\n%s", v, debug.Stack())
			code = exitInternal
		}
	}()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "check":
		return runCheck(ctx, rest, stdout, stderr, getenv)
	case "policy":
		return runPolicy(ctx, rest, stdout, stderr, getenv)
	case "batch":
		return runBatch(ctx, rest, stdout, stderr, getenv)
	case "hook":
		return runHook(ctx, rest, os.Stdin, stdout, stderr, getenv)
	case "worker":
		return runWorker(ctx, rest, stdout, stderr, getenv)
	case "status":
		return runStatus(ctx, rest, stdout, stderr, getenv)
	case "db":
		return runDB(ctx, rest, stdout, stderr, getenv)
	case "rescan":
		return runRescan(ctx, rest, stdout, stderr, getenv)
	case "budgets":
		return runBudgets(ctx, rest, stdout, stderr, getenv)
	case "version", "--version":
		fmt.Fprintln(stdout, "sluice", version())
		return exitPass
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitPass
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// buildVersion is set by release builds (-ldflags -X main.buildVersion=vX.Y.Z).
var buildVersion string

func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// catalog is every control this build knows, in report order.
func catalog() gate.Catalog {
	return append(gate.Catalog(fastpath.Specs()), slowpath.Specs()...)
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args into fs. When the command should stop there, it
// returns false with the exit code: 0 after -h (fs printed the usage), 2
// for a bad flag (fs printed what was wrong).
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitPass, false
		}
		return exitUsage, false
	}
	return exitPass, true
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	fs := newFlagSet("sluice check", stderr)
	var (
		base    = fs.String("base", "", "base `REF` of the range (default: merge base with the upstream branch, else origin/HEAD, else HEAD^)")
		head    = fs.String("head", "", "head `REF` of the range (default HEAD)")
		format  = fs.String("format", "text", "output `FORMAT`: "+strings.Join(actions.Formats, ", "))
		output  = fs.String("output", "", "also write the JSON verdict to `FILE` (written whole or not at all)")
		root    = fs.String("root", "", "`DIR` that reported paths are relative to in paths mode (default: the working directory)")
		verbose = fs.Bool("v", false, "log progress to stderr")
		queueU  = fs.String("queue", "", "record the verdict and enqueue deferred work on this queue: `URL` postgres://... or a SQLite file (default $SLUICE_QUEUE, else the policy's queue.url, else none)")
		paths   listFlag
		images  listFlag
		pf      policyFlags
	)
	pf.register(fs)
	fe := newFront(fs, getenv)
	fs.Var(&paths, "paths", "check this file or folder whole instead of a git range (repeatable; extra arguments count too)")
	fs.Var(&images, "image", "container image `REF` the change releases (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: sluice check [flags] [PATH...]\n\nWithout paths, checks the git range --base..--head of the repository around the working directory.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	paths = append(paths, fs.Args()...)
	if code, done := fe.prepare(ctx, fs, stdout, stderr, checkArgs{base, head, &pf.policy, format, output, queueU, &paths, &images}); done {
		return code
	}
	if !slices.Contains(actions.Formats, *format) {
		fmt.Fprintf(stderr, "sluice check: --format %q: want one of %s\n", *format, strings.Join(actions.Formats, ", "))
		return exitUsage
	}
	if len(paths) > 0 && (*base != "" || *head != "") {
		fmt.Fprintln(stderr, "sluice check: give either --paths or a git range (--base/--head), not both")
		return exitUsage
	}
	logger := newLogger(stderr, *verbose)
	// Libraries that log through slog's default (Trivy buffers every record
	// in memory until told where to write) log through ours.
	slog.SetDefault(logger)

	cwd, err := os.Getwd()
	if err != nil {
		return fe.fail(stderr, err)
	}
	var ch *gate.Change
	if len(paths) > 0 {
		r := *root
		if r == "" {
			r = cwd
		}
		ch, err = gate.ChangeFromPaths(r, paths)
	} else {
		ch, err = gate.ChangeFromRange(ctx, gate.RangeOptions{Dir: cwd, Base: *base, Head: *head})
	}
	if err != nil {
		return fe.fail(stderr, err)
	}
	fe.changed(ch)
	ch.Images = images

	policyDir := ch.Root
	if ch.Mode == gate.PathsMode {
		if top, err := gate.RepoRoot(ctx, cwd); err == nil {
			policyDir = top
		} else {
			policyDir = cwd
		}
	}
	pol, err := pf.load(ctx, policyDir, getenv)
	if err != nil {
		return fe.fail(stderr, err)
	}
	g, err := gate.New(pol, envFor(pol, ch.Root, policyDir), logger)
	if err != nil {
		return fe.fail(stderr, err)
	}
	g.WithProgress(fe.progress(stdout))
	if q, closeQueue := checkQueue(ctx, *queueU, getenv, pol, policyDir, logger); q != nil {
		defer closeQueue()
		g.WithQueue(q)
		withDemotions(g, q)
	}
	logger.Info("checking", "mode", ch.Mode, "files", len(ch.Files), "policy", pol.Source)
	v := g.Check(ctx, ch)

	if *output != "" {
		var buf bytes.Buffer
		if err := actions.WriteJSON(&buf, v); err != nil {
			return fe.fail(stderr, err)
		}
		if err := atomicfile.Write(*output, buf.Bytes(), 0o644); err != nil {
			return fe.fail(stderr, fmt.Errorf("writing --output: %w", err))
		}
	}
	if err := fe.write(stdout, *format, v); err != nil {
		return fe.fail(stderr, fmt.Errorf("writing verdict: %w", err))
	}
	code := exitPass
	if !v.Pass() {
		code = exitBlocked
	}
	code = fe.finish(ctx, stdout, stderr, v, *output, code)
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "sluice check: interrupted")
		return exitInternal
	}
	return code
}

func envFor(p *gate.Policy, root, policyDir string) gate.Env {
	if p.Source != "" && !strings.HasPrefix(p.Source, "oci://") {
		policyDir = filepath.Dir(p.Source)
	}
	return gate.Env{Root: root, PolicyDir: policyDir}
}

func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	if len(args) > 0 && args[0] == "push" {
		return runPolicyPush(ctx, args[1:], stdout, stderr, getenv)
	}
	if len(args) == 0 || args[0] != "validate" {
		fmt.Fprintln(stderr, "Usage: sluice policy validate [--policy FILE|oci://...] [--policy-key FILE]\n       sluice policy push FILE oci://REGISTRY/REPO[:TAG] --key cosign.key")
		return exitUsage
	}
	fs := newFlagSet("sluice policy validate", stderr)
	var pf policyFlags
	pf.register(fs)
	policy := &pf.policy
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	if fs.NArg() > 0 {
		if *policy != "" || fs.NArg() > 1 {
			fmt.Fprintln(stderr, "sluice policy validate: give one policy file")
			return exitUsage
		}
		*policy = fs.Arg(0)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return fail(stderr, "policy validate", err)
	}
	dir := cwd
	if top, err := gate.RepoRoot(ctx, cwd); err == nil {
		dir = top
	}
	pol, err := pf.load(ctx, dir, getenv)
	if err != nil {
		return fail(stderr, "policy validate", err)
	}
	if pol.Source == "" {
		fmt.Fprintf(stderr, "sluice policy validate: no %s in %s; the built-in defaults apply\n", gate.PolicyFile, dir)
		return exitUsage
	}
	if err := pol.Validate(envFor(pol, dir, dir)); err != nil {
		return fail(stderr, "policy validate", err)
	}
	var enabled []string
	for _, c := range pol.Controls {
		if c.Enabled {
			enabled = append(enabled, fmt.Sprintf("%s (%s, %v)", c.Name, c.Placement, c.Budget.Time))
		}
	}
	src := pol.Source
	if pol.Org != nil && pol.Org.Source != pol.Source {
		src += " over the organisation policy " + pol.Org.Source
	}
	fmt.Fprintf(stdout, "%s: ok, version %d; controls: %s\n", src, pol.Version, strings.Join(enabled, ", "))
	return exitPass
}

// fail prints err and maps it to an exit code: configuration and usage
// errors are 2, anything else 3.
func fail(stderr io.Writer, cmd string, err error) int {
	var ce *gate.ConfigError
	switch {
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "sluice %s: %v\n", cmd, ce)
		return exitUsage
	case errors.Is(err, gate.ErrUsage):
		fmt.Fprintf(stderr, "sluice %s: %s\n", cmd, strings.TrimPrefix(err.Error(), gate.ErrUsage.Error()+": "))
		return exitUsage
	}
	fmt.Fprintf(stderr, "sluice %s: %v\n", cmd, err)
	return exitInternal
}

func newLogger(stderr io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

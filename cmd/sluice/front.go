package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-ci/sluice/actions"
	"github.com/sluice-ci/sluice/actions/github"
	"github.com/sluice-ci/sluice/actions/junit"
	"github.com/sluice-ci/sluice/actions/sarif"
	"github.com/sluice-ci/sluice/actions/tekton"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/atomicfile"
)

// front is what `sluice check` does for the CI front ends: the flags of
// the report files, and in GitHub Actions the inputs, the event's range,
// progress, outputs, summary, annotations and the check run.
type front struct {
	getenv   env
	github   *bool
	tekton   *string
	sarif    *string
	junit    *string
	checkRun *bool

	wf      *github.Workflow // set in GitHub Actions mode
	enforce bool
	files   github.Files
	mu      sync.Mutex // serialises progress lines
	source  string     // how the event gave the range, for the verdict
}

// checkArgs are runCheck's flags that the front ends may fill in.
type checkArgs struct {
	base, head, policy, format, output, queue *string
	paths, images                             *listFlag
}

func newFront(fs *flag.FlagSet, getenv env) *front {
	return &front{
		getenv:   getenv,
		github:   fs.Bool("github", github.InActions(getenv), "GitHub Actions mode: read INPUT_* and the event, write outputs, step summary and annotations (default: on when GITHUB_ACTIONS=true)"),
		tekton:   fs.String("tekton-results", "", "write Tekton results (verdict, findings, blocking-controls, deferred) into `DIR` (e.g. /tekton/results)"),
		sarif:    fs.String("sarif", "", "also write the verdict as SARIF 2.1.0 to `FILE`"),
		junit:    fs.String("junit", "", "also write the verdict as JUnit XML to `FILE`"),
		checkRun: fs.Bool("check-run", false, "create or update the check run \"sluice\" on the head commit (needs GITHUB_TOKEN with checks: write and GITHUB_REPOSITORY)"),
		enforce:  true,
	}
}

// prepare reads GitHub Actions inputs into flags not given on the command
// line and derives the range from the event. done is true when check must
// stop with code.
func (fe *front) prepare(ctx context.Context, fs *flag.FlagSet, stdout, stderr io.Writer, a checkArgs) (code int, done bool) {
	if !*fe.github {
		return 0, false
	}
	fe.wf = github.NewWorkflow(stdout, fe.getenv)
	wf := fe.wf
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	bad := func(err error) (int, bool) {
		_ = wf.Annotate(github.Annotation{Level: github.Error, Title: "sluice", Message: err.Error()})
		fmt.Fprintf(stderr, "sluice check: %v\n", err)
		return exitUsage, true
	}
	// A password in the queue URL is masked before anything could print it.
	if q := wf.Input("queue-url"); q != "" {
		if u, err := url.Parse(q); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok {
				_ = wf.Mask(p)
			}
		}
	}
	for _, in := range []struct {
		name string
		to   *string
	}{{"policy", a.policy}, {"format", a.format}, {"base", a.base}, {"head", a.head}} {
		if v := wf.Input(in.name); v != "" && !set[in.name] {
			*in.to = v
		}
	}
	// The action's queue-url records the verdict and enqueues deferred
	// work there (and, in Actions, the repository with it, for the
	// worker's check runs).
	if v := wf.Input("queue-url"); v != "" && !set["queue"] {
		*a.queue = v
	}
	if !slices.Contains(actions.Formats, *a.format) {
		return bad(fmt.Errorf("input format %q: want one of %s", *a.format, strings.Join(actions.Formats, ", ")))
	}
	for _, img := range strings.FieldsFunc(wf.Input("images"), func(r rune) bool { return r == '\n' || r == ',' || r == ' ' }) {
		*a.images = append(*a.images, img)
	}
	var err error
	if fe.enforce, err = wf.InputBool("enforce", true); err != nil {
		return bad(err)
	}
	if b, err := wf.InputBool("check-run", false); err != nil {
		return bad(err)
	} else if b && !set["check-run"] {
		*fe.checkRun = true
	}
	if v := wf.Input("sarif-file"); v != "" && !set["sarif"] {
		*fe.sarif = v
	}
	tmp := fe.getenv("RUNNER_TEMP")
	if tmp != "" {
		if *a.output == "" {
			*a.output = filepath.Join(tmp, "sluice-verdict.json")
		}
		if *fe.sarif == "" {
			*fe.sarif = filepath.Join(tmp, "sluice.sarif")
		}
	}
	if len(*a.paths) > 0 || *a.base != "" {
		return 0, false
	}
	depth := 50
	if v := wf.Input("fetch-depth"); v != "" {
		if depth, err = strconv.Atoi(v); err != nil || depth < 1 {
			return bad(fmt.Errorf("input fetch-depth %q: want a positive number", v))
		}
	}
	name, path := fe.getenv("GITHUB_EVENT_NAME"), fe.getenv("GITHUB_EVENT_PATH")
	if name == "" || path == "" {
		return 0, false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return bad(fmt.Errorf("reading the event payload (GITHUB_EVENT_PATH): %w", err))
	}
	r, err := github.RangeFromEvent(name, data, fe.getenv("GITHUB_SHA"))
	switch {
	case errors.Is(err, github.ErrNothingToCheck):
		_ = wf.Annotate(github.Annotation{Level: github.Notice, Title: "sluice", Message: "the " + name + " event deletes a branch: nothing to check"})
		_ = wf.SetOutput("verdict", "pass")
		return exitPass, true
	case errors.Is(err, github.ErrUnsupportedEvent):
		_ = wf.Annotate(github.Annotation{Level: github.Warning, Title: "sluice", Message: err.Error() + "; checking from sluice's default base"})
		return 0, false
	case err != nil:
		return bad(err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return bad(err)
	}
	base, head, err := github.Resolve(ctx, r, github.FetchOptions{Dir: cwd, Depth: depth, Logf: func(f string, args ...any) { _ = wf.Infof(f, args...) }})
	if err != nil {
		return bad(fmt.Errorf("finding the %s range: %w", name, err))
	}
	if !set["base"] {
		*a.base = base
	}
	if !set["head"] && *a.head == "" {
		*a.head = head
	}
	fe.source = name + " event"
	return 0, false
}

// changed notes on the change where its range came from.
func (fe *front) changed(ch *gate.Change) {
	if fe.source != "" && ch.BaseSource == "--base" {
		ch.BaseSource = fe.source
	}
}

// progress prints which control is running, in GitHub Actions.
func (fe *front) progress(stdout io.Writer) func(gate.Event) {
	if fe.wf == nil {
		return nil
	}
	return func(e gate.Event) {
		fe.mu.Lock()
		defer fe.mu.Unlock()
		if !e.Done {
			fmt.Fprintf(stdout, "sluice: %s running\n", e.Control)
			return
		}
		n := fmt.Sprintf("%d findings", len(e.Run.Findings))
		if len(e.Run.Findings) == 1 {
			n = "1 finding"
		}
		fmt.Fprintf(stdout, "sluice: %s %s in %s (budget %s), %s\n", e.Control, e.Run.Status,
			fmtMS(e.Run.DurationMS), fmtMS(e.Run.BudgetMS), n)
	}
}

// write prints the verdict in its format; in GitHub Actions inside a group
// and with workflow commands stopped, since it quotes the repository.
func (fe *front) write(stdout io.Writer, format string, v *gate.Verdict) error {
	if fe.wf == nil {
		return actions.WriteWith(stdout, format, v, actions.Options{Version: version()})
	}
	return fe.wf.Group("sluice verdict ("+format+")", func() error {
		return fe.wf.Untrusted(func(w io.Writer) error {
			return actions.WriteWith(w, format, v, actions.Options{Version: version()})
		})
	})
}

// finish writes the report files, the GitHub outputs, summary, annotations
// and check run, and applies enforce: false.
func (fe *front) finish(ctx context.Context, stdout, stderr io.Writer, v *gate.Verdict, verdictFile string, code int) int {
	var errs []error
	if *fe.sarif != "" {
		var buf bytes.Buffer
		err := sarif.Write(&buf, v, sarif.Options{Version: version()})
		if err == nil {
			err = atomicfile.Write(*fe.sarif, buf.Bytes(), 0o644)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("writing SARIF: %w", err))
		} else {
			fe.files.SARIF = *fe.sarif
		}
	}
	if *fe.junit != "" {
		var buf bytes.Buffer
		err := junit.Write(&buf, v)
		if err == nil {
			err = atomicfile.Write(*fe.junit, buf.Bytes(), 0o644)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("writing JUnit: %w", err))
		}
	}
	if *fe.tekton != "" {
		errs = append(errs, tekton.WriteResults(*fe.tekton, v))
	}
	if fe.wf != nil {
		fe.files.Verdict = verdictFile
		errs = append(errs, fe.wf.Report(v, fe.files))
	}
	if *fe.checkRun {
		errs = append(errs, fe.publish(ctx, stdout, v))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "sluice check: %s\n", strings.ReplaceAll(err.Error(), gate.ErrUsage.Error()+": ", ""))
		switch {
		case errors.Is(err, gate.ErrUsage):
			code = exitUsage
		case code == exitPass || code == exitBlocked:
			code = exitInternal
		}
	}
	if code == exitBlocked && !fe.enforce {
		if fe.wf != nil {
			_ = fe.wf.Annotate(github.Annotation{Level: github.Warning, Title: "sluice", Message: "the change is blocked by policy, but enforce is false: reported only"})
		}
		return exitPass
	}
	return code
}

func (fe *front) publish(ctx context.Context, stdout io.Writer, v *gate.Verdict) error {
	repo := fe.getenv("GITHUB_REPOSITORY")
	if repo == "" {
		return fmt.Errorf("%w: --check-run: GITHUB_REPOSITORY (owner/name) is not set", gate.ErrUsage)
	}
	if v.Change.Mode != gate.RangeMode {
		return fmt.Errorf("%w: --check-run: a check run is on a commit; check a git range, not paths", gate.ErrUsage)
	}
	c, err := github.NewClient(fe.getenv)
	if err != nil {
		return fmt.Errorf("%w: --check-run: %v", gate.ErrUsage, err)
	}
	id, err := c.Publish(ctx, repo, v.Change.Head, github.ReportFromVerdict("sluice", v))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sluice: check run %d on %s\n", id, v.Change.Head)
	return nil
}

func fmtMS(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

// fail reports err as fail does and, in GitHub Actions, also as an error
// annotation, on the policy file's line for a configuration error.
func (fe *front) fail(stderr io.Writer, err error) int {
	if fe.wf != nil {
		an := github.Annotation{Level: github.Error, Title: "sluice", Message: strings.ReplaceAll(err.Error(), gate.ErrUsage.Error()+": ", "")}
		var ce *gate.ConfigError
		if errors.As(err, &ce) {
			an.File, an.Line, an.Column, an.Message = relToWorkspace(fe.getenv("GITHUB_WORKSPACE"), ce.File), ce.Line, ce.Column, ce.Error()
		}
		_ = fe.wf.Annotate(an)
	}
	return fail(stderr, "check", err)
}

// relToWorkspace makes an absolute path relative to the workspace, as
// annotations want it.
func relToWorkspace(ws, p string) string {
	if ws == "" || !filepath.IsAbs(p) {
		return p
	}
	if rel, err := filepath.Rel(ws, p); err == nil && filepath.IsLocal(rel) {
		return filepath.ToSlash(rel)
	}
	return p
}

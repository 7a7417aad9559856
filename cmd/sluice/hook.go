package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-ci/sluice/actions"
	"github.com/sluice-ci/sluice/actions/hook"
	"github.com/sluice-ci/sluice/gate"
)

// defaultHookBudget is the time a whole push may spend in the hook.
const defaultHookBudget = 5 * time.Second

const hookUsage = `Usage:
  sluice hook install [--force]     install the pre-push hook in this repository
  sluice hook pre-push REMOTE URL   run by the hook: check each pushed range (reads git's lines on stdin)
`

func runHook(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv env) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, hookUsage)
		return exitUsage
	}
	switch args[0] {
	case "install":
		return runHookInstall(ctx, args[1:], stdout, stderr)
	case "pre-push":
		return runPrePush(ctx, args[1:], stdin, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, hookUsage)
		return exitPass
	}
	fmt.Fprintf(stderr, "sluice hook: unknown subcommand %q\n\n%s", args[0], hookUsage)
	return exitUsage
}

func runHookInstall(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("sluice hook install", stderr)
	force := fs.Bool("force", false, "replace a pre-push hook sluice did not install (it is kept as pre-push.before-sluice)")
	exeFlag := fs.String("exe", "", "sluice binary the hook runs (default: this one)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	exe := *exeFlag
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return fail(stderr, "hook install", fmt.Errorf("finding this binary: %w", err))
		}
	}
	if abs, err := filepath.Abs(exe); err == nil {
		exe = abs
	}
	cwd, err := os.Getwd()
	if err != nil {
		return fail(stderr, "hook install", err)
	}
	in, err := hook.Install(ctx, cwd, hook.InstallOptions{Exe: exe, Force: *force})
	if err != nil {
		fmt.Fprintf(stderr, "sluice hook install: %v\n", err)
		return exitUsage
	}
	switch {
	case in.Backup != "":
		fmt.Fprintf(stdout, "installed %s; the previous hook is kept as %s\n", in.Path, in.Backup)
	case in.Updated:
		fmt.Fprintf(stdout, "updated %s\n", in.Path)
	default:
		fmt.Fprintf(stdout, "installed %s\n", in.Path)
	}
	return exitPass
}

// runPrePush checks each range git is about to push. Everything it prints
// goes to stderr, which git shows; exit 1 makes git refuse the push.
func runPrePush(ctx context.Context, args []string, stdin io.Reader, stderr io.Writer) int {
	fs := newFlagSet("sluice hook pre-push", stderr)
	budget := fs.Duration("budget", defaultHookBudget, "time the whole push may spend; each control's budget is cut to what is left, and its on_overrun mode applies")
	policy := fs.String("policy", "", "policy `FILE` (default .sluice.yaml at the repository root)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	remote := fs.Arg(0)
	cwd, err := os.Getwd()
	if err != nil {
		return fail(stderr, "hook pre-push", err)
	}
	ups, err := hook.ParseUpdates(stdin)
	if err != nil {
		return fail(stderr, "hook pre-push", fmt.Errorf("%w: %v", gate.ErrUsage, err))
	}
	ranges, err := hook.Ranges(ctx, cwd, remote, ups)
	if err != nil {
		return fail(stderr, "hook pre-push", err)
	}
	deadline := time.Now().Add(*budget)
	logger := newLogger(stderr, false)
	code := exitPass
	for _, r := range ranges {
		ch, err := gate.ChangeFromRange(ctx, gate.RangeOptions{Dir: cwd, Base: r.Base, Head: r.Head})
		if err != nil {
			return fail(stderr, "hook pre-push", err)
		}
		ch.BaseSource = r.BaseSource
		pol, err := gate.FindPolicy(*policy, ch.Root, catalog())
		if err != nil {
			return fail(stderr, "hook pre-push", err)
		}
		left := time.Until(deadline)
		for _, c := range pol.Controls {
			c.Budget.Time = max(min(c.Budget.Time, left), time.Millisecond)
		}
		g, err := gate.New(pol, envFor(pol, ch.Root, ch.Root), logger)
		if err != nil {
			return fail(stderr, "hook pre-push", err)
		}
		v := g.Check(ctx, ch)
		if !v.Pass() || len(v.Warnings) > 0 {
			fmt.Fprintf(stderr, "sluice: pushing %s\n", r.Ref)
			if err := actions.WriteText(stderr, v); err != nil {
				return fail(stderr, "hook pre-push", err)
			}
		}
		if !v.Pass() {
			code = exitBlocked
		}
	}
	if code == exitBlocked {
		fmt.Fprintln(stderr, "sluice: push refused; fix the findings above (or, knowingly, git push --no-verify)")
	}
	return code
}

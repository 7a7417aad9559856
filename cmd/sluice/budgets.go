package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/atomicfile"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

const budgetsUsage = `Usage: sluice budgets [--since DURATION] [--format text|json|markdown|html] [--output FILE] [flags]
       sluice budgets restore CONTROL [--reason TEXT] [flags]

The first form reports every control as a service against its budget, from
the ledger of runs in the queue: p50, p95 and p99 time, failure, overrun and
deferral rates, retries; queue depth and oldest job by kind; the exposure
window (fast verdict to deep result) and the artifacts inside it now; the
controls whose p95 exceeds their budget; the demotions in force.

The second moves a control demoted by budgets.auto_demote back to the fast
path, and records the move.

Exit codes: 0 written, 2 usage or configuration error (or restoring a control
that is not demoted), 3 internal error.

Flags:
`

func runBudgets(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	restore := len(args) > 0 && args[0] == "restore"
	if restore {
		args = args[1:]
	}
	fs := newFlagSet("sluice budgets", stderr)
	var (
		queueFlag = fs.String("queue", "", "the queue: `URL` postgres://... or a SQLite file (default $SLUICE_QUEUE, else the policy's queue.url, else "+queue.DefaultPath+" in the repository)")
		policy    = fs.String("policy", "", "policy `FILE` (for its queue.url, budgets section and control budgets)")
		since     = fs.String("since", "", "the window: runs finished within this `DURATION` before now, e.g. 7d, 36h (default: the policy's budgets.window, 7d)")
		format    = fs.String("format", "text", "output `FORMAT`: "+strings.Join(budgets.Formats, ", "))
		output    = fs.String("output", "", "write the report to `FILE` (whole or not at all) instead of stdout")
		reason    = fs.String("reason", "", "with restore: why, recorded with the move")
	)
	fs.Usage = func() {
		fmt.Fprint(stderr, budgetsUsage)
		fs.PrintDefaults()
	}
	// The control name may come before the flags: restore secrets --queue x.
	var control string
	if restore && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		control, args = args[0], args[1:]
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if restore && control == "" && fs.NArg() == 1 {
		control = fs.Arg(0)
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice budgets: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if restore && control == "" {
		fmt.Fprintln(stderr, "sluice budgets restore: name the control to restore")
		return exitUsage
	}
	if !slices.Contains(budgets.Formats, *format) {
		fmt.Fprintf(stderr, "sluice budgets: --format %q: want one of %s\n", *format, strings.Join(budgets.Formats, ", "))
		return exitUsage
	}
	pol, dir, err := workspacePolicy(ctx, *policy)
	if err != nil {
		return fail(stderr, "budgets", err)
	}
	window := pol.Budgets.Window
	if *since != "" {
		if window, err = budgets.ParseWindow(*since); err != nil {
			fmt.Fprintf(stderr, "sluice budgets: --since: %v\n", err)
			return exitUsage
		}
	}
	u := queueURL(*queueFlag, getenv, pol, dir, "")
	if u == "" {
		u = dir + "/" + queue.DefaultPath
	}
	q, code := openStore(ctx, "budgets", u, pol, stderr)
	if q == nil {
		return code
	}
	defer q.Close()

	if restore {
		if _, ok := catalog().Lookup(control); !ok {
			fmt.Fprintf(stderr, "sluice budgets restore: unknown control %q\n", control)
			return exitUsage
		}
		var budget time.Duration
		if c := pol.Control(control); c != nil {
			budget = c.Budget.Time
		}
		m, err := q.Restore(ctx, control, budget, cmpOr(*reason, "sluice budgets restore"))
		if errors.Is(err, queue.ErrNotDemoted) {
			fmt.Fprintf(stderr, "sluice budgets restore: %s is not demoted; nothing to do\n", control)
			return exitUsage
		}
		if err != nil {
			return fail(stderr, "budgets", err)
		}
		fmt.Fprintf(stdout, "%s restored to the fast path: %s\n", control, m.Reason)
		if pol.Budgets.AutoDemote {
			fmt.Fprintf(stdout, "auto_demote is on: it is demoted again if its p95 over the next %d fast runs exceeds %v\n", pol.Budgets.MinRuns, budget)
		}
		return exitPass
	}

	rep, err := q.Report(ctx, queue.ReportOptions{Since: time.Now().Add(-window)})
	if err != nil {
		return fail(stderr, "budgets", err)
	}
	rep.Finish(pol.Budgets.AutoDemote, func(name string) bool {
		c := pol.Control(name)
		return c != nil && budgets.Demotable(c.Budget)
	})
	var buf bytes.Buffer
	if err := rep.Write(&buf, *format); err != nil {
		return fail(stderr, "budgets", err)
	}
	if *output != "" {
		if err := atomicfile.Write(*output, buf.Bytes(), 0o644); err != nil {
			return fail(stderr, "budgets", fmt.Errorf("writing --output: %w", err))
		}
		return exitPass
	}
	if _, err := stdout.Write(buf.Bytes()); err != nil {
		return fail(stderr, "budgets", err)
	}
	return exitPass
}

// withDemotions makes the gate move over-budget fast controls to the slow
// path when the check's queue keeps the ledger (an open queue, not an
// unreachable one).
func withDemotions(g *gate.Gate, q gate.Queue) {
	if d, ok := q.(gate.Demotions); ok {
		g.WithDemotions(d)
	}
}

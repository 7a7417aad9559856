package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/atomicfile"
)

// Exit codes of sluice batch besides exitPass (all approved), exitBlocked
// (refused: nothing may ship), exitUsage and exitInternal.
const exitPartly = 4

func runBatch(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	fs := newFlagSet("sluice batch", stderr)
	var (
		changes    = fs.String("changes", "", "changes `FILE` (YAML or JSON, schema sluice.changes/v1)")
		base       = fs.String("base", "", "base `REF` of a git range: each first-parent commit of base..head is one change")
		head       = fs.String("head", "", "head `REF` of the git range (default HEAD)")
		mergeGroup = fs.Bool("merge-group", false, "read a merge_group event payload from $GITHUB_EVENT_PATH (or --event) and plan its base_sha..head_sha")
		event      = fs.String("event", "", "merge_group event payload `FILE` (default $GITHUB_EVENT_PATH)")
		results    = fs.String("results", "", "results `FILE` (sluice.results/v1): what the slow path concluded, added to the changes file's own results")
		queueFlag  = fs.String("queue", "", "read results from the slow path's store: `URL` postgres://... or a SQLite file (default $SLUICE_QUEUE); a result the store holds wins over one from a file")
		debtFile   = fs.String("debt", "", "debt ledger `FILE` (sluice.debt/v1): read before, rewritten after (created when missing)")
		batchID    = fs.String("batch-id", "", "`ID` recorded with the debt this run records (default: the change set's source)")
		format     = fs.String("format", "text", "output `FORMAT`: "+strings.Join(gate.BatchFormats, ", "))
		output     = fs.String("output", "", "also write the JSON plan to `FILE` (written whole or not at all)")
		pf         policyFlags
	)
	pf.register(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: sluice batch (--changes FILE | --base REF [--head REF] | --merge-group) [flags]

Plans release batches over a set of changes by the policy's categories and
batch rules. Exit codes: 0 every change approved, 4 partly approved (some
held back), 1 refused (nothing may ship), 2 usage or configuration error,
3 internal error.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice batch: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if !slices.Contains(gate.BatchFormats, *format) {
		fmt.Fprintf(stderr, "sluice batch: --format %q: want one of %s\n", *format, strings.Join(gate.BatchFormats, ", "))
		return exitUsage
	}
	inputs := 0
	for _, given := range []bool{*changes != "", *base != "" || *head != "", *mergeGroup || *event != ""} {
		if given {
			inputs++
		}
	}
	if inputs != 1 {
		fmt.Fprintln(stderr, "sluice batch: give exactly one of --changes FILE, a git range (--base/--head), or --merge-group")
		return exitUsage
	}
	cwd, err := os.Getwd()
	if err != nil {
		return fail(stderr, "batch", err)
	}

	var set *gate.ChangeSet
	var records []gate.ResultRecord
	switch {
	case *changes != "":
		set, records, err = gate.LoadChangeSet(*changes)
	case *base != "" || *head != "":
		set, err = gate.ChangeSetFromRange(ctx, cwd, *base, *head)
	default:
		path := *event
		if path == "" {
			path = getenv("GITHUB_EVENT_PATH")
		}
		if path == "" {
			fmt.Fprintln(stderr, "sluice batch: --merge-group needs GITHUB_EVENT_PATH or --event FILE")
			return exitUsage
		}
		set, err = gate.ChangeSetFromMergeGroup(ctx, cwd, path)
	}
	if err != nil {
		return fail(stderr, "batch", err)
	}
	if *results != "" {
		more, err := gate.LoadResultsFile(*results)
		if err != nil {
			return fail(stderr, "batch", err)
		}
		records = append(records, more...)
	}

	dir := cwd
	if top, err := gate.RepoRoot(ctx, cwd); err == nil {
		dir = top
	}
	pol, err := pf.load(ctx, dir, getenv)
	if err != nil {
		return fail(stderr, "batch", err)
	}
	var debt []gate.Debt
	if *debtFile != "" {
		if debt, err = gate.LoadDebt(*debtFile); err != nil {
			return fail(stderr, "batch", err)
		}
	}
	id := *batchID
	if id == "" {
		id = set.Source
	}
	res := batchResults(records)
	if u := cmpOr(*queueFlag, getenv("SLUICE_QUEUE")); u != "" {
		q, code := openStore(ctx, "batch", u, pol, stderr)
		if q == nil {
			return code
		}
		defer q.Close()
		res = storeFirst{store: q, files: res}
	}
	plan, err := pol.PlanBatches(ctx, set, gate.PlanOptions{
		Results: res, Debt: debt, BatchID: id, Catalog: catalog(),
	})
	if err != nil {
		return fail(stderr, "batch", err)
	}

	if *output != "" {
		var buf bytes.Buffer
		if err := gate.WriteBatch(&buf, "json", plan); err != nil {
			return fail(stderr, "batch", err)
		}
		if err := atomicfile.Write(*output, buf.Bytes(), 0o644); err != nil {
			return fail(stderr, "batch", fmt.Errorf("writing --output: %w", err))
		}
	}
	if *debtFile != "" {
		data, err := json.MarshalIndent(gate.DebtFile{Schema: gate.DebtSchema, Debt: plan.Debt.Ledger()}, "", "  ")
		if err != nil {
			return fail(stderr, "batch", err)
		}
		if err := atomicfile.Write(*debtFile, append(data, '\n'), 0o644); err != nil {
			return fail(stderr, "batch", fmt.Errorf("writing --debt: %w", err))
		}
	}
	if err := gate.WriteBatch(stdout, *format, plan); err != nil {
		return fail(stderr, "batch", fmt.Errorf("writing the plan: %w", err))
	}
	switch plan.Outcome {
	case gate.Approved:
		return exitPass
	case gate.PartlyApproved:
		return exitPartly
	}
	return exitBlocked
}

// batchResults are the results given in files (--results and the changes
// file's own).
func batchResults(records []gate.ResultRecord) gate.Results {
	return gate.NewFileResults(records...)
}

// storeFirst reads a result from the slow path's store, and from the
// files only when the store has none: what the store holds is what ran.
type storeFirst struct {
	store, files gate.Results
}

func (s storeFirst) Lookup(ctx context.Context, kind, subject string) (gate.ResultStatus, error) {
	st, err := s.store.Lookup(ctx, kind, subject)
	if err != nil || st.State != gate.ResultMissing {
		return st, err
	}
	return s.files.Lookup(ctx, kind, subject)
}

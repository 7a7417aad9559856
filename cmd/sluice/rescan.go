package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/slowpath/queue"
)

func runRescan(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	fs := newFlagSet("sluice rescan", stderr)
	var (
		queueFlag = fs.String("queue", "", "the queue: `URL` postgres://... or a SQLite file (default $SLUICE_QUEUE, else the policy's queue.url, else "+queue.DefaultPath+" in the repository)")
		policy    = fs.String("policy", "", "policy `FILE` (its image-scan budget and digest go with the jobs)")
		since     = fs.String("since", "", "rescan every image a check deferred a scan of within this `AGE` (e.g. 7d, 36h)")
		label     = fs.String("label", "", "rescan `LABEL`: an image is rescanned once per label (default today's UTC date, so a nightly run is idempotent)")
		images    listFlag
	)
	fs.Var(&images, "image", "rescan this image `REF@sha256:...` (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: sluice rescan (--image REF@sha256:... | --since AGE) [flags]

Queues image scans of released images on the bulk lane, behind every
release-path job: the nightly rescan. 'sluice worker' runs them.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice rescan: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if len(images) == 0 && *since == "" {
		fmt.Fprintln(stderr, "sluice rescan: give --image REF@sha256:... (repeatable) or --since AGE")
		return exitUsage
	}
	for _, img := range images {
		if !byDigest(img) {
			fmt.Fprintf(stderr, "sluice rescan: --image %q: want a reference by digest, REF@sha256:<64 hex>\n", img)
			return exitUsage
		}
	}
	var age time.Duration
	if *since != "" {
		var err error
		if age, err = parseAge(*since); err != nil {
			fmt.Fprintf(stderr, "sluice rescan: --since %q: %v\n", *since, err)
			return exitUsage
		}
	}
	lbl := *label
	if lbl == "" {
		lbl = time.Now().UTC().Format(time.DateOnly)
	}
	pol, dir, err := workspacePolicy(ctx, *policy)
	if err != nil {
		return fail(stderr, "rescan", err)
	}
	u := queueURL(*queueFlag, getenv, pol, dir, filepath.Join(dir, queue.DefaultPath))
	q, err := queue.Open(ctx, u, queueOptions(pol, nil))
	if err != nil {
		return fail(stderr, "rescan", err)
	}
	defer q.Close()
	subjects := append([]string(nil), images...)
	if *since != "" {
		released, err := q.Released(ctx, time.Now().Add(-age))
		if err != nil {
			return fail(stderr, "rescan", err)
		}
		subjects = append(subjects, released...)
	}
	r := queue.Rescan{Label: lbl, Control: "image-scan", PolicyDigest: pol.Digest, PolicySource: pol.Source, Budget: 10 * time.Minute}
	if c := pol.Control("image-scan"); c != nil {
		if !c.Enabled {
			fmt.Fprintf(stderr, "sluice rescan: the control image-scan is disabled by %s\n", cmpOr(pol.Source, "the policy"))
			return exitUsage
		}
		r.Budget = c.Budget.Time
	}
	receipts, err := q.Rescan(ctx, subjects, r)
	if err != nil {
		return fail(stderr, "rescan", err)
	}
	queued := 0
	for _, rc := range receipts {
		if !rc.Duplicate {
			queued++
		}
	}
	fmt.Fprintf(stdout, "sluice rescan %s: %d image scan(s) queued on the bulk lane of %s, %d already queued under this label\n",
		lbl, queued, q.URL(), len(receipts)-queued)
	img := dedupSorted(subjects)
	for i, rc := range receipts {
		what := "queued"
		if rc.Duplicate {
			what = "already queued"
		}
		fmt.Fprintf(stdout, "  job %s\t%s\t%s\n", rc.Job, what, img[i])
	}
	return exitPass
}

func byDigest(ref string) bool {
	_, d, ok := strings.Cut(ref, "@")
	return ok && strings.HasPrefix(d, "sha256:") && len(d) == len("sha256:")+64 && strings.Trim(d[len("sha256:"):], "0123456789abcdef") == ""
}

// parseAge reads a Go duration or a number of days ("7d").
func parseAge(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return 0, errors.New("want a positive number of days (7d) or a duration (36h)")
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errors.New("want a positive number of days (7d) or a duration (36h)")
	}
	return d, nil
}

func dedupSorted(ss []string) []string {
	m := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !m[s] {
			m[s] = true
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-ci/sluice/internal/atomicfile"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	fs := newFlagSet("sluice status", stderr)
	var (
		queueFlag = fs.String("queue", "", "the queue: `URL` postgres://... or a SQLite file (default $SLUICE_QUEUE, else the policy's queue.url, else "+queue.DefaultPath+" in the repository)")
		policy    = fs.String("policy", "", "policy `FILE` (for its queue.url)")
		commit    = fs.String("commit", "", "status of the work deferred for this commit `SHA`")
		image     = fs.String("image", "", "status of the work on the image `REF@sha256:...` (any reference with that digest)")
		head      = fs.String("head", "", "status of the change at head `REF` of the current repository (default HEAD)")
		format    = fs.String("format", "text", "output `FORMAT`: text or json")
		sbomDir   = fs.String("sbom-dir", "", "also write each stored SBOM (CycloneDX JSON) to `DIR`/job-<id>.cdx.json")
		paths     listFlag
	)
	fs.Var(&paths, "paths", "status of a paths-mode change over these paths, as given to check (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: sluice status [--commit SHA | --image REF@sha256:... | --paths PATH... | --head REF] [flags]\n\nShows the slow-path work for a commit, an image or a change (default: the repository's HEAD): jobs queued, running, retried, failed or done, their results and the exposure window.\n\nExit codes: 0 all done and clean, 1 findings or a failed job, 4 work still queued or running, 2 usage error, 3 internal error.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	paths = append(paths, fs.Args()...)
	given := 0
	for _, b := range []bool{*commit != "", *image != "", len(paths) > 0, *head != ""} {
		if b {
			given++
		}
	}
	if given > 1 {
		fmt.Fprintln(stderr, "sluice status: give one of --commit, --image, --paths or --head")
		return exitUsage
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(stderr, "sluice status: --format %q: want text or json\n", *format)
		return exitUsage
	}
	pol, dir, err := workspacePolicy(ctx, *policy)
	if err != nil {
		return fail(stderr, "status", err)
	}
	var qu queue.Query
	switch {
	case *image != "":
		_, digest, ok := strings.Cut(*image, "@")
		if !ok || !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 {
			fmt.Fprintf(stderr, "sluice status: --image %q: want a reference by digest, REF@sha256:<64 hex>\n", *image)
			return exitUsage
		}
		qu.Digest = digest
	case len(paths) > 0:
		qu.Subject = "paths:" + strings.Join(paths, ",")
	default:
		ref := cmpOr(*commit, *head, "HEAD")
		sha, err := resolveCommit(ctx, dir, ref)
		if err != nil {
			fmt.Fprintf(stderr, "sluice status: %v\n", err)
			return exitUsage
		}
		qu.Subject = "commit:" + sha
	}
	u := queueURL(*queueFlag, getenv, pol, dir, "")
	if u == "" {
		u = dir + "/" + queue.DefaultPath
	}
	q, code := openStore(ctx, "status", u, pol, stderr)
	if q == nil {
		return code
	}
	defer q.Close()
	rep, err := q.Status(ctx, qu)
	if err != nil {
		return fail(stderr, "status", err)
	}
	if *sbomDir != "" {
		for _, j := range rep.Jobs {
			if j.Result == nil || len(j.Result.SBOM) == 0 {
				continue
			}
			if err := os.MkdirAll(*sbomDir, 0o755); err != nil {
				return fail(stderr, "status", fmt.Errorf("writing SBOMs: %w", err))
			}
			if err := atomicfile.Write(filepath.Join(*sbomDir, "job-"+j.Job+".cdx.json"), j.Result.SBOM, 0o644); err != nil {
				return fail(stderr, "status", fmt.Errorf("writing SBOM of job %s: %w", j.Job, err))
			}
		}
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fail(stderr, "status", err)
		}
	} else {
		writeStatus(stdout, rep)
	}
	findings := false
	for _, j := range rep.Jobs {
		findings = findings || j.Result != nil && len(j.Result.Findings) > 0
	}
	switch {
	case rep.Failed > 0 || findings:
		return exitBlocked
	case rep.Pending > 0:
		return exitPending
	}
	return exitPass
}

// resolveCommit turns a revision into a full commit id with git (no shell).
func resolveCommit(ctx context.Context, dir, ref string) (string, error) {
	if len(ref) == 40 && strings.Trim(ref, "0123456789abcdef") == "" {
		return ref, nil
	}
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "--verify", "--end-of-options", ref+"^{commit}")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("resolving %q to a commit: not a commit in %s", ref, dir)
	}
	return strings.TrimSpace(string(out)), nil
}

func writeStatus(w io.Writer, rep *queue.Report) {
	fmt.Fprintf(w, "slow-path status of %s\n", rep.Query)
	if len(rep.Jobs) == 0 {
		fmt.Fprintln(w, "  no work recorded (no check deferred any, or it ran without a queue)")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, j := range rep.Jobs {
		window := "exposure " + ms(j.ExposureMS)
		if j.Open {
			window += " so far"
		}
		fmt.Fprintf(tw, "  job %s\t%s\t%s\t%s\t%s\tattempt %d", j.Job, j.Kind, j.Subject, j.Lane, j.State, j.Attempts)
		if j.MaxAttempt > 0 {
			fmt.Fprintf(tw, "/%d", j.MaxAttempt)
		}
		fmt.Fprintf(tw, "\t%s\n", window)
	}
	tw.Flush()
	for _, j := range rep.Jobs {
		if r := j.Result; r != nil {
			fmt.Fprintf(w, "\njob %s (%s %s): %s in %s, %d finding(s)", j.Job, j.Kind, j.Subject, r.Status, ms(r.DurationMS), len(r.Findings))
			if r.SBOMBytes > 0 {
				fmt.Fprintf(w, ", SBOM %d bytes", r.SBOMBytes)
			}
			if r.DBVersion != "" {
				fmt.Fprintf(w, ", DB %s", r.DBVersion)
			}
			fmt.Fprintln(w)
			for _, f := range r.Findings {
				loc := f.File
				if f.Line > 0 {
					loc = fmt.Sprintf("%s:%d", f.File, f.Line)
				}
				fmt.Fprintf(w, "  %s %s %s %s\n", f.Severity, f.Rule, loc, f.Message)
			}
			for _, n := range r.Notes {
				fmt.Fprintf(w, "  note: %s\n", n)
			}
		}
		for _, e := range j.Errors {
			fmt.Fprintf(w, "  job %s error: %s\n", j.Job, e)
		}
		if cr := j.CheckRun; cr != nil {
			fmt.Fprintf(w, "  job %s check run on %s@%.12s: %s", j.Job, cr.Repo, cr.HeadSHA, cr.State)
			if cr.ID != 0 {
				fmt.Fprintf(w, " (id %d)", cr.ID)
			}
			if cr.Attempts > 0 {
				fmt.Fprintf(w, " after %d of %d publish attempt(s)", cr.Attempts, queue.MaxPublishAttempts)
			}
			if cr.Error != "" {
				fmt.Fprintf(w, ": %s", cr.Error)
			}
			fmt.Fprintln(w)
		}
	}
	open := ""
	if rep.ExposureOpen {
		open = " (still open)"
	}
	fmt.Fprintf(w, "\n%d job(s): %d pending, %d failed; exposure window %s%s; %d fast verdict(s) recorded\n",
		len(rep.Jobs), rep.Pending, rep.Failed, ms(rep.ExposureMS), open, len(rep.Verdicts))
}

func ms(n int64) string { return (time.Duration(n) * time.Millisecond).String() }

func cmpOr(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

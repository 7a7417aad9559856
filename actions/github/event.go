package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluice-ci/sluice/gate"
)

// Range is the change a workflow event describes.
type Range struct {
	// Event is the event's name (pull_request, push, ...).
	Event string
	// Base and Head are commit SHAs. Base is empty when the event gives
	// none (a push that creates a branch, workflow_dispatch): the merge
	// base with DefaultBranch is used then.
	Base, Head string
	// MergeBase says whether the change is what Head adds since it
	// branched from Base (pull requests) rather than the plain difference
	// Base..Head (push, merge_group).
	MergeBase bool
	// DefaultBranch is the repository's default branch from the payload.
	DefaultBranch string
}

// ErrNothingToCheck is returned for events that carry no change to check:
// a push that deletes a branch.
var ErrNothingToCheck = errors.New("the event carries no change to check")

// ErrUnsupportedEvent is returned for events sluice cannot derive a range
// from; give base and head explicitly then.
var ErrUnsupportedEvent = errors.New("unsupported event")

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

func isZero(sha string) bool { return sha != "" && strings.Trim(sha, "0") == "" }

// payload holds the fields of GitHub's webhook payloads that sluice reads.
type payload struct {
	Before      string `json:"before"`
	After       string `json:"after"`
	Deleted     bool   `json:"deleted"`
	PullRequest *struct {
		Base struct {
			SHA string `json:"sha"`
			Ref string `json:"ref"`
		} `json:"base"`
		Head struct {
			SHA string `json:"sha"`
		} `json:"head"`
	} `json:"pull_request"`
	MergeGroup *struct {
		BaseSHA string `json:"base_sha"`
		HeadSHA string `json:"head_sha"`
		BaseRef string `json:"base_ref"`
	} `json:"merge_group"`
	Repository struct {
		DefaultBranch string `json:"default_branch"`
	} `json:"repository"`
}

// RangeFromEvent derives the change from an event's name and payload (the
// file at GITHUB_EVENT_PATH). sha is GITHUB_SHA, the commit the workflow
// runs on, used where the payload names none.
func RangeFromEvent(name string, data []byte, sha string) (Range, error) {
	var p payload
	if err := json.Unmarshal(data, &p); err != nil {
		return Range{}, fmt.Errorf("reading the %s event payload: %w", name, err)
	}
	r := Range{Event: name, DefaultBranch: p.Repository.DefaultBranch}
	switch name {
	case "pull_request", "pull_request_target":
		if p.PullRequest == nil {
			return r, fmt.Errorf("reading the %s event payload: no pull_request object", name)
		}
		r.Base, r.Head, r.MergeBase = p.PullRequest.Base.SHA, p.PullRequest.Head.SHA, true
	case "push":
		if p.Deleted || isZero(p.After) {
			return r, ErrNothingToCheck
		}
		r.Head = p.After
		if !isZero(p.Before) {
			r.Base = p.Before
		}
	case "merge_group":
		if p.MergeGroup == nil {
			return r, fmt.Errorf("reading the merge_group event payload: no merge_group object")
		}
		r.Base, r.Head = p.MergeGroup.BaseSHA, p.MergeGroup.HeadSHA
	case "workflow_dispatch", "schedule":
		r.Head = sha
	default:
		return r, fmt.Errorf("%w %q: give the base and head inputs (or --base/--head)", ErrUnsupportedEvent, name)
	}
	if r.Head == "" {
		r.Head = sha
	}
	for _, s := range []struct{ name, v string }{{"base", r.Base}, {"head", r.Head}} {
		if s.v != "" && !shaRE.MatchString(s.v) {
			return r, fmt.Errorf("reading the %s event payload: %s %q is not a commit SHA", name, s.name, s.v)
		}
	}
	if r.Head == "" {
		return r, fmt.Errorf("reading the %s event payload: no head commit, and GITHUB_SHA is not set", name)
	}
	if r.DefaultBranch != "" && !validBranch(r.DefaultBranch) {
		return r, fmt.Errorf("reading the %s event payload: default branch %q is not a branch name sluice accepts", name, r.DefaultBranch)
	}
	return r, nil
}

var branchRE = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)

func validBranch(b string) bool {
	return branchRE.MatchString(b) && !strings.HasPrefix(b, "-") && !strings.Contains(b, "..")
}

// FetchOptions say how Resolve may complete a shallow clone.
type FetchOptions struct {
	// Dir is the repository.
	Dir string
	// Depth is how many commits of history to fetch when the clone lacks
	// what the range needs (default 50).
	Depth int
	// Remote is the remote to fetch from (default origin).
	Remote string
	// Logf, if set, is told what is fetched.
	Logf func(format string, args ...any)
}

// ShallowFix is the exact change that makes the whole history available.
const ShallowFix = "set `fetch-depth: 0` on actions/checkout (`with: {fetch-depth: 0}`), or raise sluice's `fetch-depth` input"

// Resolve turns r into the base and head commits to check, fetching from
// the remote what a shallow clone lacks: `git fetch --no-tags --depth=N
// origin SHA...`, run without a shell. When the history needed is still
// missing it fails with ShallowFix.
func Resolve(ctx context.Context, r Range, o FetchOptions) (base, head string, err error) {
	if o.Depth <= 0 {
		o.Depth = 50
	}
	if o.Remote == "" {
		o.Remote = "origin"
	}
	var want []string
	for _, s := range []string{r.Base, r.Head} {
		if s != "" && !hasCommit(ctx, o.Dir, s) {
			want = append(want, s)
		}
	}
	if len(want) > 0 {
		if err := fetch(ctx, o, want...); err != nil {
			return "", "", fmt.Errorf("fetching %s, which this clone lacks: %w; %s", strings.Join(want, ", "), err, ShallowFix)
		}
	}
	head = r.Head
	switch {
	case r.Base != "" && !r.MergeBase:
		return r.Base, head, nil
	case r.Base != "":
		mb, err := mergeBase(ctx, o, r.Base, head, func() error { return fetch(ctx, o, r.Base, r.Head) })
		if err != nil {
			return "", "", err
		}
		return mb, head, nil
	}
	// No base in the event: compare with the default branch.
	if r.DefaultBranch == "" {
		return "", "", fmt.Errorf("the %s event names no base commit and no default branch; give the base input (or --base)", r.Event)
	}
	tracking := "refs/remotes/" + o.Remote + "/" + r.DefaultBranch
	getDefault := func() error {
		return fetch(ctx, o, "+refs/heads/"+r.DefaultBranch+":"+tracking)
	}
	if !hasCommit(ctx, o.Dir, tracking) {
		if err := getDefault(); err != nil {
			return "", "", fmt.Errorf("fetching the default branch %s: %w; %s", r.DefaultBranch, err, ShallowFix)
		}
	}
	mb, err := mergeBase(ctx, o, tracking, head, func() error {
		if err := getDefault(); err != nil {
			return err
		}
		return fetch(ctx, o, head)
	})
	if err != nil {
		return "", "", err
	}
	if mb == head {
		// The run is on the default branch itself: check its last commit.
		if parent, err := gate.Git(ctx, o.Dir, "rev-parse", "--verify", "--quiet", head+"^"); err == nil && parent != "" {
			return parent, head, nil
		}
	}
	return mb, head, nil
}

func mergeBase(ctx context.Context, o FetchOptions, a, b string, deepen func() error) (string, error) {
	if mb, err := gate.Git(ctx, o.Dir, "merge-base", a, b); err == nil && mb != "" {
		return mb, nil
	}
	if shallow, _ := gate.Git(ctx, o.Dir, "rev-parse", "--is-shallow-repository"); shallow != "true" {
		return "", fmt.Errorf("%s and %s share no history", a, b)
	}
	if o.Logf != nil {
		o.Logf("the clone is shallow; fetching %d commits of history to find where %s branched", o.Depth, short(b))
	}
	if err := deepen(); err != nil {
		return "", fmt.Errorf("fetching history: %w; %s", err, ShallowFix)
	}
	if mb, err := gate.Git(ctx, o.Dir, "merge-base", a, b); err == nil && mb != "" {
		return mb, nil
	}
	return "", fmt.Errorf("the clone is too shallow to find where %s branched from %s, even after fetching %d commits: %s", short(b), short(a), o.Depth, ShallowFix)
}

func short(s string) string {
	if len(s) > 12 && shaRE.MatchString(s) {
		return s[:12]
	}
	return s
}

func hasCommit(ctx context.Context, dir, rev string) bool {
	_, err := gate.Git(ctx, dir, "cat-file", "-e", rev+"^{commit}")
	return err == nil
}

func fetch(ctx context.Context, o FetchOptions, refs ...string) error {
	for _, r := range refs {
		if strings.HasPrefix(r, "-") {
			return fmt.Errorf("refusing to fetch %q", r)
		}
	}
	if o.Logf != nil {
		o.Logf("git fetch --no-tags --depth=%d %s %s", o.Depth, o.Remote, strings.Join(refs, " "))
	}
	args := append([]string{"fetch", "--no-tags", "--quiet", "--depth=" + strconv.Itoa(o.Depth), o.Remote}, refs...)
	_, err := gate.Git(ctx, o.Dir, args...)
	return err
}

package github_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/actions/github"
	"github.com/sluice-ci/sluice/internal/testrepo"
)

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	zero = "0000000000000000000000000000000000000000"
)

func TestRangeFromEvent(t *testing.T) {
	tests := []struct {
		name, event, payload string
		want                 github.Range
		err                  error
		errText              string
	}{
		{"a pull request compares head with where it branched from base", "pull_request",
			`{"action":"opened","number":2,"pull_request":{"base":{"ref":"main","sha":"` + shaA + `"},"head":{"ref":"f","sha":"` + shaB + `"}},"repository":{"default_branch":"main"}}`,
			github.Range{Event: "pull_request", Base: shaA, Head: shaB, MergeBase: true, DefaultBranch: "main"}, nil, ""},
		{"a push compares before with after", "push",
			`{"ref":"refs/heads/main","before":"` + shaA + `","after":"` + shaB + `","repository":{"default_branch":"main"}}`,
			github.Range{Event: "push", Base: shaA, Head: shaB, DefaultBranch: "main"}, nil, ""},
		{"a push that creates a branch has no base", "push",
			`{"ref":"refs/heads/f","before":"` + zero + `","after":"` + shaB + `","created":true,"repository":{"default_branch":"main"}}`,
			github.Range{Event: "push", Head: shaB, DefaultBranch: "main"}, nil, ""},
		{"a push that deletes a branch has nothing to check", "push",
			`{"ref":"refs/heads/f","before":"` + shaA + `","after":"` + zero + `","deleted":true}`,
			github.Range{}, github.ErrNothingToCheck, ""},
		{"a merge group is its whole batch", "merge_group",
			`{"action":"checks_requested","merge_group":{"head_sha":"` + shaB + `","head_ref":"refs/heads/gh-readonly-queue/main/pr-1","base_sha":"` + shaA + `","base_ref":"refs/heads/main"},"repository":{"default_branch":"main"}}`,
			github.Range{Event: "merge_group", Base: shaA, Head: shaB, DefaultBranch: "main"}, nil, ""},
		{"a manual run compares GITHUB_SHA with the default branch", "workflow_dispatch",
			`{"inputs":{},"ref":"refs/heads/f","repository":{"default_branch":"trunk"}}`,
			github.Range{Event: "workflow_dispatch", Head: shaA, DefaultBranch: "trunk"}, nil, ""},
		{"an unknown event asks for explicit revisions", "issues", `{}`, github.Range{}, github.ErrUnsupportedEvent, ""},
		{"a SHA that is not one is refused", "push", `{"before":"--upload-pack=x","after":"` + shaB + `"}`,
			github.Range{}, nil, `base "--upload-pack=x" is not a commit SHA`},
		{"a default branch that could be an option is refused", "workflow_dispatch", `{"repository":{"default_branch":"-x"}}`,
			github.Range{}, nil, `default branch "-x"`},
		{"a payload that is not JSON is an error", "push", `{`, github.Range{}, nil, "reading the push event payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := github.RangeFromEvent(tt.event, []byte(tt.payload), shaA)
			switch {
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				return
			case tt.errText != "":
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err %v, want one saying %q", err, tt.errText)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// shallowClone makes an upstream repository with main and a feature branch
// and returns it with a depth-1 clone of the feature branch.
func shallowClone(t *testing.T, mainCommits int) (up *testrepo.Repo, clone *testrepo.Repo, forkPoint, mainTip, featureTip string) {
	up = testrepo.New(t)
	up.Write("a.txt", "a\n")
	forkPoint = up.Commit("root")
	up.Git("checkout", "-q", "-b", "feature")
	up.Write("b.txt", "b\n")
	up.Commit("feature 1")
	up.Write("c.txt", "c\n")
	featureTip = up.Commit("feature 2")
	up.Git("checkout", "-q", "main")
	for i := range mainCommits {
		up.Write("main.txt", strings.Repeat("m", i+1))
		mainTip = up.Commit("main")
	}
	clone = &testrepo.Repo{TB: t, Dir: t.TempDir()}
	clone.Git("clone", "-q", "--depth=1", "--branch=feature", "file://"+up.Dir, clone.Dir)
	return up, clone, forkPoint, mainTip, featureTip
}

func TestResolveFetchesWhatAShallowCloneLacks(t *testing.T) {
	_, clone, fork, mainTip, feature := shallowClone(t, 3)
	r := github.Range{Event: "pull_request", Base: mainTip, Head: feature, MergeBase: true}
	var log []string
	base, head, err := github.Resolve(context.Background(), r, github.FetchOptions{Dir: clone.Dir, Depth: 10, Logf: func(f string, a ...any) { log = append(log, f) }})
	if err != nil {
		t.Fatal(err)
	}
	if base != fork || head != feature {
		t.Errorf("range %s..%s, want the fork point %s..%s", base, head, fork, feature)
	}
	if len(log) == 0 {
		t.Error("nothing was fetched, yet the clone had depth 1")
	}
}

func TestResolveSaysHowToFixAHistoryTooShallow(t *testing.T) {
	_, clone, _, mainTip, feature := shallowClone(t, 5)
	r := github.Range{Event: "pull_request", Base: mainTip, Head: feature, MergeBase: true}
	_, _, err := github.Resolve(context.Background(), r, github.FetchOptions{Dir: clone.Dir, Depth: 1})
	if err == nil || !strings.Contains(err.Error(), "fetch-depth: 0") {
		t.Fatalf("err %v, want the fetch-depth: 0 fix", err)
	}
}

func TestResolveANewBranchFromTheDefaultBranch(t *testing.T) {
	_, clone, fork, _, feature := shallowClone(t, 2)
	r := github.Range{Event: "push", Head: feature, DefaultBranch: "main"}
	base, head, err := github.Resolve(context.Background(), r, github.FetchOptions{Dir: clone.Dir, Depth: 10})
	if err != nil {
		t.Fatal(err)
	}
	if base != fork || head != feature {
		t.Errorf("range %s..%s, want %s..%s", base, head, fork, feature)
	}
}

func TestResolveAPushKeepsItsBefore(t *testing.T) {
	up, clone, _, _, feature := shallowClone(t, 1)
	before := up.Git("rev-parse", "feature^")
	base, head, err := github.Resolve(context.Background(), github.Range{Event: "push", Base: before, Head: feature}, github.FetchOptions{Dir: clone.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if base != before || head != feature {
		t.Errorf("range %s..%s", base, head)
	}
}

// Package hook is sluice's local front end: installing a git pre-push hook
// and turning the lines git gives that hook into the ranges to check.
package hook

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/atomicfile"
)

// Marker is the line that identifies a hook sluice installed.
const Marker = "# sluice pre-push hook: installed by `sluice hook install`"

// ErrForeignHook is returned when a pre-push hook that sluice did not
// install is in the way.
var ErrForeignHook = errors.New("a pre-push hook sluice did not install is already there")

// Script is the hook's text: it runs exe (falling back to sluice on PATH
// when exe is gone) with `hook pre-push` and git's arguments.
func Script(exe string) string {
	return "#!/bin/sh\n" + Marker + "; reinstall with it, remove with `rm`.\n" +
		"# Skip once with: git push --no-verify\n" +
		"sluice=" + shellQuote(exe) + "\n" +
		"[ -x \"$sluice\" ] || sluice=sluice\n" +
		"exec \"$sluice\" hook pre-push \"$@\"\n"
}

// shellQuote quotes s for sh: single quotes, with each ' written as '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// InstallOptions say how to install.
type InstallOptions struct {
	// Exe is the sluice binary the hook runs (absolute path).
	Exe string
	// Force replaces a hook sluice did not install, keeping it as
	// pre-push.before-sluice.
	Force bool
}

// Installed says what Install did.
type Installed struct {
	Path string
	// Updated is true when sluice's own hook was already there.
	Updated bool
	// Backup is where a foreign hook was moved (with Force).
	Backup string
}

// HooksDir is the folder git runs hooks from for the repository around
// dir: core.hooksPath when set, else .git/hooks (worktrees included).
func HooksDir(ctx context.Context, dir string) (string, error) {
	p, err := gate.Git(ctx, dir, "rev-parse", "--path-format=absolute", "--git-path", "hooks")
	if err != nil {
		return "", fmt.Errorf("finding the hooks folder: %w", err)
	}
	return p, nil
}

// Install writes the pre-push hook into the repository around dir. It is
// idempotent for its own hook and never overwrites another without Force.
func Install(ctx context.Context, dir string, o InstallOptions) (Installed, error) {
	hooks, err := HooksDir(ctx, dir)
	if err != nil {
		return Installed{}, err
	}
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		return Installed{}, fmt.Errorf("making the hooks folder: %w", err)
	}
	in := Installed{Path: filepath.Join(hooks, "pre-push")}
	old, err := os.ReadFile(in.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return in, fmt.Errorf("reading the existing hook: %w", err)
	case strings.Contains(string(old), Marker):
		in.Updated = true
	case !o.Force:
		return in, fmt.Errorf("%w: %s (give --force to replace it; it is kept as pre-push.before-sluice)", ErrForeignHook, in.Path)
	default:
		in.Backup = in.Path + ".before-sluice"
		if err := os.Rename(in.Path, in.Backup); err != nil {
			return in, fmt.Errorf("keeping the existing hook: %w", err)
		}
	}
	if err := atomicfile.Write(in.Path, []byte(Script(o.Exe)), 0o755); err != nil {
		return in, fmt.Errorf("writing the hook: %w", err)
	}
	return in, nil
}

// Update is one line git gives a pre-push hook.
type Update struct {
	LocalRef, LocalSHA, RemoteRef, RemoteSHA string
}

// Range is what one pushed ref adds: Base..Head, with how Base was chosen.
type Range struct {
	Ref        string
	Base, Head string
	BaseSource string
}

var lineRE = regexp.MustCompile(`^(\S+) ([0-9a-f]{40}(?:[0-9a-f]{24})?) (\S+) ([0-9a-f]{40}(?:[0-9a-f]{24})?)$`)

// ParseUpdates reads git's pre-push input: one
// `<local ref> <local sha> <remote ref> <remote sha>` line per ref.
func ParseUpdates(r io.Reader) ([]Update, error) {
	var out []Update
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("reading git's pre-push input, line %d: want `<local ref> <local sha> <remote ref> <remote sha>`", n)
		}
		out = append(out, Update{m[1], m[2], m[3], m[4]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading git's pre-push input: %w", err)
	}
	return out, nil
}

func isZero(sha string) bool { return strings.Trim(sha, "0") == "" }

// Ranges turns updates into the ranges to check in the repository around
// dir, pushed to remote (the hook's first argument). A deleted ref is
// skipped; a new branch is checked from its merge base with the remote's
// default branch (refs/remotes/REMOTE/HEAD), else from the first commit no
// remote-tracking ref of the remote has; an existing branch from the
// remote's commit, when this clone has it.
func Ranges(ctx context.Context, dir, remote string, ups []Update) ([]Range, error) {
	var out []Range
	for _, u := range ups {
		if isZero(u.LocalSHA) {
			continue
		}
		r := Range{Ref: u.RemoteRef, Head: u.LocalSHA}
		if !isZero(u.RemoteSHA) {
			if _, err := gate.Git(ctx, dir, "cat-file", "-e", u.RemoteSHA+"^{commit}"); err == nil {
				if mb, err := gate.Git(ctx, dir, "merge-base", u.RemoteSHA, u.LocalSHA); err == nil && mb != "" {
					r.Base, r.BaseSource = mb, "remote "+u.RemoteRef
				}
			}
		}
		if r.Base == "" && remote != "" && !strings.HasPrefix(remote, "-") {
			if def, err := gate.Git(ctx, dir, "rev-parse", "--verify", "--quiet", "refs/remotes/"+remote+"/HEAD"); err == nil && def != "" {
				if mb, err := gate.Git(ctx, dir, "merge-base", def, u.LocalSHA); err == nil && mb != "" {
					r.Base, r.BaseSource = mb, remote+"/HEAD"
				}
			}
		}
		if r.Base == "" {
			base, err := firstNew(ctx, dir, remote, u.LocalSHA)
			if err != nil {
				return nil, err
			}
			if base == "" {
				continue // nothing the remote lacks
			}
			r.Base, r.BaseSource = base, "remote-tracking refs"
		}
		if r.Base == r.Head {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// firstNew returns the parent of the oldest commit of head that no
// remote-tracking ref of remote reaches (the empty tree for a root commit),
// or "" when the remote has them all.
func firstNew(ctx context.Context, dir, remote, head string) (string, error) {
	args := []string{"rev-list", "--topo-order", "--reverse", head, "--not"}
	if remote != "" && !strings.HasPrefix(remote, "-") {
		args = append(args, "--remotes="+remote)
	} else {
		args = append(args, "--remotes")
	}
	out, err := gate.Git(ctx, dir, args...)
	if err != nil {
		return "", fmt.Errorf("listing the commits the push adds: %w", err)
	}
	if out == "" {
		return "", nil
	}
	oldest, _, _ := strings.Cut(out, "\n")
	if p, err := gate.Git(ctx, dir, "rev-parse", "--verify", "--quiet", oldest+"^"); err == nil && p != "" {
		return p, nil
	}
	return gate.Git(ctx, dir, "hash-object", "-t", "tree", "/dev/null")
}

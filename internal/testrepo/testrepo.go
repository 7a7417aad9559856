// Package testrepo is test support: file trees and git repositories made in
// a test's temporary directory, with git isolated from the user's and the
// system's configuration.
package testrepo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// WriteFiles writes files (slash paths relative to dir) under dir, making
// folders as needed.
func WriteFiles(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// Tree writes files into a new temporary directory and returns it.
func Tree(tb testing.TB, files map[string]string) string {
	tb.Helper()
	dir := tb.TempDir()
	WriteFiles(tb, dir, files)
	return dir
}

// Repo is a git repository in a temporary directory.
type Repo struct {
	TB  testing.TB
	Dir string
}

// New makes an empty repository whose first branch is main.
func New(tb testing.TB) *Repo {
	tb.Helper()
	r := &Repo{TB: tb, Dir: tb.TempDir()}
	r.Git("init", "-q", "-b", "main")
	return r
}

// Git runs git in the repository and returns its trimmed output; a failure
// fails the test.
func (r *Repo) Git(args ...string) string {
	r.TB.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.test", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.TB.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Write writes one file of the work tree.
func (r *Repo) Write(name, content string) {
	r.TB.Helper()
	WriteFiles(r.TB, r.Dir, map[string]string{name: content})
}

// Commit stages everything and commits it; it returns the new commit's id.
func (r *Repo) Commit(msg string) string {
	r.TB.Helper()
	r.Git("add", "-A")
	r.Git("commit", "-q", "--allow-empty", "-m", msg)
	return r.Git("rev-parse", "HEAD")
}

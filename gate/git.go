package gate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/sourcegraph/conc"
)

// ErrUsage marks errors in how sluice was called (a bad ref, a missing
// path); the CLI maps it to exit code 2.
var ErrUsage = errors.New("usage")

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// git runs a git command in dir with the user's diff and pager settings
// neutralised, and returns its standard output.
func git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-c", "core.quotePath=true", "--no-pager"}, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return out, fmt.Errorf("git %s: %s", args[0], msg)
	}
	return out, nil
}

// Git runs git with args in dir, never through a shell, and returns its
// standard output trimmed; an error carries git's own message.
func Git(ctx context.Context, dir string, args ...string) (string, error) {
	return gitLine(ctx, dir, args...)
}

func gitLine(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := git(ctx, dir, args...)
	return strings.TrimSpace(string(out)), err
}

// RepoRoot returns the top level of the git work tree containing dir.
func RepoRoot(ctx context.Context, dir string) (string, error) {
	return gitLine(ctx, dir, "rev-parse", "--show-toplevel")
}

// RangeOptions selects a git range.
type RangeOptions struct {
	// Dir is any directory inside the repository.
	Dir string
	// Base and Head are revisions; Head defaults to HEAD, Base to the merge
	// base with the upstream branch, else with origin/HEAD, else HEAD^,
	// else the empty tree (a first commit).
	Base, Head string
}

// ChangeFromRange builds a range-mode change: the files head adds or
// modifies relative to base, the lines it adds, and their blobs at head.
func ChangeFromRange(ctx context.Context, o RangeOptions) (*Change, error) {
	root, err := RepoRoot(ctx, o.Dir)
	if err != nil {
		return nil, usagef("not inside a git repository (%v); give --paths to check files instead", err)
	}
	ch := &Change{Mode: RangeMode, Root: root}
	headRef := o.Head
	if headRef == "" {
		headRef = "HEAD"
	}
	if ch.Head, err = resolveCommit(ctx, root, headRef, "--head"); err != nil {
		return nil, err
	}
	if o.Base != "" {
		if ch.Base, err = resolveCommit(ctx, root, o.Base, "--base"); err != nil {
			if empty, _ := gitLine(ctx, root, "hash-object", "-t", "tree", "--stdin"); o.Base != empty {
				return nil, err
			}
			// The empty tree: a range from before the first commit.
			ch.Base, err = o.Base, nil
		}
		ch.BaseSource = "--base"
	} else if ch.Base, ch.BaseSource, err = defaultBase(ctx, root, ch.Head); err != nil {
		return nil, err
	}
	if err := ch.diffFiles(ctx); err != nil {
		return nil, err
	}
	if err := ch.addedLines(ctx); err != nil {
		return nil, err
	}
	if err := ch.blobSizes(ctx); err != nil {
		return nil, err
	}
	ch.blobs = catFile{dir: root}
	return ch, nil
}

func resolveCommit(ctx context.Context, root, ref, flag string) (string, error) {
	if strings.HasPrefix(ref, "-") {
		return "", usagef("%s %q: a revision cannot start with '-'", flag, ref)
	}
	sha, err := gitLine(ctx, root, "rev-parse", "--verify", "--quiet", "--end-of-options", ref+"^{commit}")
	if err == nil && sha != "" {
		return sha, nil
	}
	if shallow, _ := gitLine(ctx, root, "rev-parse", "--is-shallow-repository"); shallow == "true" {
		return "", usagef("%s %q is not a commit in this shallow clone; fetch more history first, e.g. `git fetch --deepen=50 origin` (or `fetch-depth: 0` for actions/checkout)", flag, ref)
	}
	return "", usagef("%s %q is not a commit in %s", flag, ref, root)
}

func defaultBase(ctx context.Context, root, head string) (sha, source string, err error) {
	for _, c := range []struct{ ref, source string }{{"@{upstream}", "upstream"}, {"refs/remotes/origin/HEAD", "origin/HEAD"}} {
		if _, err := gitLine(ctx, root, "rev-parse", "--verify", "--quiet", c.ref); err != nil {
			continue
		}
		if mb, err := gitLine(ctx, root, "merge-base", head, c.ref); err == nil && mb != "" {
			return mb, c.source, nil
		}
	}
	if parent, err := gitLine(ctx, root, "rev-parse", "--verify", "--quiet", head+"^"); err == nil && parent != "" {
		return parent, "HEAD^", nil
	}
	empty, err := gitLine(ctx, root, "hash-object", "-t", "tree", "--stdin")
	if err != nil {
		return "", "", err
	}
	return empty, "first commit", nil
}

// diffFiles lists what base..head adds or modifies: `git diff --raw -z`.
func (ch *Change) diffFiles(ctx context.Context) error {
	out, err := git(ctx, ch.Root, "diff", "--raw", "-z", "--no-renames", "--no-abbrev", "--no-ext-diff", "--no-textconv", ch.Base, ch.Head, "--")
	if err != nil {
		return err
	}
	fields := bytes.Split(out, []byte{0})
	for i := 0; i+1 < len(fields); i += 2 {
		meta, path := string(fields[i]), filepath.ToSlash(string(fields[i+1]))
		// :oldmode newmode oldsha newsha status
		parts := strings.Fields(strings.TrimPrefix(meta, ":"))
		if len(parts) != 5 {
			return fmt.Errorf("parsing git diff --raw: unexpected entry %q", meta)
		}
		mode, sha, status := parts[1], parts[3], parts[4][:1]
		switch {
		case status == "D":
			ch.Deleted = append(ch.Deleted, path)
			continue
		case mode == "120000":
			ch.Skipped = append(ch.Skipped, Skipped{File: path, Reason: "symlink"})
			continue
		case mode == "160000":
			ch.Skipped = append(ch.Skipped, Skipped{File: path, Reason: "submodule"})
			continue
		}
		if status != "A" {
			status = "M"
		}
		ch.Files = append(ch.Files, &File{Path: path, Blob: sha, Status: status, Size: -1, Added: []LineRange{}})
	}
	slices.SortFunc(ch.Files, func(a, b *File) int { return strings.Compare(a.Path, b.Path) })
	return nil
}

// addedLines reads `git diff -U0` and records the added line ranges.
func (ch *Change) addedLines(ctx context.Context) error {
	if len(ch.Files) == 0 {
		return nil
	}
	cmd := exec.CommandContext(ctx, "git", "-c", "core.quotePath=true", "--no-pager", "diff", "-U0", "--no-color",
		"--no-renames", "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/", ch.Base, ch.Head, "--")
	cmd.Dir = ch.Root
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git diff: %w", err)
	}
	perr := parseAddedLines(stdout, ch.fileIndex())
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git diff: %s", strings.TrimSpace(stderr.String()))
	}
	return perr
}

func (ch *Change) fileIndex() map[string]*File {
	m := make(map[string]*File, len(ch.Files))
	for _, f := range ch.Files {
		m[f.Path] = f
	}
	return m
}

// parseAddedLines parses unified diff output with zero context.
func parseAddedLines(r io.Reader, files map[string]*File) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<30)
	var cur *File
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("diff --git ")):
			cur = nil
		case bytes.HasPrefix(line, []byte("+++ ")) && cur == nil:
			name := string(line[4:])
			if strings.HasPrefix(name, `"`) {
				if uq, err := strconv.Unquote(name); err == nil {
					name = uq
				}
			}
			if p, ok := strings.CutPrefix(name, "b/"); ok {
				cur = files[p]
			}
		case bytes.HasPrefix(line, []byte("@@ ")) && cur != nil:
			start, count, err := parseHunkNew(line)
			if err != nil {
				return fmt.Errorf("parsing git diff hunk %q: %w", line, err)
			}
			if count > 0 {
				cur.Added = append(cur.Added, LineRange{Start: start, End: start + count - 1})
			}
		}
	}
	return sc.Err()
}

// parseHunkNew reads "+start,count" from "@@ -a,b +c,d @@ ...".
func parseHunkNew(line []byte) (start, count int, err error) {
	s := string(line)
	i := strings.Index(s, " +")
	if i < 0 {
		return 0, 0, errors.New("no new range")
	}
	s = s[i+2:]
	if j := strings.IndexByte(s, ' '); j >= 0 {
		s = s[:j]
	}
	a, b, hasCount := strings.Cut(s, ",")
	if start, err = strconv.Atoi(a); err != nil {
		return 0, 0, err
	}
	count = 1
	if hasCount {
		if count, err = strconv.Atoi(b); err != nil {
			return 0, 0, err
		}
	}
	return start, count, nil
}

// blobSizes fills File.Size with one `git cat-file --batch-check`.
func (ch *Change) blobSizes(ctx context.Context) error {
	if len(ch.Files) == 0 {
		return nil
	}
	var in bytes.Buffer
	for _, f := range ch.Files {
		in.WriteString(f.Blob)
		in.WriteByte('\n')
	}
	cmd := exec.CommandContext(ctx, "git", "cat-file", "--batch-check=%(objectname) %(objectsize)")
	cmd.Dir, cmd.Stdin = ch.Root, &in
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("git cat-file --batch-check: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(ch.Files) {
		return fmt.Errorf("git cat-file --batch-check: %d answers for %d blobs", len(lines), len(ch.Files))
	}
	for i, l := range lines {
		if _, size, ok := strings.Cut(l, " "); ok {
			ch.Files[i].Size, _ = strconv.ParseInt(size, 10, 64)
		}
	}
	return nil
}

// catFile streams blobs from one `git cat-file --batch` process.
type catFile struct{ dir string }

func (c catFile) ReadBlobs(ctx context.Context, files []*File, fn func(f *File, content []byte) error) error {
	if len(files) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "cat-file", "--batch")
	cmd.Dir = c.dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git cat-file: %w", err)
	}
	var wg conc.WaitGroup
	wg.Go(func() {
		w := bufio.NewWriter(stdin)
		for _, f := range files {
			if _, err := fmt.Fprintln(w, f.Blob); err != nil {
				break
			}
		}
		_ = w.Flush()
		_ = stdin.Close()
	})
	rerr := readBatch(bufio.NewReaderSize(stdout, 1<<16), files, fn)
	if rerr != nil {
		cancel()
	}
	_, _ = io.Copy(io.Discard, stdout)
	wg.Wait()
	werr := cmd.Wait()
	if rerr != nil {
		return rerr
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if werr != nil {
		return fmt.Errorf("git cat-file: %w", werr)
	}
	return nil
}

func readBatch(r *bufio.Reader, files []*File, fn func(*File, []byte) error) error {
	for _, f := range files {
		header, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("reading blob %s: %w", f.Blob, err)
		}
		parts := strings.Fields(header)
		if len(parts) != 3 {
			return fmt.Errorf("reading blob %s: %s", f.Blob, strings.TrimSpace(header))
		}
		size, err := strconv.Atoi(parts[2])
		if err != nil {
			return fmt.Errorf("reading blob %s: bad size %q", f.Blob, parts[2])
		}
		buf := make([]byte, size+1)
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("reading blob %s: %w", f.Blob, err)
		}
		if err := fn(f, buf[:size]); err != nil {
			return err
		}
	}
	return nil
}

// ChangeFromPaths builds a paths-mode change: every regular file under the
// given files or folders, relative to root where they lie inside it.
// Symlinks are not followed and are reported as skipped; .git folders are
// not entered.
func ChangeFromPaths(root string, paths []string) (*Change, error) {
	ch := &Change{Mode: PathsMode, Root: root, Paths: paths}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			return nil, usagef("--paths %q: %v", p, unwrapPathError(err))
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			// A symlink named explicitly is followed once.
			if info, err = os.Stat(p); err != nil {
				return nil, usagef("--paths %q: %v", p, unwrapPathError(err))
			}
		}
		if !info.IsDir() {
			ch.addPath(absRoot, p, info, seen)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				ch.Skipped = append(ch.Skipped, Skipped{File: relTo(absRoot, path), Reason: "unreadable: " + unwrapPathError(err).Error()})
				if d != nil && d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				if d.Name() == ".git" && path != p {
					return fs.SkipDir
				}
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				ch.Skipped = append(ch.Skipped, Skipped{File: relTo(absRoot, path), Reason: "symlink"})
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				ch.Skipped = append(ch.Skipped, Skipped{File: relTo(absRoot, path), Reason: "unreadable: " + unwrapPathError(err).Error()})
				return nil
			}
			ch.addPath(absRoot, path, info, seen)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(ch.Files, func(a, b *File) int { return strings.Compare(a.Path, b.Path) })
	return ch, nil
}

func (ch *Change) addPath(absRoot, path string, info fs.FileInfo, seen map[string]bool) {
	abs, err := filepath.Abs(path)
	if err != nil || seen[abs] {
		return
	}
	seen[abs] = true
	ch.Files = append(ch.Files, &File{Path: relTo(absRoot, abs), Abs: abs, Size: info.Size()})
}

// relTo returns path relative to root, slash-separated, or the cleaned
// path as given when it lies outside root.
func relTo(absRoot, path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.ToSlash(path)
	}
	rel, err := filepath.Rel(absRoot, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return filepath.ToSlash(abs)
	}
	return filepath.ToSlash(rel)
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

package gate

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Mode is how a change was given.
type Mode string

const (
	// RangeMode: a git range base..head; files are read at head.
	RangeMode Mode = "range"
	// PathsMode: explicit files or folders, scanned whole from disk.
	PathsMode Mode = "paths"
)

// Change is what a check runs over.
type Change struct {
	Mode Mode
	// Root is the directory file paths are relative to (the repository's
	// top level in range mode).
	Root string
	// Base and Head are commit SHAs in range mode. Base is the empty tree
	// when the range starts at the first commit.
	Base, Head string
	// BaseSource says how Base was chosen when not given ("--base",
	// "upstream", "origin/HEAD", "HEAD^", "first commit").
	BaseSource string
	// Paths are the explicit paths given in paths mode.
	Paths []string
	// Files are the files the change adds or modifies (deleted files are
	// not listed), sorted by path.
	Files []*File
	// Deleted are the paths the change deletes, in range mode.
	Deleted []string
	// Images are container image references the change releases.
	Images []string
	// Skipped lists what the change touches but no control can read
	// (symlinks, submodules), with the reason.
	Skipped []Skipped

	blobs BlobSource
}

// File is one file of a change.
type File struct {
	// Path is slash-separated and relative to Change.Root (or as given
	// when outside it).
	Path string
	// Abs is where to read it on disk in paths mode.
	Abs string
	// Blob is its object id at head in range mode.
	Blob string
	// Size in bytes, when known (-1 otherwise).
	Size int64
	// Status is "A" (added) or "M" (modified) in range mode, "" in paths
	// mode.
	Status string
	// Added are the line ranges the change adds, in range mode; nil in
	// paths mode, where every line counts as added.
	Added []LineRange
}

// LineRange is an inclusive range of 1-based line numbers.
type LineRange struct{ Start, End int }

// IsAdded reports whether the change adds the given 1-based line. In paths
// mode every line counts as added.
func (f *File) IsAdded(line int) bool {
	if f.Added == nil {
		return true
	}
	i := sort.Search(len(f.Added), func(i int) bool { return f.Added[i].End >= line })
	return i < len(f.Added) && f.Added[i].Start <= line
}

// BlobSource reads file contents of a range-mode change.
type BlobSource interface {
	// ReadBlobs calls fn with each file's content in order; it stops at the
	// first error fn returns or when ctx is done.
	ReadBlobs(ctx context.Context, files []*File, fn func(f *File, content []byte) error) error
}

// ReadFiles calls fn with each file's content in order: the blob at head in
// range mode, the file on disk in paths mode. It stops at the first error fn
// returns, or when ctx is done.
func (c *Change) ReadFiles(ctx context.Context, files []*File, fn func(f *File, content []byte) error) error {
	if c.blobs != nil {
		return c.blobs.ReadBlobs(ctx, files, fn)
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := os.ReadFile(f.Abs)
		if err != nil {
			return fmt.Errorf("reading %s: %w", f.Path, unwrapPathError(err))
		}
		if err := fn(f, data); err != nil {
			return err
		}
	}
	return nil
}

// HasBlobs reports whether contents come from git objects rather than disk.
func (c *Change) HasBlobs() bool { return c.blobs != nil }

// Subject names the change for deferred work: the commit in range mode,
// the paths otherwise.
func (c *Change) Subject() string {
	if c.Mode == RangeMode {
		return "commit:" + c.Head
	}
	return "paths:" + strings.Join(c.Paths, ",")
}

// Skipped is an input that was not checked, with the reason.
type Skipped struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

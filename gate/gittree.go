package gate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxTreeFile bounds a file read from a commit's tree: a policy, a
// baseline, a key or one check of a bundle is far smaller.
const maxTreeFile = 16 << 20

// GitTree returns the tree of a commit in the repository at dir as an
// fs.FS. Files are read from git's objects, never from the work tree;
// symbolic links and submodules are refused, not followed. Every git call
// runs under ctx.
func GitTree(ctx context.Context, dir, commit string) fs.FS {
	return &gitTree{ctx: ctx, dir: dir, commit: commit}
}

type gitTree struct {
	ctx         context.Context
	dir, commit string
}

// treeEntry is one line of `git ls-tree -z`.
type treeEntry struct {
	mode, typ, oid, name string
	size                 int64
}

func (t *gitTree) lsTree(treeish string, pathspec ...string) ([]treeEntry, error) {
	args := []string{"--literal-pathspecs", "ls-tree", "-z", "--long", "--full-tree", treeish}
	if len(pathspec) > 0 {
		args = append(append(args, "--"), pathspec...)
	}
	out, err := git(t.ctx, t.dir, args...)
	if err != nil {
		return nil, err
	}
	var entries []treeEntry
	for rec := range bytes.SplitSeq(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, name, ok := bytes.Cut(rec, []byte{'\t'})
		f := strings.Fields(string(meta))
		if !ok || len(f) != 4 {
			return nil, fmt.Errorf("parsing git ls-tree: unexpected entry %q", meta)
		}
		size, _ := strconv.ParseInt(f[3], 10, 64)
		entries = append(entries, treeEntry{mode: f[0], typ: f[1], oid: f[2], name: string(name), size: size})
	}
	return entries, nil
}

func (t *gitTree) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return t.openDir(name, t.commit+"^{tree}")
	}
	entries, err := t.lsTree(t.commit, name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	i := slices.IndexFunc(entries, func(e treeEntry) bool { return e.name == name })
	if i < 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	e := entries[i]
	switch {
	case e.mode == "120000":
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("is a symbolic link: not followed")}
	case e.typ == "commit":
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("is a submodule")}
	case e.typ == "tree":
		return t.openDir(name, e.oid)
	case e.size > maxTreeFile:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("is %d bytes, over the %d a policy file may have", e.size, maxTreeFile)}
	}
	data, err := git(t.ctx, t.dir, "cat-file", "blob", e.oid)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &treeFile{info: entryInfo{e: e, base: path.Base(name)}, r: bytes.NewReader(data)}, nil
}

func (t *gitTree) openDir(name, treeish string) (fs.File, error) {
	entries, err := t.lsTree(treeish)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	d := &treeDir{info: entryInfo{e: treeEntry{mode: "040000", typ: "tree"}, base: path.Base(name)}}
	for _, e := range entries {
		d.entries = append(d.entries, fs.FileInfoToDirEntry(entryInfo{e: e, base: e.name}))
	}
	return d, nil
}

// entryInfo is a tree entry as fs.FileInfo.
type entryInfo struct {
	e    treeEntry
	base string
}

func (i entryInfo) Name() string { return i.base }
func (i entryInfo) Size() int64  { return i.e.size }
func (i entryInfo) Mode() fs.FileMode {
	switch {
	case i.e.typ == "tree":
		return fs.ModeDir | 0o555
	case i.e.mode == "120000":
		return fs.ModeSymlink | 0o444
	case i.e.typ == "commit":
		return fs.ModeIrregular
	case i.e.mode == "100755":
		return 0o555
	}
	return 0o444
}
func (i entryInfo) ModTime() time.Time { return time.Time{} }
func (i entryInfo) IsDir() bool        { return i.e.typ == "tree" }
func (i entryInfo) Sys() any           { return nil }

type treeFile struct {
	info entryInfo
	r    *bytes.Reader
}

func (f *treeFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *treeFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *treeFile) Close() error               { return nil }

type treeDir struct {
	info    entryInfo
	entries []fs.DirEntry
	off     int
}

func (d *treeDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *treeDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.base, Err: errors.New("is a directory")}
}
func (d *treeDir) Close() error { return nil }

func (d *treeDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	rest = rest[:min(n, len(rest))]
	d.off += len(rest)
	return rest, nil
}

package gate

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// onDisk is where a change path lies on disk in paths mode: as given when
// absolute (outside Root), else below Root.
func (c *Change) onDisk(p string) string {
	p = filepath.FromSlash(p)
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Root, p)
}

// ListDir lists the files beside a change's files: those in dir (a change
// path, slash-separated) and, when recursive, below it; in the head commit
// in range mode, on disk in paths mode. Symlinks, submodules and .git
// folders are left out. ReadFiles reads what it returns.
func (c *Change) ListDir(ctx context.Context, dir string, recursive bool) ([]*File, error) {
	if c.blobs == nil {
		return c.listDisk(dir, recursive)
	}
	args := []string{"ls-tree", "--full-tree", "-z"}
	if recursive {
		args = append(args, "-r")
	}
	prefix := dir + "/"
	if dir == "." || dir == "" {
		prefix = ""
	}
	args = append(args, c.Head, "--", prefix)
	data, err := git(ctx, c.Root, args...)
	if err != nil {
		return nil, err
	}
	var out []*File
	for _, rec := range bytes.Split(data, []byte{0}) {
		meta, name, ok := bytes.Cut(rec, []byte{'\t'})
		if !ok {
			continue
		}
		// <mode> SP <type> SP <object>
		fields := strings.Fields(string(meta))
		if len(fields) != 3 || fields[1] != "blob" || fields[0] == "120000" {
			continue
		}
		out = append(out, &File{Path: string(name), Blob: fields[2], Size: -1})
	}
	return out, nil
}

func (c *Change) listDisk(dir string, recursive bool) ([]*File, error) {
	root := c.onDisk(dir)
	var out []*File
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if p != root && (!recursive || d.Name() == ".git") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		out = append(out, &File{Path: path.Join(dir, filepath.ToSlash(rel)), Abs: p, Size: info.Size()})
		return nil
	})
	return out, err
}

// Existing reports which of the given change paths are files: in the head
// commit in range mode, on disk in paths mode.
func (c *Change) Existing(ctx context.Context, paths []string) (map[string]bool, error) {
	has := map[string]bool{}
	if len(paths) == 0 {
		return has, nil
	}
	if c.blobs == nil {
		for _, p := range paths {
			if info, err := os.Stat(c.onDisk(p)); err == nil && !info.IsDir() {
				has[p] = true
			}
		}
		return has, nil
	}
	args := append([]string{"ls-tree", "--name-only", "--full-tree", "-z", c.Head, "--"}, paths...)
	out, err := git(ctx, c.Root, args...)
	if err != nil {
		return nil, err
	}
	for _, p := range bytes.Split(out, []byte{0}) {
		if len(p) > 0 {
			has[string(p)] = true
		}
	}
	return has, nil
}

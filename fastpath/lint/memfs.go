package lint

import (
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"
	"testing/fstest"
)

var memFSSeq atomic.Uint64

// memFS is an in-memory file system of the files handed to Trivy. It names
// itself briefly: Trivy keys results by fmt.Sprintf("%#v") of the file
// system, which for a bare map would print every file's content once per
// result.
type memFS struct {
	m  fstest.MapFS
	id uint64
}

func newMemFS(m fstest.MapFS) *memFS { return &memFS{m: m, id: memFSSeq.Add(1)} }

func (f *memFS) String() string                             { return fmt.Sprintf("memfs#%d", f.id) }
func (f *memFS) GoString() string                           { return f.String() }
func (f *memFS) Open(name string) (fs.File, error)          { return f.m.Open(name) }
func (f *memFS) ReadFile(name string) ([]byte, error)       { return f.m.ReadFile(name) }
func (f *memFS) ReadDir(name string) ([]fs.DirEntry, error) { return f.m.ReadDir(name) }
func (f *memFS) Stat(name string) (fs.FileInfo, error)      { return f.m.Stat(name) }
func (f *memFS) Glob(pattern string) ([]string, error)      { return f.m.Glob(pattern) }

// Sub returns the files under dir as a memFS of their own.
func (f *memFS) Sub(dir string) (fs.FS, error) {
	if !fs.ValidPath(dir) {
		return nil, &fs.PathError{Op: "sub", Path: dir, Err: fs.ErrInvalid}
	}
	if dir == "." {
		return f, nil
	}
	sub := fstest.MapFS{}
	prefix := dir + "/"
	for name, file := range f.m {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			sub[rest] = file
		}
	}
	return newMemFS(sub), nil
}

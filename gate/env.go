package gate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Env is what a control's constructor may use besides its options.
//
// Files a policy names (a baseline, a checks bundle, keys, a trusted root)
// are read through ReadFile and FS, never with os.ReadFile: where the policy
// comes from a repository, they come from the same trusted tree (the base
// commit in range mode, the repository's files confined to it in paths
// mode) and may not leave it.
type Env struct {
	// Root is the directory scanned paths are relative to (the repository
	// root in range mode).
	Root string
	// PolicyDir is the directory of the policy file on disk; relative
	// paths in options are resolved against it when Files is nil.
	PolicyDir string
	// Now is the clock (for expiries); nil means time.Now.
	Now func() time.Time
	// Files, when set, is the trusted tree a repository policy's paths are
	// read from, rooted at the repository's top. Nil means the operating
	// system, unconfined: a policy the operator named outside any
	// repository.
	Files fs.FS
	// FilesDir is the policy's folder inside Files, slash-separated ("."
	// at the top).
	FilesDir string
	// Origin says in words where Files is read from, for messages.
	Origin string
	// Inputs records every path read through Files, found or not, so that
	// a change editing one can be reported. May be nil.
	Inputs *Inputs
}

// Resolve returns p relative to the policy's directory unless absolute.
// It names a path on disk and does not confine it: controls read the files
// a policy names with ReadFile and FS.
func (e Env) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(e.PolicyDir, p)
}

// errOutside is the reason a repository policy's path is refused.
var errOutside = errors.New("must name a file inside the repository (a relative path that stays inside it after symbolic links)")

// name confines p to Files: the slash-separated name inside it.
func (e Env) name(field, p string) (string, error) {
	if p == "" {
		return "", &FieldError{Field: field, Err: errors.New("empty path")}
	}
	if filepath.IsAbs(p) || path.IsAbs(filepath.ToSlash(p)) || filepath.VolumeName(p) != "" {
		return "", &FieldError{Field: field, Err: errOutside}
	}
	n := path.Clean(path.Join(e.filesDir(), filepath.ToSlash(p)))
	if !fs.ValidPath(n) {
		return "", &FieldError{Field: field, Err: errOutside}
	}
	return n, nil
}

func (e Env) filesDir() string {
	if e.FilesDir == "" {
		return "."
	}
	return e.FilesDir
}

// Display names p for messages: the repository path, or the path on disk.
func (e Env) Display(p string) string {
	if e.Files == nil {
		return e.Resolve(p)
	}
	if n, err := e.name("", p); err == nil {
		if e.Origin != "" {
			return n + " (" + e.Origin + ")"
		}
		return n
	}
	return p
}

// ReadFile reads a file the policy names in its option field. Errors are
// *FieldError naming the field and the path, never quoting the file's
// content; a missing file satisfies errors.Is(err, fs.ErrNotExist).
func (e Env) ReadFile(field, p string) ([]byte, error) {
	if e.Files == nil {
		data, err := os.ReadFile(e.Resolve(p))
		if err != nil {
			return nil, &FieldError{Field: field, Err: fmt.Errorf("reading %s: %w", e.Resolve(p), unwrapPathError(err))}
		}
		return data, nil
	}
	n, err := e.name(field, p)
	if err != nil {
		return nil, err
	}
	e.Inputs.add(n)
	data, err := fs.ReadFile(e.Files, n)
	if err != nil {
		return nil, &FieldError{Field: field, Err: fmt.Errorf("reading %s: %w", e.Display(p), unwrapPathError(err))}
	}
	return data, nil
}

// FS returns a folder the policy names in its option field.
func (e Env) FS(field, p string) (fs.FS, error) {
	if e.Files == nil {
		dir := e.Resolve(p)
		st, err := os.Stat(dir)
		if err != nil {
			return nil, &FieldError{Field: field, Err: fmt.Errorf("reading %s: %w", dir, unwrapPathError(err))}
		}
		if !st.IsDir() {
			return nil, &FieldError{Field: field, Err: fmt.Errorf("%s is not a folder", dir)}
		}
		return os.DirFS(dir), nil
	}
	n, err := e.name(field, p)
	if err != nil {
		return nil, err
	}
	e.Inputs.add(n)
	st, err := fs.Stat(e.Files, n)
	if err != nil {
		return nil, &FieldError{Field: field, Err: fmt.Errorf("reading %s: %w", e.Display(p), unwrapPathError(err))}
	}
	if !st.IsDir() {
		return nil, &FieldError{Field: field, Err: fmt.Errorf("%s is not a folder", e.Display(p))}
	}
	return fs.Sub(e.Files, n)
}

// Inputs is the set of repository paths a policy and its controls read.
// The zero value is ready; a nil *Inputs records nothing.
type Inputs struct {
	mu    sync.Mutex
	paths []string
}

func (in *Inputs) add(name string) {
	if in == nil {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if !slices.Contains(in.paths, name) {
		in.paths = append(in.paths, name)
	}
}

// Paths lists the recorded paths, sorted.
func (in *Inputs) Paths() []string {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Sorted(slices.Values(in.paths))
}

// Covers reports whether the repository path p is a recorded input or lies
// inside a recorded folder.
func (in *Inputs) Covers(p string) (string, bool) {
	for _, n := range in.Paths() {
		if p == n || n == "." || strings.HasPrefix(p, n+"/") {
			return n, true
		}
	}
	return "", false
}

package secrets

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"sync"

	"github.com/sourcegraph/conc/pool"
)

// binaryProbe is how much of a file is searched for a NUL byte.
const binaryProbe = 8 << 10

// errText describes an I/O error; it never carries file content.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

// ScanTargets reads and scans targets concurrently, with at most workers
// goroutines (GOMAXPROCS when workers ≤ 0). Binary files (a NUL byte in the
// first 8 KiB), files over the size limit and unreadable files are reported
// in Report.Skipped. When ctx is cancelled it stops promptly, between files
// and every 1 MiB within one, and returns what it has with ctx.Err().
func (s *Scanner) ScanTargets(ctx context.Context, targets []Target, workers int) (Report, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	type result struct {
		findings []Finding
		skipped  string
		bytes    int64
		scanned  bool
	}
	results := make([]result, len(targets))
	bufs := sync.Pool{New: func() any { return new(bytes.Buffer) }}
	p := pool.New().WithContext(ctx).WithMaxGoroutines(workers)
	for i := range targets {
		if ctx.Err() != nil {
			break
		}
		p.Go(func(ctx context.Context) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			t := &targets[i]
			res := &results[i]
			content := t.Content
			if content == nil {
				buf := bufs.Get().(*bytes.Buffer)
				defer bufs.Put(buf)
				var reason string
				content, reason = s.read(t.Abs, buf)
				if reason != "" {
					res.skipped = reason
					return nil
				}
			}
			if int64(len(content)) > s.maxSize {
				res.skipped = TooLarge(int64(len(content)), s.maxSize)
				return nil
			}
			if isBinary(content) {
				res.skipped = "binary"
				return nil
			}
			f, err := s.scan(ctx, t.Path, content)
			if err != nil {
				return err
			}
			res.findings, res.bytes, res.scanned = f, int64(len(content)), true
			return nil
		})
	}
	err := p.Wait()
	var rep Report
	for i, r := range results {
		switch {
		case r.skipped != "":
			rep.Skipped = append(rep.Skipped, Skipped{File: targets[i].Path, Reason: r.skipped})
			// Rules on the path alone (e.g. pkcs12-file) need no content.
			if !s.globallyAllowed(targets[i].Path) {
				rep.Findings = append(rep.Findings, s.pathFindings(targets[i].Path)...)
			}
		case r.scanned:
			rep.Files++
			rep.Bytes += r.bytes
			rep.Findings = append(rep.Findings, r.findings...)
		}
	}
	SortFindings(rep.Findings)
	slices.SortStableFunc(rep.Skipped, func(a, b Skipped) int { return cmp.Compare(a.File, b.File) })
	if cerr := ctx.Err(); cerr != nil {
		return rep, cerr
	}
	return rep, err
}

func isBinary(content []byte) bool {
	return bytes.IndexByte(content[:min(len(content), binaryProbe)], 0) >= 0
}

// read reads a file into buf, or says why it cannot be scanned.
func (s *Scanner) read(path string, buf *bytes.Buffer) ([]byte, string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "unreadable: " + errText(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, "unreadable: " + errText(err)
	}
	if !info.Mode().IsRegular() {
		return nil, "not a regular file"
	}
	if info.Size() > s.maxSize {
		return nil, TooLarge(info.Size(), s.maxSize)
	}
	buf.Reset()
	buf.Grow(int(info.Size()) + 1)
	// Read one byte past the limit to notice files that grew.
	if _, err := buf.ReadFrom(io.LimitReader(f, s.maxSize+1)); err != nil {
		return nil, "unreadable: " + errText(err)
	}
	return buf.Bytes(), ""
}

// TooLarge is the reason given for a file skipped for its size; callers
// that skip files before reading them give the same one.
func TooLarge(size, limit int64) string {
	return fmt.Sprintf("too large (%s > %s)", bytesText(size), bytesText(limit))
}

// bytesText writes n in the largest binary unit it reaches, whole numbers
// without a fraction: "3000 B", "2 KiB", "3.1 MiB".
func bytesText(n int64) string {
	unit, div := "B", int64(1)
	switch {
	case n >= 1<<30:
		unit, div = "GiB", 1<<30
	case n >= 1<<20:
		unit, div = "MiB", 1<<20
	case n >= 1<<10:
		unit, div = "KiB", 1<<10
	}
	if n%div == 0 {
		return fmt.Sprintf("%d %s", n/div, unit)
	}
	return fmt.Sprintf("%.1f %s", float64(n)/float64(div), unit)
}

// SortFindings sorts findings by file, line, column and rule id.
func SortFindings(f []Finding) {
	slices.SortStableFunc(f, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column), cmp.Compare(a.RuleID, b.RuleID))
	})
}

// Package vulnfixture builds real inputs for the deep controls' tests and
// benchmarks: an image whose root filesystem is this machine's Debian
// package database, and a Trivy vulnerability DB built from YAML fixture
// advisories with bolt-fixtures (as Trivy's own tests build theirs), packed
// and pushed as Trivy's DB OCI artifact.
package vulnfixture

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	fixtures "github.com/aquasecurity/bolt-fixtures"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DBMediaType is the layer media type of Trivy's DB artifact.
const DBMediaType = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"

// dbConfigMediaType is the config media type of Trivy's DB artifact.
const dbConfigMediaType = "application/vnd.aquasec.trivy.config.v1+json"

// Pkg is an installed Debian package as dpkg records it.
type Pkg struct {
	Name, Version string
	// SrcName and SrcVersion are the source package's (Trivy's Debian
	// advisories are keyed by source package).
	SrcName, SrcVersion string
}

// Installed reads the named packages from a dpkg status file; a name not
// installed is an error.
func Installed(statusFile string, names ...string) (map[string]Pkg, error) {
	f, err := os.Open(statusFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]Pkg{}
	var cur Pkg
	var installed bool
	flush := func() {
		if want[cur.Name] && installed {
			if cur.SrcName == "" {
				cur.SrcName = cur.Name
			}
			if cur.SrcVersion == "" {
				cur.SrcVersion = cur.Version
			}
			out[cur.Name] = cur
		}
		cur, installed = Pkg{}, false
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		k, v, _ := strings.Cut(line, ": ")
		switch {
		case line == "":
			flush()
		case k == "Package":
			cur.Name = v
		case k == "Version":
			cur.Version = v
		case k == "Status":
			installed = strings.HasSuffix(v, " installed")
		case k == "Source":
			src, ver, ok := strings.Cut(v, " (")
			cur.SrcName = src
			if ok {
				cur.SrcVersion = strings.TrimSuffix(ver, ")")
			}
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("package %s is not installed on this machine", n)
		}
	}
	return out, nil
}

// Render executes a fixture template (text/template) with the packages as
// data, writing the YAML to out. In the template, `{{(index . "libc6").SrcName}}`
// names a package's source; the function `newer` gives a version just
// above its argument.
func Render(tmplFile, out string, pkgs map[string]Pkg) error {
	t, err := template.New(filepath.Base(tmplFile)).Funcs(template.FuncMap{
		"newer": func(v string) string { return v + "+sluice1" },
	}).Option("missingkey=error").ParseFiles(tmplFile)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, pkgs); err != nil {
		return err
	}
	return os.WriteFile(out, b.Bytes(), 0o644)
}

// BuildDB loads fixture YAML files into dbDir/trivy.db and writes
// dbDir/metadata.json (schema 2) built at updatedAt.
func BuildDB(dbDir string, fixtureFiles []string, updatedAt time.Time) error {
	if err := os.MkdirAll(dbDir, 0o755); err != nil {
		return err
	}
	l, err := fixtures.New(filepath.Join(dbDir, "trivy.db"), fixtureFiles)
	if err != nil {
		return fmt.Errorf("loading fixtures: %w", err)
	}
	if err := l.Load(); err != nil {
		l.Close()
		return fmt.Errorf("loading fixtures: %w", err)
	}
	if err := l.Close(); err != nil {
		return err
	}
	meta := map[string]any{"Version": 2, "UpdatedAt": updatedAt.UTC(), "NextUpdate": updatedAt.UTC().Add(24 * time.Hour), "DownloadedAt": time.Time{}}
	b, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dbDir, "metadata.json"), b, 0o644)
}

// PackDB makes the db.tar.gz of Trivy's DB artifact from dbDir.
func PackDB(dbDir string) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range []string{"trivy.db", "metadata.json"} {
		b, err := os.ReadFile(filepath.Join(dbDir, f))
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: f, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DBArtifact wraps a db.tar.gz as Trivy's DB OCI artifact.
func DBArtifact(archive []byte) (v1.Image, error) {
	layer := static.NewLayer(archive, DBMediaType)
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:       layer,
		MediaType:   DBMediaType,
		Annotations: map[string]string{"org.opencontainers.image.title": "db.tar.gz"},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, dbConfigMediaType), nil
}

// Push writes img to ref (a plain-HTTP registry such as an httptest one).
func Push(ctx context.Context, ref string, img v1.Image) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(r, img, remote.WithContext(ctx))
}

// DebianRootFS is the part of this machine's root filesystem a vulnerability
// scan reads: the OS release files and dpkg's database. root is "/" except
// in tests of this package.
func DebianRootFS(root string) (v1.Layer, error) {
	files := []string{"etc/debian_version", "etc/os-release", "usr/lib/os-release", "var/lib/dpkg/status"}
	md5s, err := filepath.Glob(filepath.Join(root, "var/lib/dpkg/info/*.md5sums"))
	if err != nil {
		return nil, err
	}
	for _, m := range md5s {
		rel, _ := filepath.Rel(root, m)
		files = append(files, rel)
	}
	sort.Strings(files)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, rel := range files {
		b, err := os.ReadFile(filepath.Join(root, rel)) // follows the os-release link
		if err != nil {
			return nil, err
		}
		for d := filepath.Dir(rel); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
		if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

// DebianImage is a linux/amd64 image of one layer, DebianRootFS(root).
func DebianImage(root string) (v1.Image, error) {
	layer, err := DebianRootFS(root)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.Cmd = []string{"/bin/sh"}
	return mutate.ConfigFile(img, cf)
}

// DirLayer writes a layer of the regular files and symbolic links under the
// given directories of root (relative paths, e.g. "usr/bin") to file and
// returns it; other kinds of files are left out.
func DirLayer(root, file string, dirs ...string) (v1.Layer, error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(f)
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, de os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			fi, err := de.Info()
			if err != nil {
				return err
			}
			var link string
			switch {
			case fi.Mode()&os.ModeSymlink != 0:
				if link, err = os.Readlink(p); err != nil {
					return err
				}
			case !fi.Mode().IsRegular() && !fi.IsDir():
				return nil
			}
			hdr, err := tar.FileInfoHeader(fi, link)
			if err != nil {
				return err
			}
			hdr.Name, hdr.ModTime = rel, time.Unix(0, 0)
			if fi.IsDir() {
				hdr.Name += "/"
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if fi.Mode().IsRegular() {
				src, err := os.Open(p)
				if err != nil {
					return err
				}
				_, err = io.Copy(tw, src)
				src.Close()
				return err
			}
			return nil
		})
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return tarball.LayerFromFile(file)
}

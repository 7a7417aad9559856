package deep

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// source is an image opened for a scan.
type source struct {
	img     *trivyImage
	subject string
	digest  string
	notes   []string
	cleanup func()
}

// trivyImage gives a go-containerregistry image the names Trivy's image
// artifact asks for.
type trivyImage struct {
	v1.Image
	name        string
	repoTags    []string
	repoDigests []string
}

func (i *trivyImage) Name() string { return i.name }
func (i *trivyImage) ID() (string, error) {
	h, err := i.ConfigName()
	if err != nil {
		return "", fmt.Errorf("reading image ID: %w", err)
	}
	return h.String(), nil
}
func (i *trivyImage) RepoTags() []string    { return i.repoTags }
func (i *trivyImage) RepoDigests() []string { return i.repoDigests }

func (o Options) platform() (v1.Platform, error) {
	p := o.Platform
	if p == "" {
		p = "linux/amd64"
	}
	pl, err := v1.ParsePlatform(p)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("parsing platform %q: %w", p, err)
	}
	return *pl, nil
}

// openImage resolves ref to one image.
func openImage(ctx context.Context, ref string, opts Options) (*source, error) {
	switch {
	case strings.HasPrefix(ref, "oci:"):
		dir, dgst, _ := strings.Cut(strings.TrimPrefix(ref, "oci:"), "@")
		return openLayout(dir, dgst, func() {}, opts)
	case strings.HasPrefix(ref, "tarball:"):
		return openTarball(strings.TrimPrefix(ref, "tarball:"), opts)
	default:
		return openRemote(ctx, ref, opts)
	}
}

func openRemote(ctx context.Context, ref string, opts Options) (*source, error) {
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("parsing reference: %w", err)
	}
	pl, err := opts.platform()
	if err != nil {
		return nil, err
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(opts.Keychain), remote.WithPlatform(pl)}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return nil, fmt.Errorf("resolving reference: %w", err)
	}
	src := &source{cleanup: func() {}, digest: desc.Digest.String()}
	byDigest := r.Context().Digest(desc.Digest.String())
	src.subject = byDigest.String()
	if _, isTag := r.(name.Tag); isTag {
		src.notes = append(src.notes, fmt.Sprintf("tag %s resolved to %s", r.String(), desc.Digest))
	}
	// Pull by digest: what is scanned is what the digest names, whatever the
	// tag points at by then.
	d, err := remote.Get(byDigest, ropts...)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	img, err := d.Image() // an index resolves to the platform's image
	if err != nil {
		return nil, fmt.Errorf("reading image: %w", err)
	}
	if dd, err := img.Digest(); err == nil && dd != desc.Digest {
		src.notes = append(src.notes, fmt.Sprintf("index %s resolved to %s for %s", desc.Digest, dd, pl.String()))
	}
	tags := []string{}
	if t, ok := r.(name.Tag); ok {
		tags = []string{t.String()}
	}
	src.img = &trivyImage{Image: img, name: ref, repoTags: tags, repoDigests: []string{byDigest.String()}}
	return src, nil
}

// openLayout opens an image of an OCI layout: the one with dgst (a manifest
// or an index, resolved to the platform), or the only one.
func openLayout(dir, dgst string, cleanup func(), opts Options) (*source, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("reading OCI layout %s: %w", dir, err)
	}
	img, digest, err := pickImage(idx, dgst, opts)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("reading OCI layout %s: %w", dir, err)
	}
	subject := "oci:" + dir + "@" + digest
	return &source{
		img:     &trivyImage{Image: img, name: subject, repoTags: []string{}, repoDigests: []string{}},
		subject: subject, digest: digest, cleanup: cleanup,
	}, nil
}

func pickImage(idx v1.ImageIndex, dgst string, opts Options) (v1.Image, string, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, "", err
	}
	pl, err := opts.platform()
	if err != nil {
		return nil, "", err
	}
	var cands []v1.Descriptor
	for _, d := range m.Manifests {
		if dgst == "" || d.Digest.String() == dgst {
			cands = append(cands, d)
		}
	}
	switch {
	case len(cands) == 0 && dgst != "":
		return nil, "", fmt.Errorf("no manifest %s in it", dgst)
	case len(cands) == 0:
		return nil, "", errors.New("no image in it")
	case len(cands) > 1:
		return nil, "", fmt.Errorf("%d images in it; name one as oci:DIR@sha256:...", len(cands))
	}
	d := cands[0]
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, "", err
		}
		cm, err := child.IndexManifest()
		if err != nil {
			return nil, "", err
		}
		for _, c := range cm.Manifests {
			if c.Platform != nil && c.Platform.Satisfies(pl) {
				img, err := child.Image(c.Digest)
				return img, d.Digest.String(), err
			}
		}
		return nil, "", fmt.Errorf("index %s has no image for %s", d.Digest, pl.String())
	}
	img, err := idx.Image(d.Digest)
	return img, d.Digest.String(), err
}

// openTarball opens `docker save` output (manifest.json), or a tar of an
// OCI layout (index.json), unpacked into a scratch directory.
func openTarball(file string, opts Options) (*source, error) {
	kind, err := tarKind(file)
	if err != nil {
		return nil, fmt.Errorf("reading tarball %s: %w", file, err)
	}
	if kind == "oci" {
		dir, err := os.MkdirTemp(opts.CacheDir, "sluice-oci-")
		if err != nil {
			return nil, fmt.Errorf("unpacking tarball: %w", err)
		}
		cleanup := func() { os.RemoveAll(dir) }
		if err := untar(file, dir); err != nil {
			cleanup()
			return nil, fmt.Errorf("unpacking tarball %s: %w", file, err)
		}
		src, err := openLayout(dir, "", cleanup, opts)
		if err != nil {
			return nil, err
		}
		src.subject = "tarball:" + file + "@" + src.digest
		src.img.name = src.subject
		return src, nil
	}
	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		return nil, fmt.Errorf("reading tarball %s: %w", file, err)
	}
	dg, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("reading tarball %s: %w", file, err)
	}
	subject := "tarball:" + file
	return &source{
		img:     &trivyImage{Image: img, name: subject, repoTags: []string{}, repoDigests: []string{}},
		subject: subject, digest: dg.String(), cleanup: func() {},
		notes: []string{"a docker-save tarball: the digest is of the manifest as rebuilt from it, not the registry's"},
	}, nil
}

// tarKind tells `docker save` output ("docker") from an OCI layout ("oci").
func tarKind(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var oci bool
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", err
		}
		switch filepath.Clean(h.Name) {
		case "manifest.json":
			return "docker", nil
		case "index.json":
			oci = true
		}
	}
	if oci {
		return "oci", nil
	}
	return "", errors.New("neither a docker-save tarball (manifest.json) nor an OCI layout (index.json)")
}

// untar unpacks regular files and directories of file into dir, refusing
// names that leave it.
func untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("entry %q leaves the archive", h.Name)
		}
		dst := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

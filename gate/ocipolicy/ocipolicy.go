// Package ocipolicy distributes an organisation's sluice policy as an OCI
// artifact: it pushes one, and fetches one pinned by digest, verified with a
// gate.ArtifactVerifier before use and cached on disk by digest so that a
// runner that has seen a pin needs no registry (nor network) again.
package ocipolicy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sluice-ci/sluice/gate"
)

// Media types of a policy artifact.
const (
	// ArtifactType is the manifest's artifactType.
	ArtifactType = "application/vnd.sluice.policy.v1"
	// LayerMediaType is the policy document's own layer.
	LayerMediaType types.MediaType = "application/vnd.sluice.policy.v1+yaml"
	// emptyMediaType is the OCI empty descriptor, the config of an artifact.
	emptyMediaType types.MediaType = "application/vnd.oci.empty.v1+json"
)

// Scheme prefixes a policy reference on the command line.
const Scheme = "oci://"

// MaxSize is the largest policy document fetched (1 MiB).
const MaxSize = 1 << 20

// Options are the registry options of a push or a fetch.
type Options struct {
	// Transport for registry calls; the default is remote.DefaultTransport.
	Transport http.RoundTripper
	// Keychain gives registry credentials; the default is
	// authn.DefaultKeychain (docker config and credential helpers).
	Keychain authn.Keychain
}

func (o Options) remote(ctx context.Context) []remote.Option {
	t, k := o.Transport, o.Keychain
	if t == nil {
		t = remote.DefaultTransport
	}
	if k == nil {
		k = authn.DefaultKeychain
	}
	return []remote.Option{
		remote.WithContext(ctx), remote.WithTransport(t), remote.WithAuthFromKeychain(k),
		// A check waits on this: retry transient errors briefly.
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
	}
}

// ParseRef parses "oci://REGISTRY/REPO@sha256:HEX". A reference without a
// digest (a tag) is refused: pinning is the point.
func ParseRef(s string) (name.Digest, error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return name.Digest{}, fmt.Errorf("%w: %q: want oci://REGISTRY/REPO@sha256:...", gate.ErrUsage, s)
	}
	if !strings.Contains(rest, "@") {
		return name.Digest{}, fmt.Errorf("%w: %s names a tag, not a digest: an organisation policy must be pinned by digest (oci://REGISTRY/REPO@sha256:...); `sluice policy push` prints the digest to pin", gate.ErrUsage, s)
	}
	d, err := name.NewDigest(rest)
	if err != nil {
		return name.Digest{}, fmt.Errorf("%w: parsing %s: %v", gate.ErrUsage, s, err)
	}
	return d, nil
}

// rawManifest is a manifest to put as it is.
type rawManifest struct{ b []byte }

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// Push publishes data as a policy artifact at ref (a tag or a bare
// repository, which gets the tag "latest") and returns its digest.
// Validate the policy first: Push stores any bytes.
func Push(ctx context.Context, ref string, data []byte, o Options) (name.Digest, error) {
	r, err := name.ParseReference(strings.TrimPrefix(ref, Scheme))
	if err != nil {
		return name.Digest{}, fmt.Errorf("%w: parsing %s: %v", gate.ErrUsage, ref, err)
	}
	if _, ok := r.(name.Digest); ok {
		return name.Digest{}, fmt.Errorf("%w: %s: push to a tag or a repository; the digest is what push prints", gate.ErrUsage, ref)
	}
	opts := o.remote(ctx)
	cfg := static.NewLayer([]byte("{}"), emptyMediaType)
	layer := static.NewLayer(data, LayerMediaType)
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(r.Context(), l, opts...); err != nil {
			return name.Digest{}, fmt.Errorf("pushing blob to %s: %w", r.Context(), err)
		}
	}
	desc := func(l v1.Layer, mt types.MediaType, ann map[string]string) v1.Descriptor {
		d, _ := l.Digest()
		s, _ := l.Size()
		return v1.Descriptor{MediaType: mt, Digest: d, Size: s, Annotations: ann}
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        desc(cfg, emptyMediaType, nil),
		Layers:        []v1.Descriptor{desc(layer, LayerMediaType, map[string]string{"org.opencontainers.image.title": gate.PolicyFile})},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return name.Digest{}, err
	}
	if err := remote.Put(r, rawManifest{raw}, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("pushing manifest to %s: %w", r, err)
	}
	sum := sha256.Sum256(raw)
	return r.Context().Digest("sha256:" + hex.EncodeToString(sum[:])), nil
}

// Document is a fetched, verified policy.
type Document struct {
	// Ref is the reference as pinned, with the oci:// scheme.
	Ref string
	// Digest is the manifest digest ("sha256:...").
	Digest string
	// Data is the policy document.
	Data []byte
	// Cached is true when it came from the cache without the registry.
	Cached bool
}

// Fetcher fetches pinned policies, verifies them, and caches them.
type Fetcher struct {
	// CacheDir holds verified policies by digest; "" disables the cache.
	CacheDir string
	// Verifier checks each policy's signature before use. Required.
	Verifier gate.ArtifactVerifier
	Options  Options
}

// ErrNotPolicy: the artifact at the digest is not a sluice policy.
var ErrNotPolicy = errors.New("not a sluice policy artifact")

// Fetch returns the policy pinned by ref (oci://REGISTRY/REPO@sha256:...).
// A cached copy is used when its bytes still hash to the pin and its kept
// signature still verifies, offline; otherwise the registry is asked, the
// signature verified, and the copy cached. Nothing unverified is returned.
func (f *Fetcher) Fetch(ctx context.Context, ref string) (*Document, error) {
	dig, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	if f.Verifier == nil {
		return nil, fmt.Errorf("%w: %s: no verifier: a policy is verified before use", gate.ErrUsage, ref)
	}
	pinned := dig.DigestStr()
	if doc, ok := f.cached(ctx, dig, ref); ok {
		return doc, nil
	}
	opts := f.Options.remote(ctx)
	desc, err := remote.Get(dig, opts...)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", ref, err)
	}
	raw := desc.Manifest
	sum := sha256.Sum256(raw)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != pinned {
		return nil, &gate.VerificationError{Ref: ref, Reason: "tampered", Detail: "the registry served a manifest whose digest is " + got}
	}
	ld, err := policyLayer(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	layer, err := remote.Layer(dig.Context().Digest(ld.Digest.String()), opts...)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", ref, err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", ref, err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, MaxSize+1))
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", ref, err)
	}
	if err := checkLayer(data, ld); err != nil {
		return nil, &gate.VerificationError{Ref: ref, Reason: "tampered", Detail: err.Error()}
	}
	evidence, err := f.Verifier.Verify(ctx, dig.String())
	if err != nil {
		return nil, err
	}
	if f.CacheDir != "" {
		if err := f.store(dig, raw, data, evidence); err != nil {
			return nil, fmt.Errorf("caching %s: %w", ref, err)
		}
	}
	return &Document{Ref: ref, Digest: pinned, Data: data}, nil
}

func policyLayer(raw []byte) (v1.Descriptor, error) {
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return v1.Descriptor{}, fmt.Errorf("%w: manifest: %v", ErrNotPolicy, err)
	}
	if m.ArtifactType != ArtifactType && m.Config.MediaType != types.MediaType(ArtifactType) {
		return v1.Descriptor{}, fmt.Errorf("%w: its artifactType is %q, want %s (publish one with sluice policy push)", ErrNotPolicy, m.ArtifactType, ArtifactType)
	}
	for _, l := range m.Layers {
		if l.MediaType == LayerMediaType {
			if l.Size > MaxSize {
				return v1.Descriptor{}, fmt.Errorf("%w: its policy is %d bytes, more than %d", ErrNotPolicy, l.Size, MaxSize)
			}
			return l, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("%w: no %s layer", ErrNotPolicy, LayerMediaType)
}

func checkLayer(data []byte, ld v1.Descriptor) error {
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != ld.Digest.String() || int64(len(data)) != ld.Size {
		return fmt.Errorf("the policy's content (%s, %d bytes) does not match its manifest (%s, %d bytes)", got, len(data), ld.Digest, ld.Size)
	}
	return nil
}

// The cache: CacheDir/sha256/<hex>/{manifest.json,policy.yaml,evidence}.
// An entry is written whole (a temporary folder renamed into place) and
// only after the policy verified.
func (f *Fetcher) entry(dig name.Digest) string {
	algo, hex, _ := strings.Cut(dig.DigestStr(), ":")
	return filepath.Join(f.CacheDir, algo, hex)
}

func (f *Fetcher) cached(ctx context.Context, dig name.Digest, ref string) (*Document, bool) {
	if f.CacheDir == "" {
		return nil, false
	}
	dir := f.entry(dig)
	raw, err1 := os.ReadFile(filepath.Join(dir, "manifest.json"))
	data, err2 := os.ReadFile(filepath.Join(dir, "policy.yaml"))
	ev, err3 := os.ReadFile(filepath.Join(dir, "evidence"))
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, false
	}
	sum := sha256.Sum256(raw)
	if "sha256:"+hex.EncodeToString(sum[:]) != dig.DigestStr() {
		return nil, false
	}
	ld, err := policyLayer(raw)
	if err != nil || checkLayer(data, ld) != nil {
		return nil, false
	}
	// The signature kept beside it must still verify with the key given
	// now: a cache filled under another key is not trusted.
	if f.Verifier.VerifyEvidence(ctx, dig.String(), ev) != nil {
		return nil, false
	}
	return &Document{Ref: ref, Digest: dig.DigestStr(), Data: data, Cached: true}, true
}

func (f *Fetcher) store(dig name.Digest, raw, data, evidence []byte) error {
	dir := f.entry(dig)
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for name, b := range map[string][]byte{"manifest.json": raw, "policy.yaml": data, "evidence": evidence} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another run cached it first: theirs is as good.
		if _, serr := os.Stat(filepath.Join(dir, "policy.yaml")); serr == nil {
			return nil
		}
		_ = os.RemoveAll(dir)
		return os.Rename(tmp, dir)
	}
	return nil
}

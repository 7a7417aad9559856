package fastpath

import (
	"context"
	"crypto"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/sluice-ci/sluice/fastpath/signatures"
	"github.com/sluice-ci/sluice/fastpath/signatures/signtest"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/gate/ocipolicy"
)

const orgPolicy = `version: 1
controls:
  secrets:
    budget: 5s
    on_overrun: fail-closed
batch:
  max_changes: 5
`

// policyLab is an in-process TLS registry (whose blob answers can be
// replaced, and which can be taken down), a signing key and another key.
type policyLab struct {
	t        testing.TB
	srv      *httptest.Server
	host     string
	dir      string
	good     *signtest.Key
	other    *signtest.Key
	goodPub  string
	otherPub string
	// replaceBlobs, when set, replaces the body of every blob answer.
	replaceBlobs atomic.Pointer[string]
	down         atomic.Bool
	requests     atomic.Int64
}

func newPolicyLab(t testing.TB) *policyLab {
	t.Helper()
	l := &policyLab{t: t, dir: t.TempDir()}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	l.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.requests.Add(1)
		if l.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if body := l.replaceBlobs.Load(); body != nil && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			_, _ = io.WriteString(w, *body)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	l.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	l.srv.StartTLS()
	t.Cleanup(l.srv.Close)
	l.host = strings.TrimPrefix(l.srv.URL, "https://")
	var err error
	if l.good, err = signtest.NewKey(); err != nil {
		t.Fatal(err)
	}
	if l.other, err = signtest.NewKey(); err != nil {
		t.Fatal(err)
	}
	l.goodPub, l.otherPub = filepath.Join(l.dir, "org.pub"), filepath.Join(l.dir, "other.pub")
	if err := l.good.WritePublic(l.goodPub); err != nil {
		t.Fatal(err)
	}
	if err := l.other.WritePublic(l.otherPub); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *policyLab) opts() []signatures.Option {
	return []signatures.Option{signatures.WithTransport(l.srv.Client().Transport), signatures.WithKeychain(authn.NewMultiKeychain())}
}

func (l *policyLab) remote() []remote.Option {
	return []remote.Option{remote.WithTransport(l.srv.Client().Transport)}
}

// signatureSigner signs with a test key as cosign would.
func signatureSigner(k *signtest.Key) (signature.Signer, error) {
	return signature.LoadECDSASignerVerifier(k.Private, crypto.SHA256)
}

func (l *policyLab) ociOpts() ocipolicy.Options {
	return ocipolicy.Options{Transport: l.srv.Client().Transport, Keychain: authn.NewMultiKeychain()}
}

// push publishes a policy at repo:tag and returns its digest, signed by
// key unless key is nil.
func (l *policyLab) push(repoTag, doc string, key *signtest.Key) name.Digest {
	l.t.Helper()
	d, err := ocipolicy.Push(context.Background(), "oci://"+l.host+"/"+repoTag, []byte(doc), l.ociOpts())
	if err != nil {
		l.t.Fatal(err)
	}
	if key != nil {
		sv, err := signatureSigner(key)
		if err != nil {
			l.t.Fatal(err)
		}
		if err := signatures.SignArtifact(context.Background(), d, sv, l.opts()...); err != nil {
			l.t.Fatal(err)
		}
	}
	return d
}

func (l *policyLab) fetcher(t testing.TB, cacheDir string, keys ...string) *ocipolicy.Fetcher {
	t.Helper()
	if len(keys) == 0 {
		keys = []string{l.goodPub}
	}
	v, err := NewPolicyVerifier(keys, l.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	return &ocipolicy.Fetcher{CacheDir: cacheDir, Verifier: v, Options: l.ociOpts()}
}

func TestOrgPolicyFetch(t *testing.T) {
	l := newPolicyLab(t)
	ctx := context.Background()
	signed := l.push("org/policy:v1", orgPolicy, l.good)
	unsigned := l.push("org/policy:unsigned", orgPolicy+"# unsigned\n", nil)
	byOther := l.push("org/policy:other", orgPolicy+"# other\n", l.other)
	// A signature for the signed policy copied onto another one: valid,
	// by the right key, for the wrong digest.
	swapped := l.push("org/policy:swapped", orgPolicy+"# swapped\n", nil)
	if err := signtest.CopySignatures(signed, swapped, l.remote()...); err != nil {
		t.Fatal(err)
	}

	t.Run("a signed policy is used and cached", func(t *testing.T) {
		f := l.fetcher(t, t.TempDir())
		doc, err := f.Fetch(ctx, "oci://"+signed.String())
		if err != nil {
			t.Fatal(err)
		}
		if string(doc.Data) != orgPolicy || doc.Digest != signed.DigestStr() || doc.Cached {
			t.Errorf("doc = %+v", doc)
		}
		again, err := f.Fetch(ctx, "oci://"+signed.String())
		if err != nil || !again.Cached || string(again.Data) != orgPolicy {
			t.Errorf("second fetch: %+v, %v; want it from the cache", again, err)
		}
	})

	refused := []struct {
		name, ref, reason string
		keys              []string
	}{
		{"an unsigned policy is refused", "oci://" + unsigned.String(), "unsigned", nil},
		{"a policy signed by another key is refused", "oci://" + byOther.String(), "wrong-signer", nil},
		{"a signature vouching for another digest is refused", "oci://" + swapped.String(), "tampered", nil},
		{"a signed policy is refused under another key", "oci://" + signed.String(), "wrong-signer", []string{l.otherPub}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			_, err := l.fetcher(t, cache, tc.keys...).Fetch(ctx, tc.ref)
			var ve *gate.VerificationError
			if !errors.As(err, &ve) || ve.Reason != tc.reason {
				t.Fatalf("err = %v, want a %s VerificationError", err, tc.reason)
			}
			if !strings.Contains(err.Error(), "refusing it") {
				t.Errorf("message %q does not say the policy is refused", err)
			}
			assertEmpty(t, cache)
		})
	}

	t.Run("content replaced in the registry is refused", func(t *testing.T) {
		body := strings.Replace(orgPolicy, "fail-closed", "fail-open", 1)
		l.replaceBlobs.Store(&body)
		defer l.replaceBlobs.Store(nil)
		cache := t.TempDir()
		_, err := l.fetcher(t, cache).Fetch(ctx, "oci://"+signed.String())
		if err == nil || !strings.Contains(err.Error(), "sha256") {
			t.Fatalf("err = %v, want a digest mismatch", err)
		}
		assertEmpty(t, cache)
	})

	t.Run("a tag without a digest is refused", func(t *testing.T) {
		_, err := l.fetcher(t, t.TempDir()).Fetch(ctx, "oci://"+l.host+"/org/policy:v1")
		if !errors.Is(err, gate.ErrUsage) || !strings.Contains(err.Error(), "pinned by digest") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("an image that is not a policy is refused", func(t *testing.T) {
		img, err := signtest.PushRandom(l.host+"/org/app:v1", l.remote()...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = l.fetcher(t, t.TempDir()).Fetch(ctx, "oci://"+img.String())
		if !errors.Is(err, ocipolicy.ErrNotPolicy) {
			t.Fatalf("err = %v, want ErrNotPolicy", err)
		}
	})
}

func TestOrgPolicyCacheWorksOfflineAndIsCheckedOnUse(t *testing.T) {
	l := newPolicyLab(t)
	ctx := context.Background()
	signed := l.push("org/policy:v1", orgPolicy, l.good)
	ref := "oci://" + signed.String()
	cache := t.TempDir()
	if _, err := l.fetcher(t, cache).Fetch(ctx, ref); err != nil {
		t.Fatal(err)
	}

	l.down.Store(true)
	before := l.requests.Load()
	doc, err := l.fetcher(t, cache).Fetch(ctx, ref)
	if err != nil || !doc.Cached || string(doc.Data) != orgPolicy {
		t.Fatalf("offline fetch: %+v, %v", doc, err)
	}
	if n := l.requests.Load() - before; n != 0 {
		t.Errorf("a cache hit made %d registry requests", n)
	}

	// A cache filled under one key is not trusted under another.
	if _, err := l.fetcher(t, cache, l.otherPub).Fetch(ctx, ref); err == nil {
		t.Error("a cached policy was used under a key that never signed it")
	}

	// A cached copy edited on disk is not used.
	algo, hex, _ := strings.Cut(signed.DigestStr(), ":")
	p := filepath.Join(cache, algo, hex, "policy.yaml")
	if err := os.WriteFile(p, []byte(strings.Replace(orgPolicy, "fail-closed", "fail-open", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if doc, err := l.fetcher(t, cache).Fetch(ctx, ref); err == nil {
		t.Errorf("an edited cache entry was used: %q", doc.Data)
	}
}

// BenchmarkOrgPolicyFetchCached is what a cached organisation policy adds
// to a check: reading the entry, hashing it, verifying its kept signature
// offline, parsing it and merging the repository's policy over it.
func BenchmarkOrgPolicyFetchCached(b *testing.B) {
	l := newPolicyLab(b)
	ctx := context.Background()
	signed := l.push("org/policy:v1", orgPolicy, l.good)
	ref := "oci://" + signed.String()
	cache := b.TempDir()
	f := l.fetcher(b, cache)
	if _, err := f.Fetch(ctx, ref); err != nil {
		b.Fatal(err)
	}
	l.down.Store(true)
	cat := gate.Catalog(Specs())
	repo, err := gate.ParsePolicy(".sluice.yaml", []byte("version: 1\ncontrols:\n  secrets:\n    budget: 2s\n"), cat)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		doc, err := f.Fetch(ctx, ref)
		if err != nil || !doc.Cached {
			b.Fatal(err)
		}
		org, err := gate.ParsePolicy(ref, doc.Data, cat)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := gate.MergePolicy(org, repo, gate.PolicyInfo{Source: ref, Digest: doc.Digest}); err != nil {
			b.Fatal(err)
		}
	}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	var files []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) > 0 {
		t.Errorf("a refused policy was cached: %v", files)
	}
}

package ocipolicy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/gate/ocipolicy"
)

func TestParseRefWantsADigest(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		ref   string
		ok    bool
		error string
	}{
		{"oci://registry.example/org/policy@" + digest, true, ""},
		{"oci://registry.example:5000/org/team/policy@" + digest, true, ""},
		{"oci://registry.example/org/policy:v1", false, "names a tag, not a digest"},
		{"oci://registry.example/org/policy", false, "names a tag, not a digest"},
		{"registry.example/org/policy@" + digest, false, "want oci://"},
		{"oci://registry.example/org/policy@sha256:short", false, "parsing"},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			d, err := ocipolicy.ParseRef(tc.ref)
			if tc.ok {
				if err != nil || d.DigestStr() != digest {
					t.Fatalf("ParseRef = %v, %v", d, err)
				}
				return
			}
			if !errors.Is(err, gate.ErrUsage) || !strings.Contains(err.Error(), tc.error) {
				t.Errorf("err = %v, want a usage error saying %q", err, tc.error)
			}
		})
	}
}

// TestPushWritesAPolicyArtifact reads back what Push wrote with plain
// go-containerregistry calls, as any OCI client would.
func TestPushWritesAPolicyArtifact(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	doc := []byte("version: 1\n")
	opts := ocipolicy.Options{Transport: srv.Client().Transport, Keychain: authn.NewMultiKeychain()}
	d, err := ocipolicy.Push(context.Background(), "oci://"+host+"/org/policy:v1", doc, opts)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(d, remote.WithTransport(srv.Client().Transport))
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != ocipolicy.ArtifactType || len(m.Layers) != 1 || m.Layers[0].MediaType != ocipolicy.LayerMediaType || m.Layers[0].Size != int64(len(doc)) {
		t.Errorf("manifest = %s", desc.Manifest)
	}
	// The tag points at the digest Push returned.
	tagged, err := remote.Head(d.Context().Tag("v1"), remote.WithTransport(srv.Client().Transport))
	if err != nil || tagged.Digest.String() != d.DigestStr() {
		t.Errorf("tag v1 -> %v, %v; want %s", tagged, err, d.DigestStr())
	}

	if _, err := ocipolicy.Push(context.Background(), "oci://"+d.String(), doc, opts); !errors.Is(err, gate.ErrUsage) {
		t.Errorf("pushing to a digest: err = %v, want a usage error", err)
	}
}

func TestFetchWithoutAVerifierIsRefused(t *testing.T) {
	f := &ocipolicy.Fetcher{CacheDir: t.TempDir()}
	_, err := f.Fetch(context.Background(), "oci://registry.example/org/policy@sha256:"+strings.Repeat("0", 64))
	if !errors.Is(err, gate.ErrUsage) || !strings.Contains(err.Error(), "verified before use") {
		t.Errorf("err = %v", err)
	}
}

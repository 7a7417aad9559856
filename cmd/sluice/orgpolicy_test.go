package main

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/sluice-ci/sluice/internal/testrepo"
)

const cliOrgPolicy = `version: 1
controls:
  secrets:
    budget: 5s
    on_overrun: fail-closed
batch:
  max_changes: 4
`

// TestOrgPolicyEndToEnd publishes a policy with `sluice policy push` to an
// in-process registry (plain HTTP on 127.0.0.1, as go-containerregistry
// allows for loopback), signed with a cosign key pair made by cosign, and
// uses it pinned by digest.
func TestOrgPolicyEndToEnd(t *testing.T) {
	var down atomic.Bool
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	keys, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("s3cret-pass"), nil })
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	testrepo.WriteFiles(t, dir, map[string]string{
		"cosign.key": string(keys.PrivateBytes), "cosign.pub": string(keys.PublicBytes),
		"org.yaml": cliOrgPolicy, "bad.yaml": "version: 1\ncontrols:\n  secrets:\n    budget: soon\n",
	})
	environ := map[string]string{"COSIGN_PASSWORD": "s3cret-pass", "SLUICE_CACHE_DIR": filepath.Join(dir, "cache")}

	r := sluiceEnv(t, dir, environ, "policy", "push", "bad.yaml", "oci://"+host+"/org/policy:v1", "--key", "cosign.key")
	if r.code != exitUsage || !strings.Contains(r.stderr, "bad.yaml:4:13: controls.secrets.budget") {
		t.Fatalf("pushing a bad policy: exit %d\n%s", r.code, r.stderr)
	}
	r = sluiceEnv(t, dir, environ, "policy", "push", "org.yaml", "oci://"+host+"/org/policy:v1", "--key", "cosign.key")
	if r.code != exitPass {
		t.Fatalf("push: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	pin := regexp.MustCompile(`--policy (oci://\S+@sha256:[0-9a-f]{64})`).FindStringSubmatch(r.stdout)
	if pin == nil {
		t.Fatalf("push printed no digest to pin:\n%s", r.stdout)
	}
	ref := pin[1]
	digest := ref[strings.Index(ref, "@")+1:]

	repo := testrepo.New(t)
	repo.Write("app.txt", "hello\n")
	repo.Write(".sluice.yaml", "version: 1\ncontrols:\n  secrets:\n    budget: 2s\n")
	repo.Commit("app")
	withKey := map[string]string{"SLUICE_POLICY_KEY": filepath.Join(dir, "cosign.pub"), "SLUICE_CACHE_DIR": environ["SLUICE_CACHE_DIR"]}

	t.Run("check records the organisation policy's digest in the verdict", func(t *testing.T) {
		r := sluiceEnv(t, repo.Dir, withKey, "check", "--policy", ref, "--format", "json")
		if r.code != exitPass {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		v := decodeVerdict(t, r.stdout)
		if v.Policy.Org == nil || v.Policy.Org.Digest != digest || v.Policy.Org.Source != ref || !strings.HasSuffix(v.Policy.Source, ".sluice.yaml") {
			t.Errorf("verdict policy = %+v (org %+v)", v.Policy, v.Policy.Org)
		}
		for _, c := range v.Controls {
			if c.Name == "secrets" && (c.BudgetMS != 2000 || c.OnOverrun != "fail-closed") {
				t.Errorf("secrets ran with budget %dms, %s; want the repository's 2s over the organisation's fail-closed", c.BudgetMS, c.OnOverrun)
			}
		}
	})

	t.Run("a repository policy that loosens the organisation's is refused", func(t *testing.T) {
		loose := testrepo.New(t)
		loose.Write(".sluice.yaml", "version: 1\ncontrols:\n  secrets:\n    on_overrun: defer\n")
		loose.Write("app.txt", "x\n")
		loose.Commit("loose")
		r := sluiceEnv(t, loose.Dir, withKey, "check", "--policy", ref)
		if r.code != exitUsage || !strings.Contains(r.stderr, ".sluice.yaml:4:17: controls.secrets.on_overrun: defer is looser than the organisation's fail-closed") {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
	})

	t.Run("a tag is refused", func(t *testing.T) {
		r := sluiceEnv(t, repo.Dir, withKey, "check", "--policy", "oci://"+host+"/org/policy:v1")
		if r.code != exitUsage || !strings.Contains(r.stderr, "must be pinned by digest") {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
	})

	t.Run("no key is refused", func(t *testing.T) {
		r := sluiceEnv(t, repo.Dir, map[string]string{}, "check", "--policy", ref)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--policy-key") {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
	})

	t.Run("the cached policy is used with the registry down", func(t *testing.T) {
		down.Store(true)
		defer down.Store(false)
		r := sluiceEnv(t, repo.Dir, withKey, "policy", "validate", "--policy", ref)
		if r.code != exitPass || !strings.Contains(r.stdout, "over the organisation policy "+ref) {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("batch reads the organisation's batch rules", func(t *testing.T) {
		repo.Write("docs/a.md", "a\n")
		repo.Commit("docs")
		// No fast verdict is given, so the change is held back: refused.
		r := sluiceEnv(t, repo.Dir, withKey, "batch", "--policy", ref, "--base", "HEAD^")
		if r.code != exitBlocked || !strings.Contains(r.stdout, "organisation policy "+ref) {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	if _, err := os.Stat(filepath.Join(environ["SLUICE_CACHE_DIR"], "policies", "sha256", strings.TrimPrefix(digest, "sha256:"), "policy.yaml")); err != nil {
		t.Errorf("the policy was not cached by digest: %v", err)
	}
}

package fastpath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/fastpath/signatures"
	"github.com/sluice-ci/sluice/fastpath/signatures/signtest"
	"github.com/sluice-ci/sluice/gate"
)

// sigLab is an in-process TLS registry whose handler can be slowed down,
// a signing key, and a policy directory.
type sigLab struct {
	srv   *httptest.Server
	host  string
	dir   string
	key   *signtest.Key
	delay atomic.Int64 // nanoseconds added to every manifest request once set
	// pattern is the policy rule's pattern; the lab's registry by default.
	pattern string
}

func newSigLab(t *testing.T) *sigLab {
	t.Helper()
	l := &sigLab{dir: t.TempDir()}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	l.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := time.Duration(l.delay.Load()); d > 0 && strings.Contains(r.URL.Path, "/manifests/") {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	l.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	l.srv.StartTLS()
	t.Cleanup(l.srv.Close)
	l.host = strings.TrimPrefix(l.srv.URL, "https://")
	l.pattern = l.host + "/**"
	var err error
	if l.key, err = signtest.NewKey(); err != nil {
		t.Fatal(err)
	}
	if err := l.key.WritePublic(filepath.Join(l.dir, "cosign.pub")); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *sigLab) remote() []remote.Option {
	return []remote.Option{remote.WithTransport(l.srv.Client().Transport)}
}

func (l *sigLab) push(t *testing.T, repoTag string, sign bool) name.Digest {
	t.Helper()
	d, err := signtest.PushRandom(l.host+"/"+repoTag, l.remote()...)
	if err != nil {
		t.Fatal(err)
	}
	if sign {
		if err := (&signtest.Signer{Key: l.key, Remote: l.remote()}).Sign(d); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// gate builds a gate whose only control is signatures, from policy text.
func (l *sigLab) gate(t *testing.T, policy string) (*gate.Gate, error) {
	t.Helper()
	file := filepath.Join(l.dir, ".sluice.yaml")
	if err := os.WriteFile(file, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	cat := gate.Catalog{signaturesSpec(signatures.WithTransport(l.srv.Client().Transport))}
	p, err := gate.ParsePolicy(file, []byte(policy), cat)
	if err != nil {
		return nil, err
	}
	return gate.New(p, gate.Env{Root: l.dir, PolicyDir: l.dir}, nil)
}

func (l *sigLab) policy(extra string) string {
	return fmt.Sprintf(`version: 1
controls:
  signatures:
    enabled: true
%s    images:
      - pattern: "%s"
        key: cosign.pub
`, extra, l.pattern)
}

func (l *sigLab) writeFile(t *testing.T, rel, content string) *gate.File {
	t.Helper()
	abs := filepath.Join(l.dir, rel)
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(abs, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return &gate.File{Path: rel, Abs: abs, Size: int64(len(content))}
}

func TestSignaturesControl(t *testing.T) {
	l := newSigLab(t)
	signed := l.push(t, "shop/web:v1", true)
	unsigned := l.push(t, "shop/worker:v1", false)
	deploy := l.writeFile(t, "deploy/app.yaml", fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
spec:
  template:
    spec:
      containers:
        - name: web
          image: %s/shop/web:v1
        - name: worker
          image: %s
`, l.host, unsigned))
	broken := l.writeFile(t, "deploy/broken.yaml", "kind: Pod\nspec: [\n")
	templated := l.writeFile(t, "chart/templates/pod.yaml", "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - image: \"{{ .Values.image }}\"\n")

	g, err := l.gate(t, l.policy(""))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a signed image passes and the verdict reports its digest", func(t *testing.T) {
		v := g.Check(context.Background(), &gate.Change{Mode: gate.PathsMode, Root: l.dir, Images: []string{l.host + "/shop/web:v1"}})
		run := v.Controls[0]
		if !v.Pass() || run.Status != budgets.Passed {
			t.Fatalf("verdict %s, status %s (%s), want a pass", v.Verdict, run.Status, run.Reason)
		}
		want := gate.Artifact{Ref: l.host + "/shop/web:v1", Digest: signed.DigestStr(), Status: "verified"}
		if len(run.Artifacts) != 1 || run.Artifacts[0].Digest != want.Digest || run.Artifacts[0].Status != want.Status {
			t.Errorf("artifacts = %+v, want %+v", run.Artifacts, want)
		}
	})

	t.Run("an unsigned image in a manifest blocks with a finding at its line", func(t *testing.T) {
		ch := &gate.Change{Mode: gate.PathsMode, Root: l.dir, Files: []*gate.File{deploy, broken, templated}}
		v := g.Check(context.Background(), ch)
		run := v.Controls[0]
		if v.Pass() || run.Status != budgets.Failed {
			t.Fatalf("verdict %s, status %s (%s), want a failure", v.Verdict, run.Status, run.Reason)
		}
		if len(run.Findings) != 1 {
			t.Fatalf("findings = %+v, want 1", run.Findings)
		}
		f := run.Findings[0]
		if f.Rule != "unsigned" || f.File != "deploy/app.yaml" || f.Line != 12 || f.Severity != "HIGH" {
			t.Errorf("finding = %+v, want unsigned at deploy/app.yaml:12", f)
		}
		if !strings.Contains(f.Message, "Deployment/shop container worker") || !strings.Contains(f.Message, "cosign sign") {
			t.Errorf("message %q should name the workload and say what to do", f.Message)
		}
		if len(run.Artifacts) != 2 {
			t.Errorf("artifacts = %+v, want both images", run.Artifacts)
		}
		notes := strings.Join(run.Notes, "\n")
		if !strings.Contains(notes, "deploy/broken.yaml:2: not valid YAML") || !strings.Contains(notes, "chart/templates/pod.yaml:5:") {
			t.Errorf("notes = %q, want the malformed file and the templated image named with their lines", notes)
		}
	})
}

func TestSignaturesControlResolvesByItsDeclaredModes(t *testing.T) {
	l := newSigLab(t)
	l.push(t, "slow/app:v1", true)
	ref := l.host + "/slow/app:v1"
	dead := httptest.NewTLSServer(http.NotFoundHandler())
	deadRef := strings.TrimPrefix(dead.URL, "https://") + "/gone/app:v1"
	dead.Close()
	l.pattern = "**"

	const budget = 400 * time.Millisecond
	tests := []struct {
		name       string
		modes      string
		ref        string
		slow       bool
		wantStatus budgets.Status
		wantBlocks bool
	}{
		{"a slow registry overruns and fails open within budget", "    on_overrun: fail-open\n", ref, true, budgets.Overran, false},
		{"a slow registry overruns and fails closed within budget", "    on_overrun: fail-closed\n", ref, true, budgets.Overran, true},
		{"a slow registry overruns and is deferred within budget", "    on_overrun: defer\n", ref, true, budgets.Deferred, false},
		{"a registry that is down errors and fails open", "    on_error: fail-open\n", deadRef, false, budgets.Errored, false},
		{"a registry that is down errors and fails closed", "    on_error: fail-closed\n", deadRef, false, budgets.Errored, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.delay.Store(0)
			if tt.slow {
				l.delay.Store(int64(5 * time.Second))
			}
			g, err := l.gate(t, l.policy(fmt.Sprintf("    budget: %v\n%s", budget, tt.modes)))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			v := g.Check(context.Background(), &gate.Change{Mode: gate.PathsMode, Root: l.dir, Images: []string{tt.ref}})
			took := time.Since(start)
			run := v.Controls[0]
			if run.Status != tt.wantStatus || run.Blocks != tt.wantBlocks {
				t.Errorf("status %s blocks %v (%s), want %s blocks %v", run.Status, run.Blocks, run.Reason, tt.wantStatus, tt.wantBlocks)
			}
			if took > budget+250*time.Millisecond {
				t.Errorf("check took %v, want within budget %v + 250ms", took, budget)
			}
			if len(run.Artifacts) != 1 || run.Artifacts[0].Status != "error" {
				t.Errorf("artifacts = %+v, want the image with status error", run.Artifacts)
			}
			t.Logf("%s in %v: %s", run.Status, took.Round(time.Millisecond), run.Reason)
		})
	}
}

func TestSignaturesOptionErrorsNameTheLine(t *testing.T) {
	l := newSigLab(t)
	tests := []struct {
		name   string
		images string
		want   string
	}{
		{"a missing key file names images[1].key", `
      - pattern: "a/*"
        key: cosign.pub
      - pattern: "b/*"
        key: missing.pub
`, ".sluice.yaml:9:14: controls.signatures.images[1].key: reading public key"},
		{"a KMS key names the field and the workaround", `
      - pattern: "a/*"
        keys: [cosign.pub, "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k"]
`, "controls.signatures.images[0].keys[1]: KMS key"},
		{"keyless without a trusted root names it", `
      - pattern: "a/*"
        keyless: {identity: a, issuer: b}
`, "controls.signatures.images[0].trusted_root: missing"},
		{"an unknown key lists the known ones", `
      - pattern: "a/*"
        kee: cosign.pub
`, `unknown key "kee"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.gate(t, "version: 1\ncontrols:\n  signatures:\n    enabled: true\n    images:"+tt.images)
			var ce *gate.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *gate.ConfigError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

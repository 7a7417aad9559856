package signatures_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/sluice-ci/sluice/fastpath/signatures"
	"github.com/sluice-ci/sluice/fastpath/signatures/signtest"
)

const (
	slsa      = "https://slsa.dev/provenance/v1"
	builder   = "https://github.com/acme/builders/.github/workflows/build.yml@refs/tags/v1"
	identity  = "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main"
	ghIssuer  = "https://token.actions.githubusercontent.com"
	otherRepo = "https://github.com/mallory/api/.github/workflows/release.yml@refs/heads/main"
)

// lab is an in-process registry over TLS with keys and a CA to sign with.
type lab struct {
	t       testing.TB
	srv     *httptest.Server
	host    string
	remote  []remote.Option
	dir     string
	good    *signtest.Key
	bad     *signtest.Key
	ca      *signtest.CA
	goodPub string
	badPub  string
	rootPEM string
}

func newLab(t testing.TB) *lab {
	t.Helper()
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(nopLogger())))
	// go-containerregistry tries plain HTTP too for 127.0.0.1; keep the
	// server's complaints about that out of the test log.
	srv.Config.ErrorLog = nopLogger()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	l := &lab{t: t, srv: srv, host: strings.TrimPrefix(srv.URL, "https://"), dir: t.TempDir()}
	l.remote = []remote.Option{remote.WithTransport(srv.Client().Transport)}
	var err error
	if l.good, err = signtest.NewKey(); err != nil {
		t.Fatal(err)
	}
	if l.bad, err = signtest.NewKey(); err != nil {
		t.Fatal(err)
	}
	if l.ca, err = signtest.NewCA(); err != nil {
		t.Fatal(err)
	}
	l.goodPub, l.badPub, l.rootPEM = filepath.Join(l.dir, "good.pub"), filepath.Join(l.dir, "bad.pub"), filepath.Join(l.dir, "root.pem")
	must(t, l.good.WritePublic(l.goodPub))
	must(t, l.bad.WritePublic(l.badPub))
	must(t, os.WriteFile(l.rootPEM, l.ca.RootPEM(), 0o644))
	return l
}

func (l *lab) push(repoTag string) name.Digest {
	l.t.Helper()
	d, err := signtest.PushRandom(l.host+"/"+repoTag, l.remote...)
	must(l.t, err)
	return d
}

func (l *lab) signer(k *signtest.Key) *signtest.Signer {
	return &signtest.Signer{Key: k, Remote: l.remote}
}

// keylessSigner signs with a certificate for identity issued by ca.
func (l *lab) keylessSigner(ca *signtest.CA, identity, issuer string) *signtest.Signer {
	l.t.Helper()
	k, err := signtest.NewKey()
	must(l.t, err)
	cert, err := ca.Issue(k, identity, issuer)
	must(l.t, err)
	return &signtest.Signer{Key: k, CertPEM: cert, ChainPEM: ca.ChainPEM(), Remote: l.remote}
}

func (l *lab) verifier(t testing.TB, cfg signatures.Config, opts ...signatures.Option) *signatures.Verifier {
	t.Helper()
	p, err := signatures.NewPolicy(cfg)
	must(t, err)
	return signatures.NewVerifier(p, append([]signatures.Option{
		signatures.WithTransport(l.srv.Client().Transport), signatures.WithKeychain(authn.NewMultiKeychain()),
	}, opts...)...)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerify(t *testing.T) {
	l := newLab(t)
	keyed := func(atts ...signatures.Attestation) signatures.Config {
		return signatures.Config{Rules: []signatures.Rule{{Pattern: l.host + "/**", Keys: []string{l.badPub, l.goodPub}[1:], Attestations: atts}}}
	}
	provenance := signatures.Attestation{PredicateType: slsa, BuilderID: builder}
	keyless := signatures.Config{Rules: []signatures.Rule{{
		Pattern: l.host + "/**", TrustedRoot: l.rootPEM,
		Keyless: &signatures.Keyless{Identity: identity, Issuer: ghIssuer},
	}}}

	tests := []struct {
		name string
		cfg  signatures.Config
		// setup pushes and signs, and returns the reference to verify.
		setup      func(t *testing.T) string
		wantStatus signatures.Status
		wantReason signatures.Reason
		wantErr    error
	}{
		{
			name: "a correctly signed image passes",
			cfg:  keyed(),
			setup: func(t *testing.T) string {
				d := l.push("ok/app:v1")
				must(t, l.signer(l.good).Sign(d))
				return l.host + "/ok/app:v1"
			},
			wantStatus: signatures.Verified,
		},
		{
			name: "an image signed by any one of several keys passes",
			cfg:  signatures.Config{Rules: []signatures.Rule{{Pattern: l.host + "/**", Keys: []string{l.badPub, l.goodPub}}}},
			setup: func(t *testing.T) string {
				d := l.push("multi/app:v1")
				must(t, l.signer(l.good).Sign(d))
				return d.String()
			},
			wantStatus: signatures.Verified,
		},
		{
			name: "an unsigned image fails as unsigned",
			cfg:  keyed(),
			setup: func(t *testing.T) string {
				return l.push("unsigned/app:v1").String()
			},
			wantStatus: signatures.Failed, wantReason: signatures.Unsigned,
		},
		{
			name: "an image signed with another key fails as wrong-signer",
			cfg:  keyed(),
			setup: func(t *testing.T) string {
				d := l.push("wrongkey/app:v1")
				must(t, l.signer(l.bad).Sign(d))
				return d.String()
			},
			wantStatus: signatures.Failed, wantReason: signatures.WrongSigner,
		},
		{
			name: "a signature over another digest fails as tampered",
			cfg:  keyed(),
			setup: func(t *testing.T) string {
				other := l.push("otherdigest/app:v0")
				d := l.push("otherdigest/app:v1")
				must(t, l.signer(l.good).SignClaiming(d, other))
				return d.String()
			},
			wantStatus: signatures.Failed, wantReason: signatures.Tampered,
		},
		{
			name: "a retagged image carrying the old image's signature fails as tampered",
			cfg:  keyed(),
			setup: func(t *testing.T) string {
				signed := l.push("retag/app:v1")
				must(t, l.signer(l.good).Sign(signed))
				evil := l.push("retag/app:v1") // the tag now names another image
				must(t, signtest.CopySignatures(signed, evil, l.remote...))
				return l.host + "/retag/app:v1"
			},
			wantStatus: signatures.Failed, wantReason: signatures.Tampered,
		},
		{
			name: "a tag moved to an unsigned image fails as unsigned",
			cfg:  keyed(),
			setup: func(t *testing.T) string {
				signed := l.push("moved/app:v1")
				must(t, l.signer(l.good).Sign(signed))
				l.push("moved/app:v1")
				return l.host + "/moved/app:v1"
			},
			wantStatus: signatures.Failed, wantReason: signatures.Unsigned,
		},
		{
			name: "a signed image with the required provenance passes",
			cfg:  keyed(provenance),
			setup: func(t *testing.T) string {
				d := l.push("prov/app:v1")
				s := l.signer(l.good)
				must(t, s.Sign(d))
				must(t, s.Attest(d, slsa, signtest.SLSAProvenance(builder)))
				return d.String()
			},
			wantStatus: signatures.Verified,
		},
		{
			name: "a signed image without the required attestation fails as attestation-missing",
			cfg:  keyed(provenance),
			setup: func(t *testing.T) string {
				d := l.push("noatt/app:v1")
				must(t, l.signer(l.good).Sign(d))
				return d.String()
			},
			wantStatus: signatures.Failed, wantReason: signatures.AttestationMissing,
		},
		{
			name: "an attestation signed by another key fails as attestation-missing",
			cfg:  keyed(provenance),
			setup: func(t *testing.T) string {
				d := l.push("attbadkey/app:v1")
				must(t, l.signer(l.good).Sign(d))
				must(t, l.signer(l.bad).Attest(d, slsa, signtest.SLSAProvenance(builder)))
				return d.String()
			},
			wantStatus: signatures.Failed, wantReason: signatures.AttestationMissing,
		},
		{
			name: "provenance from another builder fails as attestation-mismatch",
			cfg:  keyed(provenance),
			setup: func(t *testing.T) string {
				d := l.push("badbuilder/app:v1")
				s := l.signer(l.good)
				must(t, s.Sign(d))
				must(t, s.Attest(d, slsa, signtest.SLSAProvenance("https://evil.example/builder")))
				return d.String()
			},
			wantStatus: signatures.Failed, wantReason: signatures.AttestationMismatch,
		},
		{
			name: "provenance about another image fails as tampered",
			cfg:  keyed(provenance),
			setup: func(t *testing.T) string {
				other := l.push("attother/app:v0")
				d := l.push("attother/app:v1")
				s := l.signer(l.good)
				must(t, s.Sign(d))
				must(t, s.AttestClaiming(d, other, slsa, signtest.SLSAProvenance(builder)))
				return d.String()
			},
			wantStatus: signatures.Failed, wantReason: signatures.Tampered,
		},
		{
			name: "a tag reference fails as unpinned when the policy requires digests",
			cfg:  signatures.Config{RequireDigest: true, Rules: []signatures.Rule{{Pattern: l.host + "/**", Keys: []string{l.goodPub}}}},
			setup: func(t *testing.T) string {
				d := l.push("pin/app:v1")
				must(t, l.signer(l.good).Sign(d))
				return l.host + "/pin/app:v1"
			},
			wantStatus: signatures.Failed, wantReason: signatures.Unpinned,
		},
		{
			name: "an image no rule matches fails as no-policy",
			cfg:  signatures.Config{Rules: []signatures.Rule{{Pattern: "ghcr.io/acme/*", Keys: []string{l.goodPub}}}},
			setup: func(t *testing.T) string {
				return l.push("nomatch/app:v1").String()
			},
			wantStatus: signatures.Failed, wantReason: signatures.NoPolicy,
		},
		{
			name: "an image a skip rule matches is exempt",
			cfg: signatures.Config{Rules: []signatures.Rule{
				{Pattern: l.host + "/third-party/*", Skip: true},
				{Pattern: l.host + "/**", Keys: []string{l.goodPub}},
			}},
			setup: func(t *testing.T) string {
				return l.host + "/third-party/busybox:1"
			},
			wantStatus: signatures.Exempt,
		},
		{
			name: "a tag the registry does not have is an operational not-found error",
			cfg:  keyed(),
			setup: func(t *testing.T) string {
				l.push("missing/app:v1")
				return l.host + "/missing/app:v2"
			},
			wantStatus: signatures.Errored, wantErr: signatures.ErrNotFound,
		},
		{
			name: "a keyless signature by the policy's identity under the trusted root passes",
			cfg:  keyless,
			setup: func(t *testing.T) string {
				d := l.push("keyless/ok:v1")
				must(t, l.keylessSigner(l.ca, identity, ghIssuer).Sign(d))
				return d.String()
			},
			wantStatus: signatures.Verified,
		},
		{
			name: "a keyless signature matching the identity and issuer expressions passes",
			cfg: signatures.Config{Rules: []signatures.Rule{{
				Pattern: l.host + "/**", TrustedRoot: l.rootPEM,
				Keyless: &signatures.Keyless{IdentityRegexp: `^https://github\.com/acme/.+@refs/heads/main$`, IssuerRegexp: `^https://token\.actions\.githubusercontent\.com$`},
			}}},
			setup: func(t *testing.T) string {
				d := l.push("keyless/regexp:v1")
				must(t, l.keylessSigner(l.ca, identity, ghIssuer).Sign(d))
				return d.String()
			},
			wantStatus: signatures.Verified,
		},
		{
			name: "a keyless signature by another identity fails as wrong-signer",
			cfg:  keyless,
			setup: func(t *testing.T) string {
				d := l.push("keyless/other:v1")
				must(t, l.keylessSigner(l.ca, otherRepo, ghIssuer).Sign(d))
				return d.String()
			},
			wantStatus: signatures.Failed, wantReason: signatures.WrongSigner,
		},
		{
			name: "a keyless signature from another OIDC issuer fails as wrong-signer",
			cfg:  keyless,
			setup: func(t *testing.T) string {
				d := l.push("keyless/issuer:v1")
				must(t, l.keylessSigner(l.ca, identity, "https://accounts.example.com").Sign(d))
				return d.String()
			},
			wantStatus: signatures.Failed, wantReason: signatures.WrongSigner,
		},
		{
			name: "a keyless certificate from an untrusted CA fails as wrong-signer",
			cfg:  keyless,
			setup: func(t *testing.T) string {
				rogue, err := signtest.NewCA()
				must(t, err)
				d := l.push("keyless/rogue:v1")
				must(t, l.keylessSigner(rogue, identity, ghIssuer).Sign(d))
				return d.String()
			},
			wantStatus: signatures.Failed, wantReason: signatures.WrongSigner,
		},
		{
			name: "keyless provenance by the same identity passes",
			cfg: signatures.Config{Rules: []signatures.Rule{{
				Pattern: l.host + "/**", TrustedRoot: l.rootPEM,
				Keyless:      &signatures.Keyless{Identity: identity, Issuer: ghIssuer},
				Attestations: []signatures.Attestation{provenance},
			}}},
			setup: func(t *testing.T) string {
				d := l.push("keyless/prov:v1")
				s := l.keylessSigner(l.ca, identity, ghIssuer)
				must(t, s.Sign(d))
				must(t, s.Attest(d, slsa, signtest.SLSAProvenance(builder)))
				return d.String()
			},
			wantStatus: signatures.Verified,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := tt.setup(t)
			v := l.verifier(t, tt.cfg)
			out := v.Verify(context.Background(), []string{ref})
			if len(out) != 1 {
				t.Fatalf("got %d outcomes, want 1", len(out))
			}
			o := out[0]
			if got := o.Status(); got != tt.wantStatus {
				t.Fatalf("status = %s, want %s (failures %v, err %v)", got, tt.wantStatus, o.Failures, o.Err)
			}
			if tt.wantReason != "" {
				var reasons []signatures.Reason
				for _, f := range o.Failures {
					reasons = append(reasons, f.Reason)
				}
				if len(reasons) == 0 || reasons[0] != tt.wantReason {
					t.Errorf("reasons = %v, want %s first; failures: %v", reasons, tt.wantReason, o.Failures)
				}
			}
			if tt.wantErr != nil && !errors.Is(o.Err, tt.wantErr) {
				t.Errorf("err = %v, want %v", o.Err, tt.wantErr)
			}
			if tt.wantStatus == signatures.Verified || tt.wantStatus == signatures.Failed && tt.wantReason != signatures.NoPolicy {
				if !strings.HasPrefix(o.Digest, "sha256:") {
					t.Errorf("digest = %q, want the resolved sha256 digest", o.Digest)
				}
			}
			t.Logf("%s: %s %s %v %v", ref, o.Status(), o.By, o.Failures, o.Err)
		})
	}
}

func TestVerifyCachesByDigestAndPolicy(t *testing.T) {
	l := newLab(t)
	d := l.push("cache/app:v1")
	must(t, l.signer(l.good).Sign(d))
	var requests int
	counting := http.RoundTripper(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		requests++
		return l.srv.Client().Transport.RoundTrip(r)
	}))
	cache := signatures.NewCache()
	cfg := signatures.Config{Rules: []signatures.Rule{{Pattern: l.host + "/**", Keys: []string{l.goodPub}}}}
	v := l.verifier(t, cfg, signatures.WithCache(cache), signatures.WithTransport(counting))
	ref := l.host + "/cache/app:v1"

	first := v.Verify(context.Background(), []string{ref, ref})
	if first[0].Status() != signatures.Verified || first[0].Cached {
		t.Fatalf("first: %+v", first[0])
	}
	before := requests
	second := v.Verify(context.Background(), []string{ref})
	if !second[0].Cached || second[0].Status() != signatures.Verified {
		t.Fatalf("second was not served from the cache: %+v", second[0])
	}
	// The tag is still resolved (it may have moved); nothing else is fetched.
	if got := requests - before; got > 2 {
		t.Errorf("a cached verification made %d requests, want at most 2 (ping and HEAD)", got)
	}
	if cache.Len() != 1 {
		t.Errorf("cache holds %d results, want 1", cache.Len())
	}

	// Another policy is another key: not served from the cache.
	cfg.Rules[0].Keys = []string{l.badPub}
	other := l.verifier(t, cfg, signatures.WithCache(cache))
	if o := other.Verify(context.Background(), []string{ref})[0]; o.Cached || o.Status() != signatures.Failed {
		t.Errorf("under another policy: cached=%v status=%s, want a fresh failure", o.Cached, o.Status())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestVerifyUnreachableRegistry(t *testing.T) {
	l := newLab(t)
	v := l.verifier(t, signatures.Config{Rules: []signatures.Rule{{Pattern: "**", Keys: []string{l.goodPub}}}})
	dead := httptest.NewTLSServer(http.NotFoundHandler())
	host := strings.TrimPrefix(dead.URL, "https://")
	dead.Close()
	o := v.Verify(context.Background(), []string{host + "/app:v1"})[0]
	if !errors.Is(o.Err, signatures.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", o.Err)
	}
}

func TestNewPolicyErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	notKey := filepath.Join(dir, "not.pub")
	must(t, os.WriteFile(notKey, []byte("hello"), 0o644))
	key, err := signtest.NewKey()
	must(t, err)
	pub := filepath.Join(dir, "good.pub")
	must(t, key.WritePublic(pub))
	ca, err := signtest.NewCA()
	must(t, err)
	rootPEM := filepath.Join(dir, "root.pem")
	must(t, os.WriteFile(rootPEM, ca.RootPEM(), 0o644))
	tests := []struct {
		name      string
		rule      signatures.Rule
		wantField string
		wantMsg   string
	}{
		{"a rule without a pattern is refused", signatures.Rule{Keys: []string{notKey}}, "pattern", "missing"},
		{"a rule without keys or identity is refused", signatures.Rule{Pattern: "x/*"}, "keys", "missing"},
		{"a missing key file is refused", signatures.Rule{Pattern: "x/*", Keys: []string{filepath.Join(dir, "nope.pub")}}, "keys[0]", "no such file"},
		{"a file that is not a public key is refused", signatures.Rule{Pattern: "x/*", Keys: []string{notKey}}, "keys[0]", "not a PEM public key"},
		{"a KMS key is refused with a workaround", signatures.Rule{Pattern: "x/*", Keys: []string{"awskms:///arn:aws:kms:x"}}, "keys[0]", "cosign public-key"},
		{"keyless without a trusted root is refused", signatures.Rule{Pattern: "x/*", Keyless: &signatures.Keyless{Identity: "a", Issuer: "b"}}, "trusted_root", "offline"},
		{"keyless without an issuer is refused", signatures.Rule{Pattern: "x/*", Keyless: &signatures.Keyless{Identity: "a"}}, "keyless.issuer", "missing"},
		{"a bad identity expression is refused", signatures.Rule{Pattern: "x/*", Keyless: &signatures.Keyless{IdentityRegexp: "(", Issuer: "b"}}, "keyless.identity_regexp", "missing closing"},
		{"a trusted root without certificates is refused", signatures.Rule{Pattern: "x/*", Keyless: &signatures.Keyless{Identity: "a", Issuer: "b"}, TrustedRoot: notKey}, "trusted_root", "no PEM certificates"},
		{"tlog with PEM roots is refused: they carry no log keys", signatures.Rule{Pattern: "x/*", TLog: true, Keyless: &signatures.Keyless{Identity: "a", Issuer: "b"}, TrustedRoot: rootPEM}, "tlog", "trusted_root.json"},
		{"keys and keyless in one rule are refused", signatures.Rule{Pattern: "x/*", Keys: []string{pub}, Keyless: &signatures.Keyless{Identity: "a", Issuer: "b"}, TrustedRoot: rootPEM}, "keyless", "not both"},
		{"an attestation without a predicate type is refused", signatures.Rule{Pattern: "x/*", Keys: []string{pub}, Attestations: []signatures.Attestation{{BuilderID: "x"}}}, "attestations[0].predicate_type", "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := signatures.NewPolicy(signatures.Config{Rules: []signatures.Rule{tt.rule}})
			var ce *signatures.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			if ce.Field != tt.wantField || !strings.Contains(ce.Err.Error(), tt.wantMsg) {
				t.Errorf("got %s: %v; want field %s and a message containing %q", ce.Field, ce.Err, tt.wantField, tt.wantMsg)
			}
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, ref string
		want         bool
	}{
		{"ghcr.io/acme/*", "ghcr.io/acme/api:v1", true},
		{"ghcr.io/acme/*", "ghcr.io/acme/team/api:v1", false},
		{"ghcr.io/acme/**", "ghcr.io/acme/team/api:v1", true},
		{"ghcr.io/acme/api", "ghcr.io/acme/api@sha256:0123456789012345678901234567890123456789012345678901234567890123", true},
		{"docker.io/library/*", "nginx:1.27", true},
		{"nginx*", "nginx:1.27", true},
		{"ghcr.io/acme/ap?", "ghcr.io/acme/api:v1", true},
		{"ghcr.io/other/*", "ghcr.io/acme/api:v1", false},
	}
	for _, tt := range tests {
		p, err := signatures.NewPolicy(signatures.Config{Rules: []signatures.Rule{{Pattern: tt.pattern, Skip: true}}})
		must(t, err)
		v := signatures.NewVerifier(p)
		o := v.Verify(context.Background(), []string{tt.ref})[0]
		if got := o.Rule == 0; got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pattern, tt.ref, got, tt.want)
		}
	}
}

package fastpath

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/fastpath/secrets"
	"github.com/sluice-ci/sluice/fastpath/signatures"
	"github.com/sluice-ci/sluice/gate"
)

// Values of the signatures control's unmatched option.
const (
	// UnmatchedFail makes an image no rule matches a no-policy finding.
	UnmatchedFail = "fail"
	// UnmatchedSkip lets it pass unverified, listed as skipped.
	UnmatchedSkip = "skip"
)

// maxManifestSize is the largest YAML file searched for images.
const maxManifestSize = 4 << 20

// SignaturesOptions are the signatures control's keys in the policy.
type SignaturesOptions struct {
	// Refs are images verified on every check, beside --image flags and
	// the images of manifests in the change.
	Refs []string `yaml:"refs"`
	// Manifests: look for images in the change's Kubernetes YAML.
	Manifests bool `yaml:"manifests"`
	// RequireDigest makes a reference by tag alone an unpinned finding.
	RequireDigest bool `yaml:"require_digest"`
	// Unmatched is what happens to an image no rule matches: fail or skip.
	Unmatched string `yaml:"unmatched"`
	// Concurrency is how many images are verified side by side.
	Concurrency int `yaml:"concurrency"`
	// Images are the verification rules, tried in order; the first whose
	// pattern matches an image applies.
	Images []SignaturesRule `yaml:"images"`
}

// SignaturesRule says how images matching a pattern are verified.
type SignaturesRule struct {
	Pattern string `yaml:"pattern"`
	// Skip exempts matching images.
	Skip bool `yaml:"skip"`
	// Key is a PEM public key file; Keys several (any one suffices).
	Key  string   `yaml:"key"`
	Keys []string `yaml:"keys"`
	// Keyless names the certificate identity instead.
	Keyless *SignaturesKeyless `yaml:"keyless"`
	// TrustedRoot is PEM CA certificates or a Sigstore trusted_root.json.
	TrustedRoot string `yaml:"trusted_root"`
	// TLog requires a Rekor bundle on each signature, verified offline
	// (needs trusted_root.json). Off by default: see docs/signatures.md.
	TLog bool `yaml:"tlog"`
	// SCT requires an embedded certificate transparency timestamp
	// (keyless; needs trusted_root.json).
	SCT                 bool                    `yaml:"sct"`
	Attestations        []SignaturesAttestation `yaml:"attestations"`
	SignatureRepository string                  `yaml:"signature_repository"`
}

// SignaturesKeyless is a certificate identity and OIDC issuer, each exact
// or a regular expression.
type SignaturesKeyless struct {
	Identity       string `yaml:"identity"`
	IdentityRegexp string `yaml:"identity_regexp"`
	Issuer         string `yaml:"issuer"`
	IssuerRegexp   string `yaml:"issuer_regexp"`
}

// SignaturesAttestation is a required attestation.
type SignaturesAttestation struct {
	PredicateType string            `yaml:"predicate_type"`
	BuilderID     string            `yaml:"builder_id"`
	Fields        map[string]string `yaml:"fields"`
}

func newSignaturesOptions() *SignaturesOptions {
	return &SignaturesOptions{Manifests: true, Unmatched: UnmatchedFail, Concurrency: signatures.DefaultConcurrency}
}

// SignaturesSpec describes the signatures control: off until the policy
// enables it (it needs rules to mean anything), fast, 10s, failing closed
// on overrun and on error (an image that could not be verified does not
// ship unless the policy says so). Results are cached for the life of the
// process, shared by every gate built from this spec.
func SignaturesSpec() gate.Spec {
	return signaturesSpec()
}

func signaturesSpec(extra ...signatures.Option) gate.Spec {
	cache := signatures.NewCache()
	return gate.Spec{
		Name:           "signatures",
		Placement:      gate.Fast,
		Budget:         budgets.Budget{Time: 10 * time.Second, OnOverrun: budgets.FailClosed, OnError: budgets.FailClosed},
		Enabled:        false,
		Kind:           "signatures",
		VerifiesImages: true,
		NewOptions:     func() any { return newSignaturesOptions() },
		Build: func(opts any, env gate.Env) (gate.Control, error) {
			return NewSignatures(*opts.(*SignaturesOptions), env, append([]signatures.Option{signatures.WithCache(cache)}, extra...)...)
		},
		Subjects: func(ch *gate.Change) []string {
			var out []string
			for _, im := range ch.Images {
				out = append(out, "image:"+im)
			}
			if len(out) == 0 {
				out = append(out, ch.Subject())
			}
			return out
		},
	}
}

// Signatures is the signatures control.
type Signatures struct {
	opts     SignaturesOptions
	verifier *signatures.Verifier
}

// NewSignatures compiles the rules (reading keys and roots, relative to
// the policy's directory) and returns the control.
func NewSignatures(o SignaturesOptions, env gate.Env, vopts ...signatures.Option) (*Signatures, error) {
	if o.Unmatched != UnmatchedFail && o.Unmatched != UnmatchedSkip {
		return nil, &gate.FieldError{Field: "unmatched", Err: fmt.Errorf("unknown value %q (want %s or %s)", o.Unmatched, UnmatchedFail, UnmatchedSkip)}
	}
	if o.Concurrency <= 0 {
		return nil, &gate.FieldError{Field: "concurrency", Err: errors.New("must be more than zero")}
	}
	for i, r := range o.Refs {
		if _, err := signatures.ParseReference(r); err != nil {
			return nil, &gate.FieldError{Field: fmt.Sprintf("refs[%d]", i), Err: err}
		}
	}
	cfg := signatures.Config{RequireDigest: o.RequireDigest, SkipUnmatched: o.Unmatched == UnmatchedSkip}
	for _, r := range o.Images {
		keys := slices.Clone(r.Keys)
		if r.Key != "" {
			keys = append([]string{r.Key}, keys...)
		}
		for j, k := range keys {
			if !strings.Contains(k, "://") && !strings.HasPrefix(k, "pkcs11:") {
				keys[j] = env.Resolve(k)
			}
		}
		rule := signatures.Rule{
			Pattern: r.Pattern, Skip: r.Skip, Keys: keys, TrustedRoot: env.Resolve(r.TrustedRoot),
			TLog: r.TLog, SCT: r.SCT, SignatureRepository: r.SignatureRepository,
		}
		if k := r.Keyless; k != nil {
			rule.Keyless = &signatures.Keyless{Identity: k.Identity, IdentityRegexp: k.IdentityRegexp, Issuer: k.Issuer, IssuerRegexp: k.IssuerRegexp}
		}
		for _, a := range r.Attestations {
			rule.Attestations = append(rule.Attestations, signatures.Attestation{PredicateType: a.PredicateType, BuilderID: a.BuilderID, Fields: a.Fields})
		}
		cfg.Rules = append(cfg.Rules, rule)
	}
	p, err := signatures.NewPolicy(cfg)
	if err != nil {
		var ce *signatures.ConfigError
		if errors.As(err, &ce) {
			return nil, &gate.FieldError{Field: fmt.Sprintf("images[%d].%s", ce.Rule, optionField(ce.Field, o.Images[ce.Rule])), Err: ce.Err}
		}
		return nil, err
	}
	vopts = append([]signatures.Option{signatures.WithConcurrency(o.Concurrency)}, vopts...)
	return &Signatures{opts: o, verifier: signatures.NewVerifier(p, vopts...)}, nil
}

// optionField maps the signatures package's "keys[j]" (key and keys
// merged) back to the option the user wrote.
func optionField(field string, r SignaturesRule) string {
	rest, ok := strings.CutPrefix(field, "keys[")
	if !ok || r.Key == "" {
		return field
	}
	j, err := strconv.Atoi(strings.TrimSuffix(rest, "]"))
	if err != nil {
		return field
	}
	if j == 0 {
		return "key"
	}
	return fmt.Sprintf("keys[%d]", j-1)
}

// imageSource is one place an image reference came from.
type imageSource struct {
	from     string // "--image", "policy refs" or "manifest"
	file     *gate.File
	img      signatures.Image
	inChange bool
}

// Run verifies every image the change releases. If any image could not be
// checked (registry unreachable, tag not found, budget spent) the whole
// control errors, to be resolved by on_error: the simple, safe choice. The
// result still carries every image's artifact and every finding.
func (s *Signatures) Run(ctx context.Context, ch *gate.Change) (gate.Result, error) {
	var res gate.Result
	sources := map[string][]imageSource{}
	var order []string
	add := func(ref string, src imageSource) {
		if _, ok := sources[ref]; !ok {
			order = append(order, ref)
		}
		sources[ref] = append(sources[ref], src)
	}
	var badRefs []error
	for _, r := range ch.Images {
		if _, err := signatures.ParseReference(r); err != nil {
			badRefs = append(badRefs, fmt.Errorf("--image %q: %w", r, err))
			res.Artifacts = append(res.Artifacts, gate.Artifact{Ref: r, Status: "error", Detail: err.Error()})
			continue
		}
		add(r, imageSource{from: "--image", inChange: true})
	}
	for _, r := range s.opts.Refs {
		add(r, imageSource{from: "the policy's refs", inChange: true})
	}
	if s.opts.Manifests {
		if err := s.manifestImages(ctx, ch, &res, add); err != nil {
			return res, err
		}
	}
	outcomes := s.verifier.Verify(ctx, order)
	var errs []error
	for _, o := range outcomes {
		st := o.Status()
		if st == signatures.Exempt {
			why := "no images rule matches it (unmatched: skip)"
			if o.Rule >= 0 {
				why = fmt.Sprintf("exempted by images[%d] (skip: true)", o.Rule)
			}
			res.Skipped = append(res.Skipped, gate.Skipped{File: o.Ref, Reason: why})
			continue
		}
		a := gate.Artifact{Ref: o.Ref, Digest: o.Digest, Status: string(st), Detail: o.By}
		switch st {
		case signatures.Errored:
			a.Detail = o.Err.Error()
			errs = append(errs, o.Err)
		case signatures.Failed:
			var reasons []string
			for _, f := range o.Failures {
				reasons = append(reasons, f.Error())
			}
			a.Detail = strings.Join(reasons, "; ")
			for _, src := range sources[o.Ref] {
				for _, f := range o.Failures {
					res.Findings = append(res.Findings, finding(o, f, src))
				}
			}
		}
		if o.Cached && a.Detail != "" {
			a.Detail += " (cached)"
		}
		res.Artifacts = append(res.Artifacts, a)
	}
	slices.SortFunc(res.Artifacts, func(a, b gate.Artifact) int { return strings.Compare(a.Ref, b.Ref) })
	slices.SortFunc(res.Skipped, func(a, b gate.Skipped) int { return strings.Compare(a.File, b.File) })
	errs = append(badRefs, errs...)
	if len(errs) > 0 {
		if err := ctx.Err(); err != nil {
			return res, context.Cause(ctx)
		}
		return res, fmt.Errorf("%s could not be verified: %w", count(len(errs), "image"), errors.Join(errs...))
	}
	return res, nil
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func (s *Signatures) manifestImages(ctx context.Context, ch *gate.Change, res *gate.Result, add func(string, imageSource)) error {
	var files []*gate.File
	for _, f := range ch.Files {
		if !signatures.IsManifest(f.Path) {
			continue
		}
		if f.Size > maxManifestSize {
			res.Skipped = append(res.Skipped, gate.Skipped{File: f.Path, Reason: secrets.TooLarge(f.Size, maxManifestSize) + "; images in it were not checked"})
			continue
		}
		files = append(files, f)
	}
	return ch.ReadFiles(ctx, files, func(f *gate.File, content []byte) error {
		imgs, probs := signatures.ManifestImages(f.Path, content)
		for _, p := range probs {
			res.Notes = append(res.Notes, p.String())
		}
		for _, im := range imgs {
			if _, err := signatures.ParseReference(im.Ref); err != nil {
				res.Notes = append(res.Notes, fmt.Sprintf("%s:%d: %s: image %q is not a valid reference; not checked", im.File, im.Line, im.Workload, im.Ref))
				continue
			}
			add(im.Ref, imageSource{from: "manifest", file: f, img: im, inChange: f.IsAdded(im.Line)})
		}
		return nil
	})
}

func finding(o signatures.Outcome, f *signatures.Failure, src imageSource) gate.Finding {
	subject := o.Ref
	if o.Digest != "" && !strings.Contains(o.Ref, "@") {
		subject += " (" + o.Digest + ")"
	}
	msg := fmt.Sprintf("image %s: %s: %s", subject, f.Detail, f.Reason.Advice())
	fd := gate.Finding{Rule: string(f.Reason), Severity: f.Reason.Severity(), Message: msg, InChange: src.inChange}
	if src.file != nil {
		fd.File, fd.Line, fd.Column = src.img.File, src.img.Line, src.img.Column
		fd.Message = src.img.Workload + ": " + msg
	} else {
		fd.Message += " (from " + src.from + ")"
	}
	sum := sha256.Sum256([]byte(string(f.Reason) + "\x00" + o.Ref + "\x00" + o.Digest + "\x00" + fd.File))
	fd.Fingerprint = hex.EncodeToString(sum[:8])
	return fd
}

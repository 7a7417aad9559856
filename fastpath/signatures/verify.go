package signatures

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"github.com/sourcegraph/conc/pool"
)

// DefaultConcurrency is how many images a Verifier checks side by side
// unless told otherwise.
const DefaultConcurrency = 8

// Verifier checks images against a Policy. It is safe for concurrent use.
type Verifier struct {
	policy      *Policy
	cache       *Cache
	keychain    authn.Keychain
	transport   http.RoundTripper
	concurrency int
	nameOpts    []name.Option
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithCache shares a cache between verifiers (the default is a cache of the
// verifier's own).
func WithCache(c *Cache) Option { return func(v *Verifier) { v.cache = c } }

// WithKeychain sets where registry credentials come from; the default is
// authn.DefaultKeychain (docker config and credential helpers).
func WithKeychain(k authn.Keychain) Option { return func(v *Verifier) { v.keychain = k } }

// WithTransport sets the HTTP transport for registry calls; the default is
// remote.DefaultTransport.
func WithTransport(t http.RoundTripper) Option { return func(v *Verifier) { v.transport = t } }

// WithConcurrency sets how many images are verified side by side; the
// default is DefaultConcurrency.
func WithConcurrency(n int) Option {
	return func(v *Verifier) {
		if n > 0 {
			v.concurrency = n
		}
	}
}

// WithInsecureRegistries lets references name registries that speak plain
// HTTP (besides localhost, which always may). For tests and labs.
func WithInsecureRegistries() Option {
	return func(v *Verifier) { v.nameOpts = append(v.nameOpts, name.Insecure) }
}

// NewVerifier returns a Verifier for the policy.
func NewVerifier(p *Policy, opts ...Option) *Verifier {
	v := &Verifier{policy: p, keychain: authn.DefaultKeychain, transport: remote.DefaultTransport, concurrency: DefaultConcurrency}
	for _, o := range opts {
		o(v)
	}
	if v.cache == nil {
		v.cache = NewCache()
	}
	return v
}

// Status is an Outcome's conclusion.
type Status string

const (
	Verified Status = "verified"
	Failed   Status = "failed"
	Errored  Status = "error"
	// Exempt: a rule with skip: true (or skip_unmatched) let it through
	// unverified.
	Exempt Status = "skipped"
)

// Outcome is what verifying one reference concluded.
type Outcome struct {
	// Ref is the reference as given.
	Ref string
	// Digest is the digest it resolved to ("" when it did not resolve).
	Digest string
	// Rule is the index of the policy rule that applied, -1 for none.
	Rule int
	// Failures are why it must not be released (empty when verified).
	Failures []*Failure
	// Err is an operational error: it could not be checked.
	Err error
	// By says what verified it.
	By string
	// Cached is true when the result came from the cache.
	Cached bool
}

// Status sums the outcome up.
func (o Outcome) Status() Status {
	switch {
	case o.Err != nil:
		return Errored
	case len(o.Failures) > 0:
		return Failed
	case o.By == "":
		return Exempt
	}
	return Verified
}

// ParseReference parses an image reference as the verifier would.
func (v *Verifier) ParseReference(ref string) (name.Reference, error) {
	return name.ParseReference(ref, v.nameOpts...)
}

// Verify checks each reference, side by side, and returns one outcome per
// reference in the order given. Duplicates are checked once. It honours
// ctx: references not finished when it is done carry its cause as Err.
func (v *Verifier) Verify(ctx context.Context, refs []string) []Outcome {
	puller, err := remote.NewPuller(v.remoteOpts(ctx)...)
	out := make([]Outcome, len(refs))
	if err != nil {
		for i, r := range refs {
			out[i] = Outcome{Ref: r, Rule: -1, Err: err}
		}
		return out
	}
	uniq := slices.Compact(slices.Sorted(slices.Values(refs)))
	results := make(map[string]*Outcome, len(uniq))
	p := pool.New().WithContext(ctx).WithMaxGoroutines(v.concurrency)
	for _, r := range uniq {
		o := &Outcome{Ref: r, Rule: -1}
		results[r] = o
		p.Go(func(ctx context.Context) error {
			*o = v.verifyOne(ctx, puller, r)
			return nil
		})
	}
	_ = p.Wait()
	for i, r := range refs {
		out[i] = *results[r]
	}
	return out
}

func (v *Verifier) remoteOpts(ctx context.Context, more ...remote.Option) []remote.Option {
	return append([]remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(v.keychain),
		remote.WithTransport(v.transport),
		// The fast path has a budget: retry transient errors briefly.
		remote.WithRetryBackoff(remote.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 2}),
	}, more...)
}

func (v *Verifier) verifyOne(ctx context.Context, puller *remote.Puller, written string) (o Outcome) {
	o = Outcome{Ref: written, Rule: -1}
	ref, err := v.ParseReference(written)
	if err != nil {
		o.Err = fmt.Errorf("parsing reference %q: %w", written, err)
		return o
	}
	r := v.policy.match(ref, written)
	if r == nil {
		if v.policy.skipUnmatched {
			return o
		}
		o.Failures = append(o.Failures, failf(NoPolicy, "no rule of the signatures policy matches %s", written))
		return o
	}
	o.Rule = r.index
	if r.skip {
		return o
	}
	dig, pinned := ref.(name.Digest)
	if !pinned {
		desc, err := puller.Head(ctx, ref)
		if err != nil && !isNotFound(err) && ctx.Err() == nil {
			// Some registries answer HEAD badly; GET is the fallback.
			var d *remote.Descriptor
			if d, err = puller.Get(ctx, ref); err == nil {
				desc = &d.Descriptor
			}
		}
		if err != nil {
			o.Err = registryError(ctx, written, err)
			return o
		}
		dig = ref.Context().Digest(desc.Digest.String())
	}
	o.Digest = dig.DigestStr()
	if v.policy.requireDigest && !pinned {
		o.Failures = append(o.Failures, failf(Unpinned, "%s names a tag, not a digest; pin it as %s@%s", written, written, o.Digest))
	}
	key := dig.Context().Name() + "@" + o.Digest + "#" + r.hash
	res, hit, err := v.cache.do(ctx, key, func() (result, error) {
		return v.check(ctx, puller, r, dig)
	})
	if err != nil {
		o.Err = registryError(ctx, written, err)
		return o
	}
	o.Cached = hit
	o.Failures = append(o.Failures, res.failures...)
	o.By = res.by
	return o
}

// check verifies one digest under one rule. A returned error is
// operational; failures are in the result.
func (v *Verifier) check(ctx context.Context, puller *remote.Puller, r *rule, dig name.Digest) (result, error) {
	h, err := v1.NewHash(dig.DigestStr())
	if err != nil {
		return result{}, err
	}
	ropts := []ociremote.Option{ociremote.WithRemoteOptions(v.remoteOpts(ctx, remote.Reuse(puller))...)}
	if r.sigRepo != nil {
		ropts = append(ropts, ociremote.WithTargetRepository(*r.sigRepo))
	}
	by, fail, err := v.checkSignatures(ctx, r, dig, h, ropts)
	if err != nil || fail != nil {
		return result{failures: nonNil(fail), by: ""}, err
	}
	if len(r.atts) > 0 {
		attBy, fails, err := v.checkAttestations(ctx, r, dig, h, ropts)
		if err != nil {
			return result{}, err
		}
		if len(fails) > 0 {
			return result{failures: fails}, nil
		}
		by += "; " + attBy
	}
	return result{by: by}, nil
}

func nonNil(f *Failure) []*Failure {
	if f == nil {
		return nil
	}
	return []*Failure{f}
}

// fetch lists the signatures (or attestations) stored under tag, with
// their payloads read, so that verification needs no more network.
func fetch(tag name.Tag, ropts []ociremote.Option) ([]oci.Signature, error) {
	sigs, err := ociremote.Signatures(tag, ropts...)
	if err != nil {
		return nil, err
	}
	list, err := sigs.Get()
	if err != nil {
		return nil, err
	}
	out := make([]oci.Signature, 0, len(list))
	for _, s := range list {
		c, err := static.Copy(s)
		if err != nil {
			return nil, fmt.Errorf("reading signature: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}

func (v *Verifier) checkSignatures(ctx context.Context, r *rule, dig name.Digest, h v1.Hash, ropts []ociremote.Option) (string, *Failure, error) {
	tag, err := ociremote.SignatureTag(dig, ropts...)
	if err != nil {
		return "", nil, err
	}
	sigs, err := fetch(tag, ropts)
	if err != nil {
		return "", nil, err
	}
	if len(sigs) == 0 {
		return "", failf(Unsigned, "no cosign signature for %s (looked for %s)", dig.DigestStr(), tag.Name()), nil
	}
	opts, who := r.checkOpts()
	var tampered *Failure
	var lastErr error
	for _, sig := range sigs {
		for i, base := range opts {
			if err := ctx.Err(); err != nil {
				return "", nil, context.Cause(ctx)
			}
			co := *base
			reached := false
			co.ClaimVerifier = func(sig oci.Signature, h v1.Hash, ann map[string]any) error {
				reached = true
				return cosign.SimpleClaimVerifier(sig, h, ann)
			}
			_, err := cosign.VerifyImageSignature(ctx, sig, h, &co)
			if err == nil {
				return "signed by " + who[i], nil, nil
			}
			if reached && tampered == nil {
				tampered = failf(Tampered, "a signature by %s vouches for %s, not %s", who[i], signedDigest(sig), dig.DigestStr())
			}
			lastErr = err
		}
	}
	if tampered != nil {
		return "", tampered, nil
	}
	return "", failf(WrongSigner, "%s, none verifies with %s (%s)", count(len(sigs), "signature"), r.signers(), shortErr(lastErr)), nil
}

func signedDigest(sig oci.Signature) string {
	p, err := sig.Payload()
	if err != nil {
		return "another digest"
	}
	var ss payload.SimpleContainerImage
	if json.Unmarshal(p, &ss) != nil || ss.Critical.Image.DockerManifestDigest == "" {
		return "another digest"
	}
	return ss.Critical.Image.DockerManifestDigest
}

// sigList is a fixed list of signatures, for cosign calls that want
// oci.Signatures.
type sigList struct {
	oci.Signatures
	list []oci.Signature
}

func (s sigList) Get() ([]oci.Signature, error) { return s.list, nil }

func (v *Verifier) checkAttestations(ctx context.Context, r *rule, dig name.Digest, h v1.Hash, ropts []ociremote.Option) (string, []*Failure, error) {
	tag, err := ociremote.AttestationTag(dig, ropts...)
	if err != nil {
		return "", nil, err
	}
	atts, err := fetch(tag, ropts)
	if err != nil {
		return "", nil, err
	}
	opts, _ := r.checkOpts()
	var verified []statement
	var unverified int
	var tampered *Failure
	for _, att := range atts {
		ok := false
		for _, base := range opts {
			if err := ctx.Err(); err != nil {
				return "", nil, context.Cause(ctx)
			}
			co := *base
			reached := false
			co.ClaimVerifier = func(sig oci.Signature, h v1.Hash, ann map[string]any) error {
				reached = true
				return cosign.IntotoSubjectClaimVerifier(sig, h, ann)
			}
			if _, _, err := cosign.VerifyImageAttestation(ctx, sigList{list: []oci.Signature{att}}, h, &co); err == nil {
				ok = true
				break
			}
			if reached && tampered == nil {
				tampered = failf(Tampered, "an attestation signed by %s is about another image, not %s", r.signers(), dig.DigestStr())
			}
		}
		if !ok {
			unverified++
			continue
		}
		st, err := decodeStatement(att)
		if err != nil {
			unverified++
			continue
		}
		verified = append(verified, st)
	}
	var fails []*Failure
	var by []string
	for _, req := range r.atts {
		var ofType []statement
		for _, st := range verified {
			if st.PredicateType == req.PredicateType {
				ofType = append(ofType, st)
			}
		}
		if len(ofType) == 0 {
			if tampered != nil {
				fails = append(fails, tampered)
				continue
			}
			detail := fmt.Sprintf("no %s attestation signed by %s", req.PredicateType, r.signers())
			switch {
			case len(atts) == 0:
				detail += fmt.Sprintf(" (no attestations at all under %s)", tag.Name())
			case unverified > 0:
				detail += fmt.Sprintf(" (%s not signed by it)", count(unverified, "attestation"))
			default:
				detail += fmt.Sprintf(" (found: %s)", strings.Join(types(verified), ", "))
			}
			fails = append(fails, &Failure{Reason: AttestationMissing, Detail: detail})
			continue
		}
		var mismatch string
		matched := false
		for _, st := range ofType {
			if m := st.mismatch(req); m == "" {
				matched = true
				break
			} else if mismatch == "" {
				mismatch = m
			}
		}
		if !matched {
			fails = append(fails, failf(AttestationMismatch, "%s attestation: %s", req.PredicateType, mismatch))
			continue
		}
		by = append(by, "attestation "+req.PredicateType)
	}
	return strings.Join(by, ", "), fails, nil
}

func types(sts []statement) []string {
	var out []string
	for _, st := range sts {
		if !slices.Contains(out, st.PredicateType) {
			out = append(out, st.PredicateType)
		}
	}
	return out
}

func decodeStatement(att oci.Signature) (statement, error) {
	p, err := att.Payload()
	if err != nil {
		return statement{}, err
	}
	var env struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(p, &env); err != nil {
		return statement{}, err
	}
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return statement{}, err
	}
	var st statement
	if err := json.Unmarshal(raw, &st); err != nil {
		return statement{}, err
	}
	st.raw = raw
	return st, nil
}

// mismatch says how the statement fails the requirement's fields, or "".
func (st statement) mismatch(req Attestation) string {
	var doc map[string]any
	if err := json.Unmarshal(st.raw, &doc); err != nil {
		return "the statement is not a JSON object"
	}
	if req.BuilderID != "" {
		got, ok := lookup(doc, "predicate.runDetails.builder.id")
		if !ok {
			got, ok = lookup(doc, "predicate.builder.id")
		}
		switch {
		case !ok:
			return fmt.Sprintf("no builder id in it; the policy wants %q", req.BuilderID)
		case got != req.BuilderID:
			return fmt.Sprintf("builder id is %q; the policy wants %q", got, req.BuilderID)
		}
	}
	for _, k := range sortedKeys(req.Fields) {
		got, ok := lookup(doc, k)
		switch {
		case !ok:
			return fmt.Sprintf("no %s in it; the policy wants %q", k, req.Fields[k])
		case got != req.Fields[k]:
			return fmt.Sprintf("%s is %q; the policy wants %q", k, got, req.Fields[k])
		}
	}
	return ""
}

// lookup follows a dotted path through JSON objects to a scalar.
func lookup(doc map[string]any, path string) (string, bool) {
	var cur any = doc
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		if cur, ok = m[part]; !ok {
			return "", false
		}
	}
	switch x := cur.(type) {
	case string:
		return x, true
	case nil, map[string]any, []any:
		return "", false
	default:
		return fmt.Sprint(x), true
	}
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func shortErr(err error) string {
	if err == nil {
		return "no detail"
	}
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	// cosign's advice about its TUF root does not apply to sluice.
	s, _, _ = strings.Cut(s, ". Check your TUF root")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func isNotFound(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return true
		}
		for _, d := range te.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
				return true
			}
		}
	}
	return false
}

// registryError classifies an operational error about one image.
func registryError(ctx context.Context, ref string, err error) error {
	if ctx.Err() != nil {
		// The budget ran out (or the run was cancelled): say so, not
		// "unreachable".
		return fmt.Errorf("%s: %w", ref, context.Cause(ctx))
	}
	var re *RegistryError
	if errors.As(err, &re) {
		return err
	}
	kind := ErrUnreachable
	var te *transport.Error
	var ne net.Error
	switch {
	case isNotFound(err):
		kind = ErrNotFound
	case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		kind = ErrDenied
	case errors.As(err, &te):
	case errors.As(err, &ne):
	}
	return &RegistryError{Ref: ref, Kind: kind, Err: err}
}

// ParseReference parses an image reference as written in a manifest, a
// flag or the policy (tag, digest, or both; Docker Hub short names).
func ParseReference(ref string) (name.Reference, error) {
	return name.ParseReference(ref)
}

package signatures

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Config is what the policy says about images, as plain data. File paths
// are as the caller resolved them.
type Config struct {
	// Rules are tried in order; the first whose pattern matches an image
	// decides how it is verified.
	Rules []Rule
	// RequireDigest makes a reference without a digest a finding.
	RequireDigest bool
	// SkipUnmatched lets an image that no rule matches pass unverified
	// (reported as skipped); by default it is a NoPolicy failure.
	SkipUnmatched bool
}

// Rule says how images whose reference matches Pattern are verified.
type Rule struct {
	// Pattern is a glob over the reference: * matches within one path
	// segment, ** across segments, ? one character. It is matched against
	// the reference as written and as normalised (docker.io/library/x).
	Pattern string
	// Skip exempts matching images from verification.
	Skip bool
	// Keys are PEM public key files; a signature by any of them counts.
	Keys []string
	// Keyless verifies a certificate identity instead of keys.
	Keyless *Keyless
	// TrustedRoot is a file: either PEM CA certificates (roots and
	// intermediates) for keyless verification, or a Sigstore
	// trusted_root.json, which also carries the Rekor and CT log keys that
	// TLog and SCT need. Required for keyless, and for TLog.
	TrustedRoot string
	// TLog requires each signature to carry a Rekor bundle (an inclusion
	// promise) verified offline against the trusted root's log keys.
	TLog bool
	// SCT requires the keyless certificate to carry an embedded certificate
	// transparency timestamp, verified offline (needs trusted_root.json).
	SCT bool
	// Attestations that must be present, signed by the same keys or
	// identity.
	Attestations []Attestation
	// SignatureRepository, when set, is where signatures and attestations
	// are stored instead of beside the image (cosign's COSIGN_REPOSITORY).
	SignatureRepository string
}

// Keyless names the certificate identity that must have signed: the
// subject alternative name and the OIDC issuer, each exact or a regular
// expression (one of each).
type Keyless struct {
	Identity       string
	IdentityRegexp string
	Issuer         string
	IssuerRegexp   string
}

// Attestation is a required in-toto attestation.
type Attestation struct {
	// PredicateType, e.g. https://slsa.dev/provenance/v1.
	PredicateType string
	// BuilderID, when set, must equal the SLSA builder id
	// (predicate.runDetails.builder.id, or predicate.builder.id in SLSA
	// v0.2).
	BuilderID string
	// Fields maps dotted paths in the statement (predicate.buildDefinition.
	// buildType) to the value they must have.
	Fields map[string]string
}

// ConfigError is an error about one option of one rule.
type ConfigError struct {
	// Rule is the index in Config.Rules.
	Rule int
	// Field is the rule's option, e.g. "keys[1]" or "keyless.issuer_regexp".
	Field string
	Err   error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("rule %d: %s: %v", e.Rule, e.Field, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Policy is a compiled Config: keys loaded, roots parsed, expressions
// checked. It is immutable and safe for concurrent use.
type Policy struct {
	rules         []*rule
	requireDigest bool
	skipUnmatched bool
}

type rule struct {
	index   int
	pattern string
	skip    bool
	// verifiers are the public keys, with the file each came from.
	verifiers []keyVerifier
	keyless   *Keyless
	roots     *x509.CertPool
	inter     *x509.CertPool
	trusted   root.TrustedMaterial
	tlog, sct bool
	atts      []Attestation
	sigRepo   *name.Repository
	// hash identifies everything that decides a verdict under this rule
	// (key bytes, roots, identity, requirements): the cache key's half.
	hash string
}

type keyVerifier struct {
	file string
	v    signature.Verifier
}

// kmsSchemes are the key URI schemes cosign resolves through a KMS.
var kmsSchemes = []string{"awskms://", "gcpkms://", "azurekms://", "hashivault://", "k8s://", "gitlab://", "pkcs11:"}

// NewPolicy compiles a Config. Errors are *ConfigError.
func NewPolicy(c Config) (*Policy, error) {
	p := &Policy{requireDigest: c.RequireDigest, skipUnmatched: c.SkipUnmatched}
	for i, r := range c.Rules {
		cr, err := compileRule(i, r)
		if err != nil {
			return nil, err
		}
		p.rules = append(p.rules, cr)
	}
	return p, nil
}

func compileRule(i int, r Rule) (*rule, error) {
	bad := func(field string, format string, args ...any) error {
		return &ConfigError{Rule: i, Field: field, Err: fmt.Errorf(format, args...)}
	}
	if r.Pattern == "" {
		return nil, bad("pattern", "missing; want a glob over image references, e.g. ghcr.io/acme/*")
	}
	if err := checkGlob(r.Pattern); err != nil {
		return nil, bad("pattern", "%v", err)
	}
	cr := &rule{index: i, pattern: r.Pattern, skip: r.Skip, tlog: r.TLog, sct: r.SCT, atts: r.Attestations}
	h := sha256.New()
	fmt.Fprintf(h, "tlog=%v sct=%v sigrepo=%q\n", r.TLog, r.SCT, r.SignatureRepository)
	if r.Skip {
		if len(r.Keys) > 0 || r.Keyless != nil || len(r.Attestations) > 0 {
			return nil, bad("skip", "a rule with skip: true verifies nothing; remove its keys, keyless and attestations")
		}
		return cr, nil
	}
	switch {
	case len(r.Keys) == 0 && r.Keyless == nil:
		return nil, bad("keys", "missing; a rule needs keys (PEM public keys) or keyless (identity and issuer), or skip: true")
	case len(r.Keys) > 0 && r.Keyless != nil:
		return nil, bad("keyless", "give keys or keyless, not both, in one rule")
	}
	for j, k := range r.Keys {
		field := fmt.Sprintf("keys[%d]", j)
		for _, s := range kmsSchemes {
			if strings.HasPrefix(k, s) {
				return nil, bad(field, "KMS key %q is not supported by this build of sluice yet (the KMS clients are not linked, to keep startup lean); export the public key with `cosign public-key --key %s > key.pub` and name the file", k, k)
			}
		}
		data, err := os.ReadFile(k)
		if err != nil {
			return nil, bad(field, "reading public key: %v", unwrapPath(err))
		}
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
		if err != nil {
			return nil, bad(field, "%s is not a PEM public key: %v", k, err)
		}
		v, err := signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return nil, bad(field, "loading public key %s: %v", k, err)
		}
		der, _ := cryptoutils.MarshalPublicKeyToDER(pub)
		fmt.Fprintf(h, "key %x\n", sha256.Sum256(der))
		cr.verifiers = append(cr.verifiers, keyVerifier{file: k, v: v})
	}
	if kl := r.Keyless; kl != nil {
		switch {
		case kl.Identity == "" && kl.IdentityRegexp == "":
			return nil, bad("keyless.identity", "missing; want identity (exact) or identity_regexp")
		case kl.Identity != "" && kl.IdentityRegexp != "":
			return nil, bad("keyless.identity_regexp", "give identity or identity_regexp, not both")
		case kl.Issuer == "" && kl.IssuerRegexp == "":
			return nil, bad("keyless.issuer", "missing; want issuer (exact) or issuer_regexp")
		case kl.Issuer != "" && kl.IssuerRegexp != "":
			return nil, bad("keyless.issuer_regexp", "give issuer or issuer_regexp, not both")
		}
		if _, err := regexp.Compile(kl.IdentityRegexp); err != nil {
			return nil, bad("keyless.identity_regexp", "%v", err)
		}
		if _, err := regexp.Compile(kl.IssuerRegexp); err != nil {
			return nil, bad("keyless.issuer_regexp", "%v", err)
		}
		if r.TrustedRoot == "" {
			return nil, bad("trusted_root", "missing; keyless verification needs a trusted root file (PEM CA certificates or a Sigstore trusted_root.json) so that it runs offline")
		}
		fmt.Fprintf(h, "keyless %q %q %q %q\n", kl.Identity, kl.IdentityRegexp, kl.Issuer, kl.IssuerRegexp)
		k := *kl
		cr.keyless = &k
	}
	if r.TrustedRoot != "" {
		data, err := os.ReadFile(r.TrustedRoot)
		if err != nil {
			return nil, bad("trusted_root", "reading trusted root: %v", unwrapPath(err))
		}
		fmt.Fprintf(h, "root %x\n", sha256.Sum256(data))
		if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
			tr, err := root.NewTrustedRootFromJSON(data)
			if err != nil {
				return nil, bad("trusted_root", "%s is not a Sigstore trusted_root.json: %v", r.TrustedRoot, err)
			}
			cr.trusted = tr
		} else {
			cr.roots, cr.inter, err = parseCAs(data)
			if err != nil {
				return nil, bad("trusted_root", "%s: %v", r.TrustedRoot, err)
			}
		}
	}
	if (r.TLog || r.SCT) && cr.trusted == nil {
		field := "tlog"
		if !r.TLog {
			field = "sct"
		}
		return nil, bad(field, "checking the transparency log offline needs its public keys: set trusted_root to a Sigstore trusted_root.json (PEM CA certificates carry no log keys)")
	}
	if r.SCT && r.Keyless == nil {
		return nil, bad("sct", "applies to keyless verification only")
	}
	for j, a := range r.Attestations {
		field := fmt.Sprintf("attestations[%d]", j)
		if a.PredicateType == "" {
			return nil, bad(field+".predicate_type", "missing; want e.g. https://slsa.dev/provenance/v1")
		}
		fmt.Fprintf(h, "att %q %q\n", a.PredicateType, a.BuilderID)
		for _, k := range sortedKeys(a.Fields) {
			if k == "" {
				return nil, bad(field+".fields", "empty path")
			}
			fmt.Fprintf(h, "  %q=%q\n", k, a.Fields[k])
		}
	}
	if r.SignatureRepository != "" {
		repo, err := name.NewRepository(r.SignatureRepository)
		if err != nil {
			return nil, bad("signature_repository", "%v", err)
		}
		cr.sigRepo = &repo
	}
	cr.hash = hex.EncodeToString(h.Sum(nil))[:16]
	return cr, nil
}

// parseCAs splits PEM certificates into self-signed roots and
// intermediates.
func parseCAs(data []byte) (roots, inter *x509.CertPool, err error) {
	roots, inter = x509.NewCertPool(), x509.NewCertPool()
	var n, ni int
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing certificate %d: %w", n+1, err)
		}
		n++
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			roots.AddCert(c)
		} else {
			inter.AddCert(c)
			ni++
		}
	}
	if n == 0 {
		return nil, nil, errors.New("no PEM certificates in it; want the CA certificates (or a Sigstore trusted_root.json)")
	}
	if ni == 0 {
		// nil lets cosign take intermediates from the signature's chain,
		// which must still lead to one of the roots.
		inter = nil
	}
	return roots, inter, nil
}

// checkOpts are the cosign options for each way a signature may verify
// under the rule: one per key, or one for the identity. who describes each
// for messages.
func (r *rule) checkOpts() (opts []*cosign.CheckOpts, who []string) {
	base := cosign.CheckOpts{
		IgnoreTlog: !r.tlog,
		IgnoreSCT:  !r.sct,
		// Never ask Rekor online: a tlog check uses the bundle on the
		// signature, verified with the trusted root's keys.
		Offline:         true,
		TrustedMaterial: r.trusted,
		MaxWorkers:      1,
	}
	if r.keyless != nil {
		co := base
		co.RootCerts, co.IntermediateCerts = r.roots, r.inter
		co.Identities = []cosign.Identity{{
			Subject: r.keyless.Identity, SubjectRegExp: r.keyless.IdentityRegexp,
			Issuer: r.keyless.Issuer, IssuerRegExp: r.keyless.IssuerRegexp,
		}}
		return []*cosign.CheckOpts{&co}, []string{r.identityString()}
	}
	for _, k := range r.verifiers {
		co := base
		co.SigVerifier = k.v
		opts, who = append(opts, &co), append(who, "key "+k.file)
	}
	return opts, who
}

func (r *rule) identityString() string {
	id, iss := r.keyless.Identity, r.keyless.Issuer
	if id == "" {
		id = "~" + r.keyless.IdentityRegexp
	}
	if iss == "" {
		iss = "~" + r.keyless.IssuerRegexp
	}
	return fmt.Sprintf("identity %s from issuer %s", id, iss)
}

func (r *rule) signers() string {
	if r.keyless != nil {
		return r.identityString()
	}
	files := make([]string, len(r.verifiers))
	for i, k := range r.verifiers {
		files[i] = k.file
	}
	if len(files) == 1 {
		return "key " + files[0]
	}
	return "keys " + strings.Join(files, ", ")
}

// match returns the first rule whose pattern matches the reference, or nil.
func (p *Policy) match(ref name.Reference, written string) *rule {
	cands := candidates(ref, written)
	for _, r := range p.rules {
		for _, c := range cands {
			if globMatch(r.pattern, c) {
				return r
			}
		}
	}
	return nil
}

// candidates are the spellings of a reference a pattern is matched against:
// as written, the repository alone, and the repository with its tag or
// digest, with Docker Hub spelled docker.io.
func candidates(ref name.Reference, written string) []string {
	repo := ref.Context().Name()
	if rest, ok := strings.CutPrefix(repo, name.DefaultRegistry+"/"); ok {
		repo = "docker.io/" + rest
	}
	sep := ":"
	if _, ok := ref.(name.Digest); ok {
		sep = "@"
	}
	return []string{written, repo, repo + sep + ref.Identifier()}
}

func checkGlob(p string) error {
	if strings.Contains(p, "***") {
		return fmt.Errorf("bad pattern %q: use * within a path segment or ** across segments", p)
	}
	return nil
}

// globMatch matches s against a glob where * matches any run of characters
// but '/', ** any run at all, and ? one character but '/'.
func globMatch(p, s string) bool {
	for len(p) > 0 {
		switch {
		case strings.HasPrefix(p, "**"):
			rest := p[2:]
			for i := len(s); i >= 0; i-- {
				if globMatch(rest, s[i:]) {
					return true
				}
			}
			return false
		case p[0] == '*':
			rest := p[1:]
			for i := 0; i <= len(s); i++ {
				if globMatch(rest, s[i:]) {
					return true
				}
				if i < len(s) && s[i] == '/' {
					return false
				}
			}
			return false
		case p[0] == '?':
			if len(s) == 0 || s[0] == '/' {
				return false
			}
		default:
			if len(s) == 0 || s[0] != p[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return len(s) == 0
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// statement is the part of an in-toto statement sluice reads.
type statement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate json.RawMessage `json:"predicate"`
	raw       []byte
}

package signatures

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// ArtifactVerifier checks cosign signatures over any OCI artifact pinned by
// digest (a policy, not only an image) with public keys, the way `cosign
// verify --key` does with the transparency log ignored. It is safe for
// concurrent use.
type ArtifactVerifier struct {
	v    *Verifier
	keys []keyVerifier
}

// NewArtifactVerifier loads PEM public keys (any one suffices); opts set the
// registry transport and keychain as for NewVerifier.
func NewArtifactVerifier(keyFiles []string, opts ...Option) (*ArtifactVerifier, error) {
	if len(keyFiles) == 0 {
		return nil, fmt.Errorf("no public key to verify with")
	}
	a := &ArtifactVerifier{v: NewVerifier(nil, opts...)}
	for _, f := range keyFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading public key: %w", err)
		}
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s is not a PEM public key: %w", f, err)
		}
		sv, err := signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("loading public key %s: %w", f, err)
		}
		a.keys = append(a.keys, keyVerifier{file: f, v: sv})
	}
	return a, nil
}

// Evidence is the signature that verified an artifact, kept beside a cached
// copy so that it can be verified again offline.
type Evidence struct {
	Payload   []byte `json:"payload"`
	Signature string `json:"signature"`
}

// VerifyArtifact verifies the signatures stored for ref (REPO@sha256:...)
// and returns the evidence of the one that verified. A *Failure says it is
// unsigned, signed by another key, or that a signature by the key vouches
// for another digest; any other error is operational.
func (a *ArtifactVerifier) VerifyArtifact(ctx context.Context, ref string) ([]byte, error) {
	dig, h, err := parseDigest(ref)
	if err != nil {
		return nil, err
	}
	ropts := []ociremote.Option{ociremote.WithRemoteOptions(a.v.remoteOpts(ctx)...)}
	tag, err := ociremote.SignatureTag(dig, ropts...)
	if err != nil {
		return nil, err
	}
	sigs, err := fetch(tag, ropts)
	if err != nil && !isNotFound(err) {
		return nil, registryError(ctx, ref, err)
	}
	if len(sigs) == 0 {
		return nil, failf(Unsigned, "no cosign signature for %s (looked for %s)", dig.DigestStr(), tag.Name())
	}
	var tampered *Failure
	for _, sig := range sigs {
		ok, claimed, err := a.check(ctx, sig, h)
		if err != nil {
			return nil, err
		}
		if ok {
			p, err := sig.Payload()
			if err != nil {
				return nil, err
			}
			b64, err := sig.Base64Signature()
			if err != nil {
				return nil, err
			}
			return json.Marshal(Evidence{Payload: p, Signature: b64})
		}
		if claimed && tampered == nil {
			tampered = failf(Tampered, "a signature by %s vouches for %s, not %s", a.signers(), signedDigest(sig), dig.DigestStr())
		}
	}
	if tampered != nil {
		return nil, tampered
	}
	return nil, failf(WrongSigner, "%s, none verifies with %s", count(len(sigs), "signature"), a.signers())
}

// VerifyEvidence checks evidence VerifyArtifact returned, offline.
func (a *ArtifactVerifier) VerifyEvidence(ctx context.Context, ref string, evidence []byte) error {
	_, h, err := parseDigest(ref)
	if err != nil {
		return err
	}
	var ev Evidence
	if err := json.Unmarshal(evidence, &ev); err != nil {
		return fmt.Errorf("reading kept signature: %w", err)
	}
	sig, err := static.NewSignature(ev.Payload, ev.Signature)
	if err != nil {
		return err
	}
	ok, claimed, err := a.check(ctx, sig, h)
	switch {
	case err != nil:
		return err
	case ok:
		return nil
	case claimed:
		return failf(Tampered, "the kept signature vouches for %s, not %s", signedDigest(sig), h)
	}
	return failf(WrongSigner, "the kept signature does not verify with %s", a.signers())
}

// check tries each key; claimed is true when a key verified the signature
// but its payload is about another digest.
func (a *ArtifactVerifier) check(ctx context.Context, sig oci.Signature, h v1.Hash) (ok, claimed bool, err error) {
	for _, k := range a.keys {
		if err := ctx.Err(); err != nil {
			return false, false, context.Cause(ctx)
		}
		reached := false
		co := &cosign.CheckOpts{
			SigVerifier: k.v, IgnoreTlog: true, IgnoreSCT: true, Offline: true, MaxWorkers: 1,
			ClaimVerifier: func(sig oci.Signature, h v1.Hash, ann map[string]any) error {
				reached = true
				return cosign.SimpleClaimVerifier(sig, h, ann)
			},
		}
		if _, err := cosign.VerifyImageSignature(ctx, sig, h, co); err == nil {
			return true, false, nil
		}
		claimed = claimed || reached
	}
	return false, claimed, nil
}

func (a *ArtifactVerifier) signers() string {
	if len(a.keys) == 1 {
		return "key " + a.keys[0].file
	}
	s := "keys"
	for i, k := range a.keys {
		if i > 0 {
			s += ","
		}
		s += " " + k.file
	}
	return s
}

func parseDigest(ref string) (name.Digest, v1.Hash, error) {
	dig, err := name.NewDigest(ref)
	if err != nil {
		return name.Digest{}, v1.Hash{}, fmt.Errorf("parsing %q: %w", ref, err)
	}
	h, err := v1.NewHash(dig.DigestStr())
	return dig, h, err
}

// LoadPrivateKey reads a cosign private key file (as `cosign
// generate-key-pair` writes it), decrypting it with password.
func LoadPrivateKey(path string, password []byte) (signature.SignerVerifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading private key: %w", err)
	}
	sv, err := cosign.LoadPrivateKey(data, password, nil)
	if err != nil {
		return nil, fmt.Errorf("loading private key %s: %w", path, err)
	}
	return sv, nil
}

// SignArtifact signs the artifact at dig as `cosign sign --key` does (the
// transparency log aside) and stores the signature beside it in its
// registry. ctx governs every registry call.
func SignArtifact(ctx context.Context, dig name.Digest, sv signature.Signer, opts ...Option) error {
	v := NewVerifier(nil, opts...)
	p, err := payload.Cosign{Image: dig}.MarshalJSON()
	if err != nil {
		return err
	}
	raw, err := sv.SignMessage(bytes.NewReader(p))
	if err != nil {
		return fmt.Errorf("signing %s: %w", dig, err)
	}
	sig, err := static.NewSignature(p, base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		return err
	}
	ropts := []ociremote.Option{ociremote.WithRemoteOptions(v.remoteOpts(ctx, remote.WithRetryBackoff(remote.Backoff{Steps: 3, Duration: 100e6, Factor: 2}))...)}
	se, err := ociremote.SignedEntity(dig, ropts...)
	if err != nil {
		return fmt.Errorf("reading %s: %w", dig, err)
	}
	if se, err = mutate.AttachSignatureToEntity(se, sig); err != nil {
		return err
	}
	if err := ociremote.WriteSignatures(dig.Repository, se, ropts...); err != nil {
		return fmt.Errorf("storing the signature of %s: %w", dig, err)
	}
	return nil
}

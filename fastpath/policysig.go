package fastpath

import (
	"context"
	"errors"

	"github.com/sluice-ci/sluice/fastpath/signatures"
	"github.com/sluice-ci/sluice/gate"
)

// policyVerifier adapts signatures.ArtifactVerifier to gate.ArtifactVerifier:
// a signature failure becomes a *gate.VerificationError.
type policyVerifier struct{ a *signatures.ArtifactVerifier }

// NewPolicyVerifier verifies organisation policies with cosign public keys
// (any one suffices).
func NewPolicyVerifier(keyFiles []string, opts ...signatures.Option) (gate.ArtifactVerifier, error) {
	a, err := signatures.NewArtifactVerifier(keyFiles, opts...)
	if err != nil {
		return nil, err
	}
	return policyVerifier{a}, nil
}

func (p policyVerifier) Verify(ctx context.Context, ref string) ([]byte, error) {
	ev, err := p.a.VerifyArtifact(ctx, ref)
	return ev, verificationError(ref, err)
}

func (p policyVerifier) VerifyEvidence(ctx context.Context, ref string, evidence []byte) error {
	return verificationError(ref, p.a.VerifyEvidence(ctx, ref, evidence))
}

func verificationError(ref string, err error) error {
	var f *signatures.Failure
	if errors.As(err, &f) {
		detail := f.Detail
		switch f.Reason {
		case signatures.Unsigned:
			detail += "; sign it (sluice policy push signs what it publishes) or pin a signed digest"
		case signatures.WrongSigner:
			detail += "; it was not signed by the key given (--policy-key or SLUICE_POLICY_KEY)"
		case signatures.Tampered:
			detail += "; the policy was changed after signing: pin the digest that was signed"
		}
		return &gate.VerificationError{Ref: ref, Reason: string(f.Reason), Detail: detail}
	}
	return err
}

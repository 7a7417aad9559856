// Package signatures verifies container images with cosign before they are
// released: it resolves each reference to the digest that would be pulled,
// checks the cosign signatures and in-toto attestations stored beside it in
// the registry against a policy (public keys, or a certificate identity
// under a trusted root, offline), and explains every failure as a typed
// Failure. It also finds the images Kubernetes manifests deploy.
//
// The package knows nothing of the gate: fastpath adapts it to gate.Control.
package signatures

import (
	"errors"
	"fmt"
)

// Reason is why an image failed verification. Each reason is a rule name in
// the verdict.
type Reason string

const (
	// Unsigned: the registry holds no signature for the image's digest.
	Unsigned Reason = "unsigned"
	// WrongSigner: signatures exist, but none verifies with the policy's
	// keys or identity (signed by someone else, or altered since).
	WrongSigner Reason = "wrong-signer"
	// Tampered: a signature by the right signer vouches for another digest
	// (a signature copied onto a different image, or a tag moved to an
	// image that carries another image's signature).
	Tampered Reason = "tampered"
	// AttestationMissing: no attestation of the required predicate type
	// signed by the policy's signer.
	AttestationMissing Reason = "attestation-missing"
	// AttestationMismatch: the attestation is there and signed, but a
	// field of it (the builder id) is not what the policy requires.
	AttestationMismatch Reason = "attestation-mismatch"
	// Unpinned: the reference names a tag but no digest, and the policy
	// requires digests.
	Unpinned Reason = "unpinned"
	// NoPolicy: no rule of the policy matches the image, so nothing says
	// who must have signed it.
	NoPolicy Reason = "no-policy"
)

// Severity is the severity the verdict gives a failure of this reason.
func (r Reason) Severity() string {
	switch r {
	case WrongSigner, Tampered:
		return "CRITICAL"
	}
	return "HIGH"
}

// Advice says what to do about a failure of this reason, in a sentence.
func (r Reason) Advice() string {
	switch r {
	case Unsigned:
		return "sign the image (cosign sign) with a key or identity the policy trusts, or release a signed digest"
	case WrongSigner:
		return "do not release it: it was not signed by the key or identity the policy names; re-sign it with the right one, or fix the policy if the signer changed"
	case Tampered:
		return "do not release it: the signature vouches for a different digest, so the image or its tag was changed after signing; release the digest that was signed"
	case AttestationMissing:
		return "attach the required attestation (cosign attest) signed by the same key or identity"
	case AttestationMismatch:
		return "rebuild the image with the builder the policy names, or fix the policy"
	case Unpinned:
		return "pin the reference by digest"
	case NoPolicy:
		return "add an images entry to the signatures policy whose pattern matches it (or one with skip: true)"
	}
	return ""
}

// Failure is a verification failure: the image was checked and must not be
// released. It is data, not an operational error.
type Failure struct {
	Reason Reason
	// Detail explains what was found, e.g. "2 signatures, none verifies
	// with keys/cosign.pub".
	Detail string
}

func (f *Failure) Error() string {
	if f.Detail == "" {
		return string(f.Reason)
	}
	return string(f.Reason) + ": " + f.Detail
}

// failf makes a Failure.
func failf(r Reason, format string, args ...any) *Failure {
	return &Failure{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Operational errors: the image could not be checked at all. They are
// returned wrapped in a *RegistryError.
var (
	// ErrUnreachable: the registry did not answer, or answered with a
	// server error.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrNotFound: the registry has no such tag or digest.
	ErrNotFound = errors.New("tag not found")
	// ErrDenied: the registry refused the credentials (or their absence).
	ErrDenied = errors.New("access denied")
)

// RegistryError is an operational error talking to a registry about one
// image. Its message never contains credentials.
type RegistryError struct {
	Ref string
	// Kind is ErrUnreachable, ErrNotFound or ErrDenied.
	Kind error
	Err  error
}

func (e *RegistryError) Error() string {
	return fmt.Sprintf("%s: %v: %v", e.Ref, e.Kind, e.Err)
}

// Is matches the error's kind, so errors.Is(err, ErrNotFound) works.
func (e *RegistryError) Is(target error) bool { return target == e.Kind }

func (e *RegistryError) Unwrap() error { return e.Err }

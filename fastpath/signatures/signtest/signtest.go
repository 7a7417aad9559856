// Package signtest signs images in a registry the way cosign does, using
// cosign's own library, for tests and benchmarks: key pairs, signatures,
// in-toto attestations, and a certificate authority that issues keyless
// (Fulcio-like) certificates offline.
package signtest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Key is an ECDSA P-256 key pair, as `cosign generate-key-pair` makes.
type Key struct {
	Private *ecdsa.PrivateKey
	sv      signature.SignerVerifier
}

// NewKey generates a key pair.
func NewKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return &Key{Private: priv, sv: sv}, nil
}

// PublicPEM is the public key as cosign writes cosign.pub.
func (k *Key) PublicPEM() []byte {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.Private.Public())
	if err != nil {
		panic(err) // an ECDSA key always marshals
	}
	return b
}

// WritePublic writes the public key PEM to a file.
func (k *Key) WritePublic(path string) error { return os.WriteFile(path, k.PublicPEM(), 0o644) }

// Signer signs images with a key, and with a certificate when keyless.
type Signer struct {
	Key *Key
	// CertPEM and ChainPEM, when set, are attached to every signature as
	// cosign does for keyless signing.
	CertPEM, ChainPEM []byte
	// Remote are the registry options (transport, auth).
	Remote []remote.Option
}

func (s *Signer) opts() []ociremote.Option {
	return []ociremote.Option{ociremote.WithRemoteOptions(s.Remote...)}
}

func (s *Signer) staticOpts() []static.Option {
	if s.CertPEM == nil {
		return nil
	}
	return []static.Option{static.WithCertChain(s.CertPEM, s.ChainPEM)}
}

// Sign signs the image at d and stores the signature beside it.
func (s *Signer) Sign(d name.Digest) error { return s.SignClaiming(d, d) }

// SignClaiming stores at target a signature whose payload vouches for
// claimed: a valid signature over another digest.
func (s *Signer) SignClaiming(target, claimed name.Digest) error {
	p, err := payload.Cosign{Image: claimed, ClaimedIdentity: claimed.String()}.MarshalJSON()
	if err != nil {
		return err
	}
	raw, err := s.Key.sv.SignMessage(bytes.NewReader(p))
	if err != nil {
		return fmt.Errorf("signing payload: %w", err)
	}
	sig, err := static.NewSignature(p, base64.StdEncoding.EncodeToString(raw), s.staticOpts()...)
	if err != nil {
		return err
	}
	return s.attach(target, sig, false)
}

func (s *Signer) attach(target name.Digest, sig oci.Signature, att bool) error {
	se, err := ociremote.SignedEntity(target, s.opts()...)
	if err != nil {
		return fmt.Errorf("reading %s: %w", target, err)
	}
	if att {
		if se, err = mutate.AttachAttestationToEntity(se, sig); err != nil {
			return err
		}
		return ociremote.WriteAttestations(target.Repository, se, s.opts()...)
	}
	if se, err = mutate.AttachSignatureToEntity(se, sig); err != nil {
		return err
	}
	return ociremote.WriteSignatures(target.Repository, se, s.opts()...)
}

// Attest stores at d a DSSE-signed in-toto statement about d.
func (s *Signer) Attest(d name.Digest, predicateType string, predicate any) error {
	return s.AttestClaiming(d, d, predicateType, predicate)
}

// AttestClaiming stores at target an attestation whose subject is claimed.
func (s *Signer) AttestClaiming(target, claimed name.Digest, predicateType string, predicate any) error {
	hex := strings.TrimPrefix(claimed.DigestStr(), "sha256:")
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": claimed.Context().Name(), "digest": map[string]string{"sha256": hex}}},
		"predicateType": predicateType,
		"predicate":     predicate,
	}
	stmt, err := json.Marshal(st)
	if err != nil {
		return err
	}
	env, err := dsse.WrapSigner(s.Key.sv, "application/vnd.in-toto+json").SignMessage(bytes.NewReader(stmt))
	if err != nil {
		return fmt.Errorf("signing statement: %w", err)
	}
	att, err := static.NewAttestation(env, s.staticOpts()...)
	if err != nil {
		return err
	}
	return s.attach(target, att, true)
}

// SLSAProvenance is a minimal SLSA v1 provenance predicate naming a builder.
func SLSAProvenance(builderID string) map[string]any {
	return map[string]any{
		"buildDefinition": map[string]any{"buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"},
		"runDetails":      map[string]any{"builder": map[string]any{"id": builderID}},
	}
}

// PushRandom pushes a small random image to ref and returns its digest.
func PushRandom(ref string, opts ...remote.Option) (name.Digest, error) {
	img, err := random.Image(256, 1)
	if err != nil {
		return name.Digest{}, err
	}
	return Push(ref, img, opts...)
}

// Push pushes an image to ref and returns its digest.
func Push(ref string, img v1.Image, opts ...remote.Option) (name.Digest, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return name.Digest{}, err
	}
	if err := remote.Write(r, img, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	h, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	return r.Context().Digest(h.String()), nil
}

// CopySignatures copies the signatures stored for from onto to, as an
// attacker who retags an image along with its signature would.
func CopySignatures(from, to name.Digest, opts ...remote.Option) error {
	src, err := ociremote.SignatureTag(from)
	if err != nil {
		return err
	}
	dst, err := ociremote.SignatureTag(to)
	if err != nil {
		return err
	}
	img, err := remote.Image(src, opts...)
	if err != nil {
		return err
	}
	return remote.Write(dst, img, opts...)
}

// Fulcio's certificate extension for the OIDC issuer (the legacy raw
// string form, which cosign reads).
var oidIssuer = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}

// CA is a certificate authority for keyless signing: a root and an
// intermediate, as Fulcio has.
type CA struct {
	Root, Inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
}

// NewCA makes a root and an intermediate, valid from an hour ago for a day.
func NewCA() (*CA, error) {
	rk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ik, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	rootT := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signtest root", Organization: []string{"sluice"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLen: 1,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootT, rootT, rk.Public(), rk)
	if err != nil {
		return nil, err
	}
	root, _ := x509.ParseCertificate(rootDER)
	interT := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "signtest intermediate", Organization: []string{"sluice"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interT, root, ik.Public(), rk)
	if err != nil {
		return nil, err
	}
	inter, _ := x509.ParseCertificate(interDER)
	return &CA{Root: root, Inter: inter, rootKey: rk, interKey: ik}, nil
}

// RootPEM is the root certificate, the trusted root file's content.
func (ca *CA) RootPEM() []byte { return pemCert(ca.Root) }

// ChainPEM is the intermediate then the root, as cosign attaches it.
func (ca *CA) ChainPEM() []byte { return append(pemCert(ca.Inter), pemCert(ca.Root)...) }

// Issue makes a code-signing leaf certificate for key with the identity as
// a URI subject alternative name and the OIDC issuer extension, valid for
// an hour.
func (ca *CA) Issue(key *Key, identity, issuer string) ([]byte, error) {
	u, err := url.Parse(identity)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	t := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		NotBefore:    now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		URIs:            []*url.URL{u},
		ExtraExtensions: []pkix.Extension{{Id: oidIssuer, Value: []byte(issuer)}},
	}
	der, err := x509.CreateCertificate(rand.Reader, t, ca.Inter, key.Private.Public(), ca.interKey)
	if err != nil {
		return nil, err
	}
	c, _ := x509.ParseCertificate(der)
	return pemCert(c), nil
}

func pemCert(c *x509.Certificate) []byte {
	b, err := cryptoutils.MarshalCertificateToPEM(c)
	if err != nil {
		panic(err)
	}
	return b
}

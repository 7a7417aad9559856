package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluice-ci/sluice/fastpath"
	"github.com/sluice-ci/sluice/fastpath/signatures"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/gate/ocipolicy"
)

// policyCacheDir is where verified organisation policies are kept by
// digest: $SLUICE_CACHE_DIR/policies, else $XDG_CACHE_HOME/sluice/policies,
// else ~/.cache/sluice/policies; "" (no cache) when none is set.
func policyCacheDir(getenv env) string {
	switch {
	case getenv("SLUICE_CACHE_DIR") != "":
		return filepath.Join(getenv("SLUICE_CACHE_DIR"), "policies")
	case getenv("XDG_CACHE_HOME") != "":
		return filepath.Join(getenv("XDG_CACHE_HOME"), "sluice", "policies")
	case getenv("HOME") != "":
		return filepath.Join(getenv("HOME"), ".cache", "sluice", "policies")
	}
	return ""
}

// loadOrgPolicy fetches the organisation policy pinned by ref, verifies it
// with the key (--policy-key, else $SLUICE_POLICY_KEY; several keys may be
// given separated by commas), and merges the repository's .sluice.yaml at
// dir over it.
func loadOrgPolicy(ctx context.Context, ref, key, dir string, getenv env) (*gate.Policy, error) {
	if _, err := ocipolicy.ParseRef(ref); err != nil {
		return nil, err
	}
	if key == "" {
		key = getenv("SLUICE_POLICY_KEY")
	}
	if key == "" {
		return nil, fmt.Errorf("%w: --policy %s: an organisation policy is verified before use; give its cosign public key with --policy-key FILE or SLUICE_POLICY_KEY", gate.ErrUsage, ref)
	}
	v, err := fastpath.NewPolicyVerifier(strings.Split(key, ","))
	if err != nil {
		return nil, fmt.Errorf("%w: --policy-key: %v", gate.ErrUsage, err)
	}
	f := &ocipolicy.Fetcher{CacheDir: policyCacheDir(getenv), Verifier: v}
	doc, err := f.Fetch(ctx, ref)
	if err != nil {
		return nil, err
	}
	cat := catalog()
	org, err := gate.ParsePolicy(ref, doc.Data, cat)
	if err != nil {
		return nil, err
	}
	repo, err := gate.FindPolicy("", dir, cat)
	if err != nil {
		return nil, err
	}
	return gate.MergePolicy(org, repo, gate.PolicyInfo{Source: ref, Digest: doc.Digest, Version: org.Version})
}

// runPolicyPush validates a policy file, publishes it as an OCI artifact
// and signs it with a cosign key.
func runPolicyPush(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	fs := newFlagSet("sluice policy push", stderr)
	key := fs.String("key", "", "cosign private key `FILE` to sign with (its password in $COSIGN_PASSWORD)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: sluice policy push FILE oci://REGISTRY/REPO[:TAG] --key cosign.key\n\nValidates FILE, publishes it as an OCI artifact, signs it, and prints the digest to pin.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// Flags may come after the arguments, as in the usage line.
	var pos []string
	for rest := args; ; {
		if code, ok := parseFlags(fs, rest); !ok {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) != 2 || !strings.HasPrefix(pos[1], ocipolicy.Scheme) {
		fs.Usage()
		return exitUsage
	}
	if *key == "" {
		fmt.Fprintln(stderr, "sluice policy push: --key is required: an organisation policy is only used signed")
		return exitUsage
	}
	file, ref := pos[0], pos[1]
	data, err := os.ReadFile(file)
	if err != nil {
		return fail(stderr, "policy push", fmt.Errorf("%w: %v", gate.ErrUsage, err))
	}
	pol, err := gate.ParsePolicy(file, data, catalog())
	if err != nil {
		return fail(stderr, "policy push", err)
	}
	dir := filepath.Dir(file)
	if err := pol.Validate(gate.Env{Root: dir, PolicyDir: dir}); err != nil {
		return fail(stderr, "policy push", err)
	}
	sv, err := signatures.LoadPrivateKey(*key, []byte(getenv("COSIGN_PASSWORD")))
	if err != nil {
		return fail(stderr, "policy push", fmt.Errorf("%w: --key: %v", gate.ErrUsage, err))
	}
	dig, err := ocipolicy.Push(ctx, ref, data, ocipolicy.Options{})
	if err != nil {
		return fail(stderr, "policy push", err)
	}
	if err := signatures.SignArtifact(ctx, dig, sv); err != nil {
		return fail(stderr, "policy push", err)
	}
	fmt.Fprintf(stdout, "pushed and signed %s\npin it with: --policy %s%s\n", file, ocipolicy.Scheme, dig)
	return exitPass
}

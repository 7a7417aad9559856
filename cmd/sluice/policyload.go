package main

import (
	"context"
	"flag"
	"strings"

	"github.com/sluice-ci/sluice/gate"
)

// policyFlags are the policy flags of check, batch and policy validate.
type policyFlags struct {
	policy string
	key    string
}

func (p *policyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.policy, "policy", "", "policy `FILE` (default .sluice.yaml at the repository root or working directory, else built-in defaults), or an organisation policy oci://REGISTRY/REPO@sha256:... merged under the repository's .sluice.yaml")
	fs.StringVar(&p.key, "policy-key", "", "cosign public key `FILE` that must have signed an oci:// policy (default $SLUICE_POLICY_KEY)")
}

// load finds the policy the flags name for a repository at dir.
func (p *policyFlags) load(ctx context.Context, dir string, getenv env) (*gate.Policy, error) {
	if strings.HasPrefix(p.policy, "oci://") {
		return loadOrgPolicy(ctx, p.policy, p.key, dir, getenv)
	}
	return gate.FindPolicy(p.policy, dir, catalog())
}

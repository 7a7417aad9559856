package main

import (
	"context"
	"fmt"
	"io"

	"github.com/sluice-ci/sluice/gate"
)

func loadOrgPolicy(ctx context.Context, ref, key, dir string, getenv env, stderr io.Writer) (*gate.Policy, error) {
	return nil, fmt.Errorf("%w: --policy %s: organisation policies are not built yet", gate.ErrUsage, ref)
}

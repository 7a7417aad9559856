// Package fastpath owns the cheap controls that run inline on the release
// path: secrets today; configuration lint and image signatures are planned.
// Each control implements gate.Control and is described by a gate.Spec.
package fastpath

import (
	"time"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
)

// Specs returns the fast controls this build knows, in report order.
func Specs() []gate.Spec {
	return []gate.Spec{SecretsSpec(), LintSpec(), SignaturesSpec()}
}

// SecretsSpec describes the secrets control: on by default, fast, 5s,
// deferred to the slow path on overrun, blocking on error.
func SecretsSpec() gate.Spec {
	return gate.Spec{
		Name:       "secrets",
		Placement:  gate.Fast,
		Budget:     budgets.Budget{Time: 5 * time.Second, OnOverrun: budgets.Defer, OnError: budgets.FailClosed},
		Enabled:    true,
		Kind:       "secrets",
		NewOptions: func() any { return newSecretsOptions() },
		Build: func(opts any, env gate.Env) (gate.Control, error) {
			return NewSecrets(*opts.(*SecretsOptions), env)
		},
	}
}

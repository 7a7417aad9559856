package budgets_test

import (
	"fmt"
	"time"

	"github.com/sluice-ci/sluice/budgets"
)

// A fast control whose p95 over the window exceeds its budget is demoted,
// if its on_overrun is defer; back within budget on the slow path, it is
// restored.
func ExampleReview() {
	rule := budgets.Rule{AutoDemote: true, Window: 7 * 24 * time.Hour, MinRuns: 20}
	secrets := budgets.Budget{Time: 5 * time.Second, OnOverrun: budgets.Defer}

	d := budgets.Review(rule, secrets, false, budgets.Sample{Runs: 40, P95: 6200 * time.Millisecond})
	fmt.Println(d.Action+":", d.Reason)
	d = budgets.Review(rule, secrets, true, budgets.Sample{Runs: 20, P95: 4 * time.Second})
	fmt.Println(d.Action+":", d.Reason)

	signatures := budgets.Budget{Time: 10 * time.Second, OnOverrun: budgets.FailClosed}
	d = budgets.Review(rule, signatures, false, budgets.Sample{Runs: 40, P95: 11 * time.Second})
	fmt.Println("held:", d.Held)
	// Output:
	// demote: p95 6.2s over 40 fast runs exceeds its budget of 5s
	// restore: p95 4s over 20 slow runs is back within its budget of 5s
	// held: true
}

package gate_test

import (
	"context"
	"fmt"

	"github.com/sluice-ci/sluice/gate"
)

// A policy with two categories: a database change ships alone, the others
// share a batch; the change without a passed fast verdict is held back.
func ExamplePolicy_PlanBatches() {
	policy, err := gate.ParsePolicy("policy.yaml", []byte(`version: 1
categories:
  docs: {paths: ["docs/**"], impact: low}
  database: {paths: ["db/**"], impact: high}
batch:
  ship_alone: [database]
  require:
    - result: fast-verdict
`), nil)
	if err != nil {
		panic(err)
	}
	set := &gate.ChangeSet{Source: "example", Changes: []*gate.BatchChange{
		{ID: "PR-1", Paths: []string{"docs/a.md"}},
		{ID: "PR-2", Paths: []string{"db/migrations/7.up.sql", "db/migrations/7.down.sql"}},
		{ID: "PR-3", Paths: []string{"docs/b.md"}},
		{ID: "PR-4", Paths: []string{"api/x.go"}},
	}}
	results := gate.NewFileResults(
		gate.ResultRecord{Kind: gate.FastVerdict, Subject: "change:PR-1", Status: gate.ResultPassed},
		gate.ResultRecord{Kind: gate.FastVerdict, Subject: "change:PR-2", Status: gate.ResultPassed},
		gate.ResultRecord{Kind: gate.FastVerdict, Subject: "change:PR-3", Status: gate.ResultPassed},
	)
	plan, err := policy.PlanBatches(context.Background(), set, gate.PlanOptions{Results: results})
	if err != nil {
		panic(err)
	}
	fmt.Println(plan.Outcome)
	for _, b := range plan.Batches {
		for _, c := range b.Changes {
			fmt.Printf("batch %d: %s: %s\n", b.Number, c.ID, c.Reasons[0])
		}
	}
	for _, c := range plan.Held {
		fmt.Printf("held: %s: %s\n", c.ID, c.Reasons[0])
	}
	// Output:
	// partly-approved
	// batch 1: PR-1: category docs (low impact): opens the batch
	// batch 2: PR-2: category database (high impact): ships alone (batch.ship_alone: database)
	// batch 3: PR-3: category docs (low impact): opens the batch
	// held: PR-4: fast verdict: no result
}

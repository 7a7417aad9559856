package sarif_test

import (
	"fmt"
	"io"
	"testing"

	"github.com/sluice-ci/sluice/actions/sarif"
	"github.com/sluice-ci/sluice/gate"
)

// BenchmarkWrite30000Findings writes a log past GitHub's 25,000-result
// limit: 30,000 findings over 300 rules, truncated with a notification.
func BenchmarkWrite30000Findings(b *testing.B) {
	fs := make([]gate.Finding, 30000)
	for i := range fs {
		fs[i] = gate.Finding{Rule: fmt.Sprintf("rule-%d", i%300), Severity: "HIGH", File: fmt.Sprintf("dir/f%d.yaml", i/10), Line: i%10 + 1, Message: "m", Fingerprint: fmt.Sprint(i), InChange: true}
	}
	v := &gate.Verdict{Verdict: "fail", Change: gate.ChangeInfo{Mode: gate.RangeMode, Root: "/r"},
		Controls: []gate.ControlRun{{Name: "lint", Status: "failed", Blocks: true, Findings: fs}}}
	b.ReportAllocs()
	for b.Loop() {
		if err := sarif.Write(io.Discard, v, sarif.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

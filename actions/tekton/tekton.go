// Package tekton writes a verdict as Tekton Task results: one small file
// per result in the results folder (/tekton/results), which Tekton reads
// into the TaskRun's status.
package tekton

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/atomicfile"
)

// MaxResultsBytes is what Tekton allows all of a step's results together
// (they travel in the container's 4,096-byte termination message).
const MaxResultsBytes = 4096

// ResultNames are the results sluice writes, as the Task declares them.
var ResultNames = []string{"verdict", "findings", "blocking-controls", "deferred"}

// Results are the values of the results, by name.
func Results(v *gate.Verdict) map[string]string {
	total := 0
	var blocking []string
	for _, c := range v.Controls {
		total += len(c.Findings)
		if c.Blocks {
			blocking = append(blocking, c.Name)
		}
	}
	b := strings.Join(blocking, ",")
	if len(b) > 512 {
		b = b[:509] + "..."
	}
	return map[string]string{
		"verdict":           v.Verdict,
		"findings":          strconv.Itoa(total),
		"blocking-controls": b,
		"deferred":          strconv.Itoa(len(v.Deferred)),
	}
}

// WriteResults writes each result to a file of its name in dir (no
// trailing newline, as Tekton compares values exactly), each whole or not
// at all (a temporary file renamed into place).
func WriteResults(dir string, v *gate.Verdict) error {
	res := Results(v)
	size := 0
	for _, name := range ResultNames {
		size += len(res[name])
	}
	if size > MaxResultsBytes {
		return fmt.Errorf("writing Tekton results: %d bytes, more than Tekton's %d", size, MaxResultsBytes)
	}
	for _, name := range ResultNames {
		if err := atomicfile.Write(filepath.Join(dir, name), []byte(res[name]), 0o644); err != nil {
			return fmt.Errorf("writing Tekton result %s: %w", name, err)
		}
	}
	return nil
}

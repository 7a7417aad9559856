package gate

import (
	"github.com/sluice-ci/sluice/budgets"
)

// Schema names the verdict document's version.
const Schema = "sluice.verdict/v1"

// Verdict is the outcome of a check: the contract other tools read.
type Verdict struct {
	Schema   string       `json:"schema"`
	Verdict  string       `json:"verdict"` // "pass" or "fail"
	Change   ChangeInfo   `json:"change"`
	Policy   PolicyInfo   `json:"policy"`
	Controls []ControlRun `json:"controls"`
	Deferred []Deferred   `json:"deferred"`
	// Warnings say loudly what passed without being checked (fail-open).
	Warnings []string `json:"warnings"`
	// Demoted are the fast controls moved to the slow path for running
	// over budget (budgets.auto_demote), with the figures that moved them.
	Demoted []Demotion `json:"demoted,omitempty"`
}

// Pass reports whether the verdict lets the change through.
func (v *Verdict) Pass() bool { return v.Verdict == "pass" }

// ChangeInfo describes the change checked.
type ChangeInfo struct {
	Mode       Mode      `json:"mode"`
	Root       string    `json:"root"`
	Base       string    `json:"base,omitempty"`
	Head       string    `json:"head,omitempty"`
	BaseSource string    `json:"base_source,omitempty"`
	Paths      []string  `json:"paths,omitempty"`
	Files      int       `json:"files"`
	Images     []string  `json:"images,omitempty"`
	Skipped    []Skipped `json:"skipped,omitempty"`
}

// PolicyInfo names the policy applied.
type PolicyInfo struct {
	Source  string `json:"source"` // file path, or "defaults"
	Digest  string `json:"digest,omitempty"`
	Version int    `json:"version"`
	// Org is the organisation policy merged under this one, pinned by
	// digest (Source is its oci:// reference), when there is one.
	Org *PolicyInfo `json:"org,omitempty"`
}

// ControlRun is one control's part of the verdict.
type ControlRun struct {
	Name       string         `json:"name"`
	Path       Placement      `json:"path"`
	Status     budgets.Status `json:"status"`
	DurationMS int64          `json:"duration_ms"`
	BudgetMS   int64          `json:"budget_ms"`
	OnOverrun  budgets.Mode   `json:"on_overrun"`
	OnError    budgets.Mode   `json:"on_error"`
	// ModeApplied is the mode that decided an overrun or error.
	ModeApplied budgets.Mode `json:"mode_applied,omitempty"`
	Blocks      bool         `json:"blocks"`
	Reason      string       `json:"reason,omitempty"`
	Findings    []Finding    `json:"findings"`
	Suppressed  int          `json:"suppressed,omitempty"`
	Skipped     []Skipped    `json:"skipped,omitempty"`
	Notes       []string     `json:"notes,omitempty"`
	Artifacts   []Artifact   `json:"artifacts,omitempty"`
}

// Deferred is work the verdict hands to the slow path.
type Deferred struct {
	// Job is the queue's job id; empty when not enqueued.
	Job     string `json:"job"`
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	Control string `json:"control"`
	// Why the work is deferred: "slow placement" or "overran its budget".
	Why      string `json:"why"`
	Enqueued bool   `json:"enqueued"`
	// Reason says why it was not enqueued, or that it joined a job an
	// earlier check queued for the same work.
	Reason string `json:"reason,omitempty"`
}

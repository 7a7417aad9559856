package gate

import "context"

// Control is one check sluice runs over a change. Findings are data; a
// returned error means only that the control could not finish, and is
// resolved by the control's on_error mode.
type Control interface {
	Run(ctx context.Context, ch *Change) (Result, error)
}

// ControlFunc adapts a function to Control.
type ControlFunc func(ctx context.Context, ch *Change) (Result, error)

// Run calls f.
func (f ControlFunc) Run(ctx context.Context, ch *Change) (Result, error) { return f(ctx, ch) }

// Result is what a control found.
type Result struct {
	Findings []Finding
	// Skipped lists inputs the control could not check, with the reason.
	Skipped []Skipped
	// Notes are things a person should know that are not findings (an
	// expired baseline entry, an unused suppression).
	Notes []string
	// Suppressed counts findings a baseline accepted.
	Suppressed int
	// Artifacts are what the control verified besides files (an image
	// reference resolved to its digest), whatever the outcome.
	Artifacts []Artifact
}

// Artifact is one thing a control checked that is not a file: an image
// reference, resolved to the digest that was actually verified.
type Artifact struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest,omitempty"`
	// Status is "verified", "failed", "error" or "skipped" (exempted by
	// the policy).
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// Finding is one problem a control found.
type Finding struct {
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Column   int    `json:"column,omitempty"`
	Message  string `json:"message"`
	// Redacted shows a secret's first characters and masks the rest; a
	// secret's value is never carried whole.
	Redacted    string `json:"redacted,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// InChange is false for a finding on a line the change did not add (a
	// secret already present in a touched file).
	InChange bool `json:"in_change"`
}

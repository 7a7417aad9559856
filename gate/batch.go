package gate

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-ci/sluice/budgets"
)

// BatchSchema names the batch plan document's version.
const BatchSchema = "sluice.batch/v1"

// Batch plan outcomes.
const (
	Approved       = "approved"
	PartlyApproved = "partly-approved"
	Refused        = "refused"
)

// ChangeSet is the set of changes offered for release.
type ChangeSet struct {
	// Source says where the set came from ("changes.yaml", "git a..b",
	// "merge_group a..b").
	Source string
	// Ordered is true when each change builds on the one before it (commits
	// of a range): a change held back holds back every later one.
	Ordered bool
	Changes []*BatchChange
}

// BatchChange is one change offered for release.
type BatchChange struct {
	ID     string
	Title  string
	Commit string
	// Paths the change touches, slash-separated, relative to the repository
	// root.
	Paths []string
	// Images it releases.
	Images []string
	// Rollback are rollback artifacts (the previous image digests).
	Rollback []string
	// NewDependencies are external dependencies the change adds (modules
	// new to go.mod, package.json, requirements.txt).
	NewDependencies []string
	// Verdict is the change's fast-path verdict, when given; else the fast
	// verdict is looked up in Results.
	Verdict *Verdict
}

// Subject names the change for result lookups: "commit:<sha>" when its
// commit is known, else "change:<id>".
func (c *BatchChange) Subject() string {
	if c.Commit != "" {
		return "commit:" + c.Commit
	}
	return "change:" + c.ID
}

// asChange is the change as a fast-path Change, for a control spec's
// Subjects.
func (c *BatchChange) asChange() *Change {
	ch := &Change{Mode: PathsMode, Images: c.Images, Paths: []string{"change:" + c.ID}}
	if c.Commit != "" {
		ch.Mode, ch.Head = RangeMode, c.Commit
	}
	for _, p := range c.Paths {
		ch.Files = append(ch.Files, &File{Path: p, Size: -1})
	}
	return ch
}

// BatchPlan is the answer of a batch run: the contract other tools read.
type BatchPlan struct {
	Schema  string     `json:"schema"`
	Outcome string     `json:"outcome"`
	Source  string     `json:"source"`
	Policy  PolicyInfo `json:"policy"`
	// Batches ship in order.
	Batches []Batch `json:"batches"`
	// Held are changes that may not ship, with the reasons.
	Held []PlannedChange `json:"held"`
	Debt DebtReport      `json:"debt"`
}

// Batch is one release batch.
type Batch struct {
	Number     int             `json:"number"`
	HighImpact int             `json:"high_impact"`
	Changes    []PlannedChange `json:"changes"`
}

// PlannedChange is one change's place in the plan.
type PlannedChange struct {
	ID       string `json:"id"`
	Title    string `json:"title,omitempty"`
	Commit   string `json:"commit,omitempty"`
	Category string `json:"category"`
	Impact   Impact `json:"impact"`
	// Matched are every category its paths fall in.
	Matched       []string      `json:"matched,omitempty"`
	SafeToBatch   bool          `json:"safe_to_batch"`
	Deployability Deployability `json:"deployability"`
	// Reasons say why it is in its batch, or why it is held back.
	Reasons []string `json:"reasons"`
}

// DebtReport is the debt a batch run read and wrote.
type DebtReport struct {
	// Outstanding is earlier debt not yet cleared: while any remains and
	// the policy says clear_debt, nothing ships.
	Outstanding []Debt `json:"outstanding"`
	// Cleared is earlier debt now cleared by a complete, clean result.
	Cleared []Debt `json:"cleared"`
	// Recorded is new debt of the changes approved now.
	Recorded []Debt `json:"recorded"`
}

// Ledger returns the debt to store after this run: what is outstanding
// and what was recorded.
func (r DebtReport) Ledger() []Debt {
	return append(slices.Clone(r.Outstanding), r.Recorded...)
}

// PlanOptions are the inputs of a batch run besides the changes.
type PlanOptions struct {
	Results Results
	// Debt is the ledger of earlier runs.
	Debt []Debt
	// BatchID tags the debt this run records.
	BatchID string
	// Catalog gives each result kind the subjects it analyses; without a
	// spec for a kind, the subject is the change.
	Catalog Catalog
}

// PlanBatches applies the policy's batch rules to a change set. An error
// means a result could not be looked up; rule outcomes are in the plan.
func (p *Policy) PlanBatches(ctx context.Context, set *ChangeSet, o PlanOptions) (*BatchPlan, error) {
	if o.Results == nil {
		o.Results = NewFileResults()
	}
	plan := &BatchPlan{Schema: BatchSchema, Source: set.Source, Policy: policyInfo(p), Batches: []Batch{}, Held: []PlannedChange{},
		Debt: DebtReport{Outstanding: []Debt{}, Cleared: []Debt{}, Recorded: []Debt{}}}
	rules := p.Batch

	for _, d := range o.Debt {
		st, err := o.Results.Lookup(ctx, d.Kind, d.Subject)
		if err != nil {
			return nil, fmt.Errorf("looking up debt %s: %w", d, err)
		}
		if st.State == ResultPassed {
			plan.Debt.Cleared = append(plan.Debt.Cleared, d)
		} else {
			plan.Debt.Outstanding = append(plan.Debt.Outstanding, d)
		}
	}
	var debtBlock string
	if n := len(plan.Debt.Outstanding); n > 0 && rules.ClearDebt {
		debtBlock = fmt.Sprintf("outstanding debt from earlier batches must be cleared first: %d item(s), e.g. %s", n, plan.Debt.Outstanding[0])
	}

	var cur *Batch
	var heldBefore string
	closeBatch := func() {
		if cur != nil && len(cur.Changes) > 0 {
			plan.Batches = append(plan.Batches, *cur)
		}
		cur = nil
	}
	openBatch := func() {
		cur = &Batch{Number: len(plan.Batches) + 1, Changes: []PlannedChange{}}
	}
	for _, c := range set.Changes {
		cat, matched := p.Classify(c.Paths)
		pc := PlannedChange{ID: c.ID, Title: c.Title, Commit: c.Commit, Category: cat.Name, Impact: cat.Impact,
			Matched: matched, SafeToBatch: cat.SafeToBatch, Deployability: rules.Score(c)}
		aloneIdx := slices.IndexFunc(slices.Concat([]string{cat.Name}, matched), func(n string) bool { return slices.Contains(rules.ShipAlone, n) })
		alone := aloneIdx >= 0

		var held []string
		if debtBlock != "" {
			held = append(held, debtBlock)
		}
		if set.Ordered && heldBefore != "" {
			held = append(held, fmt.Sprintf("follows held-back change %s (each change of %s builds on the one before)", heldBefore, set.Source))
		}
		why, err := p.unmet(ctx, c, cat.Impact, o)
		if err != nil {
			return nil, err
		}
		held = append(held, why...)
		if pc.Deployability.Score < rules.MinDeployability {
			held = append(held, fmt.Sprintf("deployability %d is below the policy's min_deployability %d", pc.Deployability.Score, rules.MinDeployability))
		}
		if cat.Impact == High && rules.MaxHighImpact == 0 {
			held = append(held, "high-impact changes may not ship: the policy's max_high_impact is 0")
		}
		if len(held) > 0 {
			pc.Reasons = held
			plan.Held = append(plan.Held, pc)
			if heldBefore == "" {
				heldBefore = c.ID
			}
			continue
		}

		debt, err := changeDebt(ctx, c, o)
		if err != nil {
			return nil, err
		}
		plan.Debt.Recorded = append(plan.Debt.Recorded, debt...)
		desc := fmt.Sprintf("category %s (%s impact", cat.Name, cat.Impact)
		if len(matched) > 1 {
			desc += ", the highest of " + strings.Join(matched, ", ")
		}
		desc += ")"
		switch {
		case alone || !cat.SafeToBatch:
			closeBatch()
			openBatch()
			switch {
			case alone:
				pc.Reasons = append(pc.Reasons, fmt.Sprintf("%s: ships alone (batch.ship_alone: %s)", desc, slices.Concat([]string{cat.Name}, matched)[aloneIdx]))
			case len(matched) > 1:
				pc.Reasons = append(pc.Reasons, desc+": touches a category not safe to batch, ships alone")
			default:
				pc.Reasons = append(pc.Reasons, desc+": not safe to batch, ships alone")
			}
			addTo(cur, pc)
			closeBatch()
			continue
		case cur == nil:
			openBatch()
			pc.Reasons = append(pc.Reasons, desc+": opens the batch")
		case len(cur.Changes) >= rules.MaxChanges:
			full := cur.Number
			closeBatch()
			openBatch()
			pc.Reasons = append(pc.Reasons, fmt.Sprintf("%s: batch %d is full (max_changes %d)", desc, full, rules.MaxChanges))
		case cat.Impact == High && cur.HighImpact >= rules.MaxHighImpact:
			full := cur.Number
			closeBatch()
			openBatch()
			pc.Reasons = append(pc.Reasons, fmt.Sprintf("%s: batch %d already has %d high-impact change(s) (max_high_impact %d)", desc, full, rules.MaxHighImpact, rules.MaxHighImpact))
		default:
			pc.Reasons = append(pc.Reasons, fmt.Sprintf("%s: safe to batch, joins %d other change(s)", desc, len(cur.Changes)))
		}
		addTo(cur, pc)
	}
	closeBatch()

	switch shipped := len(set.Changes) - len(plan.Held); {
	case len(set.Changes) > 0 && shipped == len(set.Changes):
		plan.Outcome = Approved
	case shipped == 0:
		plan.Outcome = Refused
	default:
		plan.Outcome = PartlyApproved
	}
	return plan, nil
}

func addTo(b *Batch, pc PlannedChange) {
	b.Changes = append(b.Changes, pc)
	if pc.Impact == High {
		b.HighImpact++
	}
}

// unmet lists the policy's required results the change lacks.
func (p *Policy) unmet(ctx context.Context, c *BatchChange, impact Impact, o PlanOptions) ([]string, error) {
	var out []string
	for _, req := range p.Batch.Require {
		if impact < req.Impact {
			continue
		}
		if req.Result == FastVerdict {
			st, err := fastVerdict(ctx, c, o.Results)
			if err != nil {
				return nil, err
			}
			if st.State != ResultPassed {
				out = append(out, describe("fast verdict", st))
			}
			continue
		}
		subjects := []string{c.Subject()}
		if s, ok := o.Catalog.lookupKind(req.Result); ok && s.Subjects != nil {
			subjects = s.Subjects(c.asChange())
		}
		for _, subj := range subjects {
			st, err := o.Results.Lookup(ctx, req.Result, subj)
			if err != nil {
				return nil, fmt.Errorf("looking up %s of %s: %w", req.Result, subj, err)
			}
			if st.State != ResultPassed {
				out = append(out, describe(fmt.Sprintf("%s of %s (required for %s impact and above)", req.Result, subj, req.Impact), st))
			}
		}
	}
	return out, nil
}

func describe(what string, st ResultStatus) string {
	var s string
	switch st.State {
	case ResultMissing, "":
		s = what + ": no result"
	case ResultPending:
		s = what + ": not complete yet"
	case ResultFailed:
		s = what + ": failed"
	case ResultErrored:
		s = what + ": errored, not checked"
	default:
		s = what + ": " + string(st.State)
	}
	if st.Summary != "" {
		s += " (" + st.Summary + ")"
	}
	return s
}

func fastVerdict(ctx context.Context, c *BatchChange, r Results) (ResultStatus, error) {
	if c.Verdict != nil {
		if c.Verdict.Pass() {
			return ResultStatus{State: ResultPassed}, nil
		}
		var blocking []string
		for _, cr := range c.Verdict.Controls {
			if cr.Blocks {
				blocking = append(blocking, cr.Name+" "+string(cr.Status))
			}
		}
		return ResultStatus{State: ResultFailed, Summary: strings.Join(blocking, ", ")}, nil
	}
	st, err := r.Lookup(ctx, FastVerdict, c.Subject())
	if err != nil {
		return st, fmt.Errorf("looking up the fast verdict of %s: %w", c.ID, err)
	}
	return st, nil
}

// changeDebt is what a change about to ship still owes: its fast
// verdict's fail-open controls and deferred work not yet complete and clean.
func changeDebt(ctx context.Context, c *BatchChange, o PlanOptions) ([]Debt, error) {
	if c == nil || c.Verdict == nil {
		return nil, nil
	}
	var out []Debt
	add := func(d Debt) error {
		st, err := o.Results.Lookup(ctx, d.Kind, d.Subject)
		if err != nil {
			return fmt.Errorf("looking up %s: %w", d, err)
		}
		if st.State != ResultPassed && !slices.Contains(out, d) {
			out = append(out, d)
		}
		return nil
	}
	// The subject a re-run of a fast control would be stored under: the
	// commit the verdict checked, else the change's.
	subject := c.Subject()
	if c.Commit == "" && c.Verdict.Change.Head != "" {
		subject = "commit:" + c.Verdict.Change.Head
	}
	for _, cr := range c.Verdict.Controls {
		if cr.ModeApplied == budgets.FailOpen {
			if err := add(Debt{Change: c.ID, Control: cr.Name, Kind: cr.Name, Subject: subject, Why: "fail-open", Batch: o.BatchID}); err != nil {
				return nil, err
			}
		}
	}
	for _, d := range c.Verdict.Deferred {
		kind := d.Kind
		if kind == "" || kind == "deferred" {
			kind = d.Control
		}
		// The subject the slow path was (or will be) given for it.
		subj := d.Subject
		if subj == "" {
			subj = subject
		}
		if err := add(Debt{Change: c.ID, Control: d.Control, Kind: kind, Subject: subj, Why: "deferred", Batch: o.BatchID}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c Catalog) lookupKind(kind string) (Spec, bool) {
	i := slices.IndexFunc(c, func(s Spec) bool { return s.Kind == kind })
	if i < 0 {
		return Spec{}, false
	}
	return c[i], true
}

package gate

import (
	"context"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-ci/sluice/budgets"
)

// Demotions keeps the record of fast controls moved to the slow path for
// running over budget. The slowpath queue implements it from its ledger;
// the CLI passes one to the Gate with WithDemotions when a queue is
// configured.
type Demotions interface {
	// Review applies rule to each candidate (an enabled fast control and
	// its budget): it records a demotion for one whose p95 over the window
	// exceeds its budget, and a restoration for a demoted one whose p95 on
	// the slow path is back within budget, then returns the controls
	// demoted now, and those over budget that may not be demoted.
	Review(ctx context.Context, rule budgets.Rule, candidates []Candidate) (Review, error)
}

// Candidate is a fast control Review considers.
type Candidate struct {
	Control string
	Budget  budgets.Budget
}

// Review is what Demotions.Review found.
type Review struct {
	// Demoted are the controls that run on the slow path now.
	Demoted []Demotion
	// Held are controls over budget that cannot be demoted (their
	// on_overrun is not defer); they keep running on the release path.
	Held []Demotion
}

// Demotion is a control moved to the slow path, with the figures that
// moved it. Every verdict lists the demotions in force.
type Demotion struct {
	Control string    `json:"control"`
	Since   time.Time `json:"since"`
	// Runs fast runs in the window had a p95 of P95MS against BudgetMS.
	Runs     int64  `json:"runs"`
	P95MS    int64  `json:"p95_ms"`
	BudgetMS int64  `json:"budget_ms"`
	Reason   string `json:"reason"`
}

// WithDemotions makes Check move the fast controls d reports demoted to the
// slow path, when the policy's budgets.auto_demote is on.
func (g *Gate) WithDemotions(d Demotions) *Gate {
	g.demotions = d
	return g
}

// review asks the demotion store which fast controls run slow now. A store
// that cannot answer demotes nothing: the controls run on the release path,
// the stricter choice, and the verdict warns.
func (g *Gate) review(ctx context.Context, v *Verdict) map[string]Demotion {
	rule := g.policy.Budgets
	if g.demotions == nil || !rule.AutoDemote {
		return nil
	}
	var cands []Candidate
	for _, c := range g.policy.Controls {
		if c.Enabled && c.Placement == Fast {
			cands = append(cands, Candidate{Control: c.Name, Budget: c.Budget})
		}
	}
	ctx, cancel := context.WithTimeout(ctx, g.policy.Queue.Timeout)
	defer cancel()
	rev, err := g.demotions.Review(ctx, rule, cands)
	if err != nil {
		g.logger.Error("reading demotions", "error", err)
		v.Warnings = append(v.Warnings, fmt.Sprintf("budget demotions could not be read (%v); every fast control ran on the release path", err))
		return nil
	}
	out := map[string]Demotion{}
	for _, d := range rev.Demoted {
		out[d.Control] = d
		v.Demoted = append(v.Demoted, d)
		v.Warnings = append(v.Warnings, fmt.Sprintf("%s is demoted to the slow path (%s); it did NOT run on the release path and was deferred; 'sluice budgets restore %s' moves it back", d.Control, d.Reason, d.Control))
	}
	for _, d := range rev.Held {
		v.Warnings = append(v.Warnings, fmt.Sprintf("%s is over budget (%s); reprofile it", d.Control, d.Reason))
	}
	return out
}

// budgetsSection is the `budgets:` section as written.
type budgetsSection struct {
	AutoDemote *bool   `yaml:"auto_demote"`
	Window     *string `yaml:"window"`
	MinRuns    *int    `yaml:"min_runs"`
	// ReviewEvery is a Go duration; "0s" reviews on every check.
	ReviewEvery *time.Duration `yaml:"review_every"`
}

func (d *decoder) budgets(r *budgets.Rule, n *yaml.Node) error {
	d.pos["budgets"] = n
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	var raw budgetsSection
	if err := d.decode(n, reflectValue(&raw), "budgets"); err != nil {
		return err
	}
	if raw.AutoDemote != nil {
		r.AutoDemote = *raw.AutoDemote
	}
	if raw.Window != nil {
		w, err := budgets.ParseWindow(*raw.Window)
		if err != nil {
			return d.errf(d.pos["budgets.window"], "budgets.window", "%v", err)
		}
		r.Window = w
	}
	if raw.MinRuns != nil {
		if *raw.MinRuns < 1 || *raw.MinRuns > 1_000_000 {
			return d.errf(d.pos["budgets.min_runs"], "budgets.min_runs", "must be between 1 and 1000000, got %d", *raw.MinRuns)
		}
		r.MinRuns = *raw.MinRuns
	}
	if raw.ReviewEvery != nil {
		if *raw.ReviewEvery < 0 || *raw.ReviewEvery > 24*time.Hour {
			return d.errf(d.pos["budgets.review_every"], "budgets.review_every", "must be between 0s and 24h, got %s", *raw.ReviewEvery)
		}
		r.ReviewEvery = *raw.ReviewEvery
	}
	return nil
}

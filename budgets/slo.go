package budgets

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ReportSchema names the version of the SLO report's JSON document.
const ReportSchema = "sluice.budgets/v1"

// Report is the service-level view of every control: how long its runs
// take against its budget, how often it fails, overruns or is deferred,
// how deep the slow path's queue is, and how long changes stay exposed
// between their fast verdict and their deep result.
type Report struct {
	Schema string `json:"schema"`
	// GeneratedAt and Since bound the window the figures cover.
	GeneratedAt time.Time `json:"generated_at"`
	Since       time.Time `json:"since"`
	// Store is where the ledger is (a Postgres URL's password masked).
	Store    string           `json:"store"`
	Controls []ControlFigures `json:"controls"`
	Queue    []QueueDepth     `json:"queue"`
	Exposure Exposure         `json:"exposure"`
	// OverBudget lists the controls whose p95 exceeds their budget, with
	// what to do about it.
	OverBudget []Overrun `json:"over_budget"`
	// Demoted lists the fast controls now running on the slow path for
	// being over budget; Moves every demotion and restoration in the window.
	Demoted []Move `json:"demoted"`
	Moves   []Move `json:"moves"`
}

// ControlFigures are one control's runs at one placement in the window.
type ControlFigures struct {
	Control   string `json:"control"`
	Placement string `json:"placement"`
	Runs      int64  `json:"runs"`
	// BudgetMS is the largest budget its runs were given in the window.
	BudgetMS int64 `json:"budget_ms"`
	P50MS    int64 `json:"p50_ms"`
	P95MS    int64 `json:"p95_ms"`
	P99MS    int64 `json:"p99_ms"`
	MaxMS    int64 `json:"max_ms"`
	// Failed runs found something that blocks; Errored runs could not
	// finish; Overran runs ran past their budget (deferred ones included);
	// Deferred runs were handed to the slow path; Retries are slow
	// attempts after the first.
	Failed   int64 `json:"failed"`
	Errored  int64 `json:"errored"`
	Overran  int64 `json:"overran"`
	Deferred int64 `json:"deferred"`
	Retries  int64 `json:"retries"`
	// Rates are fractions of Runs: FailureRate counts errored runs (the
	// control as a service failed), not findings.
	FailureRate  float64 `json:"failure_rate"`
	OverrunRate  float64 `json:"overrun_rate"`
	DeferralRate float64 `json:"deferral_rate"`
}

// Over reports whether the control's p95 exceeds its budget.
func (c ControlFigures) Over() bool { return c.BudgetMS > 0 && c.Runs > 0 && c.P95MS > c.BudgetMS }

// QueueDepth is the unfinished slow-path work of one job kind.
type QueueDepth struct {
	Kind    string `json:"kind"`
	Waiting int64  `json:"waiting"`
	Running int64  `json:"running"`
	// OldestAgeMS is how long the oldest unfinished job has waited (0 when
	// there is none).
	OldestAgeMS int64 `json:"oldest_age_ms"`
}

// Exposure is the window between a fast verdict that deferred work and the
// deep result of that work: the time a change was released on the fast
// path's word alone.
type Exposure struct {
	// Closed counts the deep results stored in the window.
	Closed int64 `json:"closed"`
	P50MS  int64 `json:"p50_ms"`
	P95MS  int64 `json:"p95_ms"`
	MaxMS  int64 `json:"max_ms"`
	// Open is how many artifacts are inside the window now: deferred work
	// not analysed yet (queued, running, retrying, or failed for good).
	Open int64 `json:"open"`
	// Inside lists the oldest of them (at most a page; Open counts all).
	Inside []Exposed `json:"inside"`
}

// Exposed is one artifact whose deep result has not arrived.
type Exposed struct {
	Subject string `json:"subject"`
	Change  string `json:"change"`
	Kind    string `json:"kind"`
	Control string `json:"control"`
	State   string `json:"state"`
	AgeMS   int64  `json:"age_ms"`
}

// Overrun is a control whose p95 exceeds its budget.
type Overrun struct {
	Control   string `json:"control"`
	Placement string `json:"placement"`
	P95MS     int64  `json:"p95_ms"`
	BudgetMS  int64  `json:"budget_ms"`
	Advice    string `json:"advice"`
}

// Move is one demotion or restoration of a control.
type Move struct {
	Control string `json:"control"`
	// Action is "demote" or "restore".
	Action string `json:"action"`
	// By is "auto" (the policy's budgets.auto_demote) or "manual".
	By string    `json:"by"`
	At time.Time `json:"at"`
	// The figures that caused it: p95 of Runs runs taken on Placement
	// since the previous move, within the window, against BudgetMS.
	Placement string `json:"placement,omitempty"`
	Runs      int64  `json:"runs"`
	P95MS     int64  `json:"p95_ms"`
	BudgetMS  int64  `json:"budget_ms"`
	Reason    string `json:"reason"`
}

// Finish computes the rates and the over-budget advice, and sorts
// everything for deterministic output. demotable says whether a control
// may be moved to the slow path (see Demotable); autoDemote whether the
// policy does so.
func (r *Report) Finish(autoDemote bool, demotable func(control string) bool) {
	r.Schema = ReportSchema
	slices.SortFunc(r.Controls, func(a, b ControlFigures) int {
		return cmp.Or(cmp.Compare(a.Control, b.Control), cmp.Compare(a.Placement, b.Placement))
	})
	demoted := map[string]bool{}
	for _, m := range r.Demoted {
		demoted[m.Control] = true
	}
	r.OverBudget = r.OverBudget[:0]
	for i := range r.Controls {
		c := &r.Controls[i]
		if c.Runs > 0 {
			n := float64(c.Runs)
			c.FailureRate, c.OverrunRate, c.DeferralRate = round4(float64(c.Errored)/n), round4(float64(c.Overran)/n), round4(float64(c.Deferred)/n)
		}
		if !c.Over() {
			continue
		}
		advice := fmt.Sprintf("p95 %s exceeds the budget of %s: reprofile %s (make it faster or narrow what it scans) or raise its budget", ms(c.P95MS), ms(c.BudgetMS), c.Control)
		switch {
		case c.Placement != "fast":
		case demoted[c.Control]:
			advice += "; demoted to the slow path until it is back within budget"
		case !demotable(c.Control):
			advice += "; it cannot be demoted (its on_overrun is not defer, so it must decide on the release path)"
		case autoDemote:
			advice += "; auto_demote moves it to the slow path once enough runs in the window confirm it"
		default:
			advice += "; or set budgets.auto_demote to move it to the slow path until it is"
		}
		r.OverBudget = append(r.OverBudget, Overrun{Control: c.Control, Placement: c.Placement, P95MS: c.P95MS, BudgetMS: c.BudgetMS, Advice: advice})
	}
	slices.SortFunc(r.Queue, func(a, b QueueDepth) int { return cmp.Compare(a.Kind, b.Kind) })
	slices.SortStableFunc(r.Exposure.Inside, func(a, b Exposed) int {
		return cmp.Or(cmp.Compare(b.AgeMS, a.AgeMS), cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.Control, b.Control))
	})
	slices.SortFunc(r.Demoted, func(a, b Move) int { return cmp.Compare(a.Control, b.Control) })
	for _, s := range []*[]Move{&r.Demoted, &r.Moves} {
		if *s == nil {
			*s = []Move{}
		}
	}
	if r.Controls == nil {
		r.Controls = []ControlFigures{}
	}
	if r.Queue == nil {
		r.Queue = []QueueDepth{}
	}
	if r.Exposure.Inside == nil {
		r.Exposure.Inside = []Exposed{}
	}
}

func round4(f float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', 4, 64), 64)
	return v
}

// Rule is the policy's auto-demotion rule.
type Rule struct {
	// AutoDemote turns demotion on.
	AutoDemote bool
	// Window is how far back runs count.
	Window time.Duration
	// MinRuns is how many runs in the window (since the control's last
	// move) a decision needs.
	MinRuns int
	// ReviewEvery is how often a control's runs are reviewed; checks in
	// between reuse the last review's decision. 0 reviews on every check.
	ReviewEvery time.Duration
}

// DefaultRule is the rule when the policy is silent: off, 7 days, 20 runs,
// reviewed at most once a minute.
func DefaultRule() Rule {
	return Rule{Window: 7 * 24 * time.Hour, MinRuns: 20, ReviewEvery: time.Minute}
}

// Demotable reports whether a fast control may be demoted to the slow
// path: only when its on_overrun is defer, that is, when the policy already
// accepts the control finishing after the change has passed. A fail-closed
// control (an image signature check, say) must decide on the release path;
// a fail-open one was declared non-blocking on purpose.
func Demotable(b Budget) bool { return b.OnOverrun == Defer }

// Sample is a control's recent runs: how many, and their p95.
type Sample struct {
	Runs int64
	P95  time.Duration
}

// Decision is what Review decided for one control.
type Decision struct {
	// Action is "demote", "restore" or "" (no move).
	Action string
	// Held is true when the control is over budget but cannot be demoted.
	Held   bool
	Reason string
}

// Review decides whether a control moves. A fast control (demoted false)
// whose sample has at least rule.MinRuns runs and a p95 above budget is
// demoted, if Demotable; a demoted one whose slow-path sample has at least
// rule.MinRuns runs and a p95 within budget is restored.
func Review(rule Rule, b Budget, demoted bool, s Sample) Decision {
	if !rule.AutoDemote || b.Time <= 0 || s.Runs < int64(max(1, rule.MinRuns)) {
		return Decision{}
	}
	switch over := s.P95 > b.Time; {
	case !demoted && over && !Demotable(b):
		return Decision{Held: true, Reason: fmt.Sprintf("p95 %v over %d runs exceeds its budget of %v, but its on_overrun is %s: not demoted", s.P95, s.Runs, b.Time, b.OnOverrun)}
	case !demoted && over:
		return Decision{Action: "demote", Reason: fmt.Sprintf("p95 %v over %d fast runs exceeds its budget of %v", s.P95, s.Runs, b.Time)}
	case demoted && !over:
		return Decision{Action: "restore", Reason: fmt.Sprintf("p95 %v over %d slow runs is back within its budget of %v", s.P95, s.Runs, b.Time)}
	}
	return Decision{}
}

// ParseWindow parses a window length: a Go duration (90m, 36h) or a whole
// number of days (7d).
func ParseWindow(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("bad window %q (want e.g. 7d, 36h, 90m)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	w, err := time.ParseDuration(s)
	if err != nil || w <= 0 {
		return 0, fmt.Errorf("bad window %q (want e.g. 7d, 36h, 90m)", s)
	}
	return w, nil
}

// ms formats milliseconds as a duration.
func ms(n int64) string { return (time.Duration(n) * time.Millisecond).String() }

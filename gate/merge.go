package gate

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-ci/sluice/budgets"
	"gopkg.in/yaml.v3"
)

// ArtifactVerifier checks the signature of an OCI artifact pinned by digest
// before sluice uses it. fastpath/signatures implements it with cosign.
type ArtifactVerifier interface {
	// Verify looks up the artifact's signatures in its registry and checks
	// them. It returns evidence (the signature that verified, opaque bytes)
	// to keep beside a cached copy, or an error: a *VerificationError when
	// the artifact is unsigned or its signatures do not verify.
	Verify(ctx context.Context, ref string) (evidence []byte, err error)
	// VerifyEvidence checks kept evidence for ref again, offline.
	VerifyEvidence(ctx context.Context, ref string, evidence []byte) error
}

// VerificationError says an artifact may not be used: unsigned, signed by
// another key, or its signature vouches for other content.
type VerificationError struct {
	Ref string
	// Reason is "unsigned", "wrong-signer" or "tampered".
	Reason string
	Detail string
}

func (e *VerificationError) Error() string {
	return fmt.Sprintf("%s: refusing it: %s (%s)", e.Ref, e.Detail, e.Reason)
}

// strictness orders fail modes from loosest to strictest: a merged policy
// may only keep or raise the organisation's.
func strictness(m budgets.Mode) int {
	switch m {
	case budgets.FailClosed:
		return 2
	case budgets.Defer:
		return 1
	}
	return 0
}

// MergePolicy lays a repository's policy over the organisation's, which
// sets the minimums. The repository may tighten, never loosen:
//
//   - a control the organisation enables stays enabled; one it places on
//     the fast path stays there;
//   - a budget may be lowered, not raised; on_overrun and on_error may move
//     only towards fail-closed (fail-open < defer < fail-closed);
//   - a control's options come whole from the organisation when it sets any
//     of them (allow rules, severity thresholds, baselines, signers): the
//     repository may set options only for controls whose options the
//     organisation leaves at their defaults;
//   - categories may be added, not redefined; batch.max_changes,
//     batch.max_high_impact, batch.default_impact and
//     batch.min_deployability may only get stricter; ship_alone and require
//     add to the organisation's; clear_debt cannot be turned off; the
//     deployability globs are the organisation's when it sets them.
//
// A loosening is a *ConfigError naming the repository file, line and field.
// The merged policy's Source and Digest are the repository's; Org names the
// organisation policy.
func MergePolicy(org, repo *Policy, orgInfo PolicyInfo) (*Policy, error) {
	m := &Policy{Source: repo.Source, Digest: repo.Digest, Version: repo.Version, pos: repo.pos, Org: &orgInfo}
	if repo.Source == "" {
		// No repository file: the organisation's policy alone.
		m.Source, m.Digest, m.pos = orgInfo.Source, orgInfo.Digest, org.pos
		m.Controls, m.Categories, m.Batch = org.Controls, org.Categories, org.Batch
		m.Queue, m.Budgets = org.Queue, org.Budgets
		return m, nil
	}
	loosen := func(field, format string, args ...any) error {
		e := &ConfigError{File: repo.Source, Field: field, Msg: fmt.Sprintf(format, args...) + " (the organisation policy " + orgInfo.Source + " sets the minimum)"}
		if n := repo.pos[field]; n != nil {
			e.Line, e.Column = n.Line, n.Column
		}
		return e
	}
	for _, oc := range org.Controls {
		rc := repo.Control(oc.Name)
		c := *oc
		if rc == nil {
			m.Controls = append(m.Controls, &c)
			continue
		}
		base := "controls." + oc.Name
		set := func(k string) bool { return repo.pos[base+"."+k] != nil }
		if set("enabled") {
			if oc.Enabled && !rc.Enabled {
				return nil, loosen(base+".enabled", "the organisation enables %s; a repository may not disable it", oc.Name)
			}
			c.Enabled = rc.Enabled
		}
		if set("placement") {
			if oc.Placement == Fast && rc.Placement == Slow {
				return nil, loosen(base+".placement", "the organisation runs %s on the fast path; a repository may not move it off the release path", oc.Name)
			}
			c.Placement = rc.Placement
		}
		if set("budget") {
			if rc.Budget.Time > oc.Budget.Time {
				return nil, loosen(base+".budget", "%v is above the organisation's budget of %v; a repository may only lower it", rc.Budget.Time, oc.Budget.Time)
			}
			c.Budget.Time = rc.Budget.Time
		}
		for _, f := range []struct {
			key       string
			org, repo budgets.Mode
			into      *budgets.Mode
		}{{"on_overrun", oc.Budget.OnOverrun, rc.Budget.OnOverrun, &c.Budget.OnOverrun}, {"on_error", oc.Budget.OnError, rc.Budget.OnError, &c.Budget.OnError}} {
			if !set(f.key) {
				continue
			}
			if strictness(f.repo) < strictness(f.org) {
				return nil, loosen(base+"."+f.key, "%s is looser than the organisation's %s; a repository may only move towards fail-closed (fail-open < defer < fail-closed)", f.repo, f.org)
			}
			*f.into = f.repo
		}
		if c.Placement == Slow && c.Budget.OnOverrun == budgets.Defer {
			return nil, loosen(base+".placement", "merged with the organisation policy, %s runs on the slow path with on_overrun: defer; set on_overrun: fail-closed too", oc.Name)
		}
		if k := optionKey(repo.pos, base); k != "" {
			if optionKey(org.pos, base) != "" {
				return nil, loosen(k, "the organisation policy sets the options of %s; a repository may not change them", oc.Name)
			}
			c.Options = rc.Options
		}
		m.Controls = append(m.Controls, &c)
	}

	m.Categories = slices.Clone(org.Categories)
	for _, rcat := range repo.Categories {
		if slices.ContainsFunc(org.Categories, func(c Category) bool { return c.Name == rcat.Name }) {
			return nil, loosen("categories."+rcat.Name, "category %q is defined by the organisation; a repository may add categories, not redefine them", rcat.Name)
		}
		m.Categories = append(m.Categories, rcat)
	}

	ob, rb := org.Batch, repo.Batch
	b := ob
	set := func(k string) bool { return repo.pos["batch."+k] != nil }
	for _, f := range []struct {
		key       string
		org, repo int
		into      *int
		higher    bool // true: a higher value is stricter
	}{
		{"max_changes", ob.MaxChanges, rb.MaxChanges, &b.MaxChanges, false},
		{"max_high_impact", ob.MaxHighImpact, rb.MaxHighImpact, &b.MaxHighImpact, false},
		{"default_impact", int(ob.DefaultImpact), int(rb.DefaultImpact), (*int)(&b.DefaultImpact), true},
		{"min_deployability", ob.MinDeployability, rb.MinDeployability, &b.MinDeployability, true},
	} {
		if !set(f.key) {
			continue
		}
		if f.higher && f.repo < f.org || !f.higher && f.repo > f.org {
			shown := func(v int) string {
				if f.key == "default_impact" {
					return Impact(v).String()
				}
				return fmt.Sprint(v)
			}
			return nil, loosen("batch."+f.key, "%s is looser than the organisation's %s", shown(f.repo), shown(f.org))
		}
		*f.into = f.repo
	}
	if set("ship_alone") {
		b.ShipAlone = slices.Clone(ob.ShipAlone)
		for _, s := range rb.ShipAlone {
			if !slices.Contains(b.ShipAlone, s) {
				b.ShipAlone = append(b.ShipAlone, s)
			}
		}
	}
	if set("require") {
		b.Require = append(slices.Clone(ob.Require), rb.Require...)
	}
	if set("clear_debt") {
		if ob.ClearDebt && !rb.ClearDebt {
			return nil, loosen("batch.clear_debt", "the organisation requires debt to be cleared before the next batch; a repository may not turn that off")
		}
		b.ClearDebt = rb.ClearDebt
	}
	for _, g := range []struct {
		key       string
		repo      []string
		into      *[]string
		orgIsSets bool
	}{{"migration_paths", rb.MigrationPaths, &b.MigrationPaths, org.pos["batch.migration_paths"] != nil},
		{"down_migration_paths", rb.DownMigrationPaths, &b.DownMigrationPaths, org.pos["batch.down_migration_paths"] != nil},
		{"config_paths", rb.ConfigPaths, &b.ConfigPaths, org.pos["batch.config_paths"] != nil}} {
		if !set(g.key) {
			continue
		}
		if g.orgIsSets {
			return nil, loosen("batch."+g.key, "the organisation policy sets batch.%s; a repository may not change it", g.key)
		}
		*g.into = g.repo
	}
	m.Batch = b
	// queue and budgets: the repository's section when it has one, else
	// the organisation's (demotion is about the repository's own runs).
	m.Queue, m.Budgets = org.Queue, org.Budgets
	if repo.pos["queue"] != nil {
		m.Queue = repo.Queue
	}
	if repo.pos["budgets"] != nil {
		m.Budgets = repo.Budgets
	}
	for i, name := range b.ShipAlone {
		if !slices.ContainsFunc(m.Categories, func(c Category) bool { return c.Name == name }) {
			return nil, loosen(fmt.Sprintf("batch.ship_alone[%d]", i), "unknown category %q", name)
		}
	}
	return m, nil
}

// optionKey returns the first (by line) field under a control that is one of
// its options rather than a common key, or "".
func optionKey(pos positions, base string) string {
	var best string
	var bestNode *yaml.Node
	for k, n := range pos {
		rest, ok := strings.CutPrefix(k, base+".")
		if !ok || strings.Contains(rest, "#") {
			continue
		}
		seg := rest
		if i := strings.IndexAny(seg, ".["); i >= 0 {
			seg = seg[:i]
		}
		if slices.Contains(commonKeys, seg) {
			continue
		}
		if bestNode == nil || n.Line < bestNode.Line || n.Line == bestNode.Line && k < best {
			best, bestNode = k, n
		}
	}
	return best
}

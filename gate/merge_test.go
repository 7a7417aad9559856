package gate

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/budgets"
)

const orgSrc = `version: 1
controls:
  probe:
    budget: 2s
    on_overrun: defer
    on_error: fail-closed
    rules:
      - id: org-rule
        regex: 'x'
  plain:
    enabled: true
    on_overrun: fail-closed
categories:
  database:
    paths: ["db/**"]
    impact: high
    safe_to_batch: false
batch:
  max_changes: 5
  max_high_impact: 1
  min_deployability: 40
  ship_alone: [database]
  require:
    - result: fast-verdict
`

var orgInfo = PolicyInfo{Source: "oci://reg.test/org/policy@sha256:" + strings.Repeat("0", 64), Digest: "sha256:" + strings.Repeat("0", 64), Version: 1}

func mergeCatalog() Catalog {
	return append(testCatalog(), batchCatalog()...)
}

func parse(t *testing.T, file, src string) *Policy {
	t.Helper()
	p, err := ParsePolicy(file, []byte(src), mergeCatalog())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMergePolicyRefusesALooseningNamingTheRepositoryFileLineAndField(t *testing.T) {
	tests := []struct{ name, repo, want string }{
		{"disabling a control the organisation enables", "version: 1\ncontrols:\n  plain:\n    enabled: false\n",
			".sluice.yaml:4:14: controls.plain.enabled: the organisation enables plain"},
		{"moving a fast control to the slow path", "version: 1\ncontrols:\n  plain:\n    placement: slow\n",
			".sluice.yaml:4:16: controls.plain.placement: the organisation runs plain on the fast path"},
		{"raising a budget", "version: 1\ncontrols:\n  probe:\n    budget: 3s\n",
			".sluice.yaml:4:13: controls.probe.budget: 3s is above the organisation's budget of 2s"},
		{"turning fail-closed into fail-open", "version: 1\ncontrols:\n  plain:\n    on_overrun: fail-open\n",
			".sluice.yaml:4:17: controls.plain.on_overrun: fail-open is looser than the organisation's fail-closed"},
		{"turning fail-closed into defer", "version: 1\ncontrols:\n  plain:\n    on_overrun: defer\n",
			".sluice.yaml:4:17: controls.plain.on_overrun: defer is looser than the organisation's fail-closed"},
		{"turning defer into fail-open", "version: 1\ncontrols:\n  probe:\n    on_overrun: fail-open\n",
			".sluice.yaml:4:17: controls.probe.on_overrun: fail-open is looser than the organisation's defer"},
		{"turning on_error fail-closed into fail-open", "version: 1\ncontrols:\n  probe:\n    on_error: fail-open\n",
			".sluice.yaml:4:15: controls.probe.on_error: fail-open is looser than the organisation's fail-closed"},
		{"changing options the organisation sets (adding allow rules, lowering a threshold)", "version: 1\ncontrols:\n  probe:\n    scope: none\n",
			".sluice.yaml:4:12: controls.probe.scope: the organisation policy sets the options of probe"},
		{"redefining an organisation category", "version: 1\ncategories:\n  database:\n    paths: [db/**]\n    impact: low\n",
			".sluice.yaml:4:5: categories.database: category \"database\" is defined by the organisation"},
		{"raising max_changes", "version: 1\nbatch:\n  max_changes: 6\n",
			".sluice.yaml:3:16: batch.max_changes: 6 is looser than the organisation's 5"},
		{"raising max_high_impact", "version: 1\nbatch:\n  max_high_impact: 2\n",
			".sluice.yaml:3:20: batch.max_high_impact: 2 is looser than the organisation's 1"},
		{"lowering min_deployability", "version: 1\nbatch:\n  min_deployability: 10\n",
			".sluice.yaml:3:22: batch.min_deployability: 10 is looser than the organisation's 40"},
		{"lowering default_impact", "version: 1\nbatch:\n  default_impact: low\n",
			".sluice.yaml:3:19: batch.default_impact: low is looser than the organisation's medium"},
		{"turning clear_debt off", "version: 1\nbatch:\n  clear_debt: false\n",
			".sluice.yaml:3:15: batch.clear_debt: the organisation requires debt to be cleared"},
	}
	org := parse(t, orgInfo.Source, orgSrc)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MergePolicy(org, parse(t, ".sluice.yaml", tc.repo), orgInfo)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a ConfigError", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) || !strings.Contains(err.Error(), orgInfo.Source) {
				t.Errorf("err = %q\nwant prefix %q, naming the organisation policy", err, tc.want)
			}
		})
	}
}

func TestMergePolicyLetsTheRepositoryTighten(t *testing.T) {
	org := parse(t, orgInfo.Source, orgSrc)
	repo := parse(t, ".sluice.yaml", `version: 1
controls:
  probe:
    budget: 1s
    on_overrun: fail-closed
  plain:
    enabled: true
categories:
  docs:
    paths: ["docs/**"]
    impact: low
batch:
  max_changes: 3
  min_deployability: 60
  default_impact: high
  ship_alone: [docs]
  require:
    - result: image-scan
      impact: medium
`)
	m, err := MergePolicy(org, repo, orgInfo)
	if err != nil {
		t.Fatal(err)
	}
	probe := m.Control("probe")
	if probe.Budget.Time != time.Second || probe.Budget.OnOverrun != budgets.FailClosed || probe.Budget.OnError != budgets.FailClosed {
		t.Errorf("probe = %+v", probe.Budget)
	}
	if opts := probe.Options.(*probeOptions); len(opts.Rules) != 1 || opts.Rules[0].ID != "org-rule" {
		t.Errorf("probe options = %+v, want the organisation's", opts)
	}
	var cats []string
	for _, c := range m.Categories {
		cats = append(cats, c.Name)
	}
	if !slices.Equal(cats, []string{"database", "docs"}) {
		t.Errorf("categories = %v", cats)
	}
	b := m.Batch
	if b.MaxChanges != 3 || b.MaxHighImpact != 1 || b.MinDeployability != 60 || b.DefaultImpact != High ||
		!slices.Equal(b.ShipAlone, []string{"database", "docs"}) || len(b.Require) != 2 || !b.ClearDebt {
		t.Errorf("batch = %+v", b)
	}
	if m.Source != ".sluice.yaml" || m.Org == nil || m.Org.Digest != orgInfo.Digest {
		t.Errorf("source %q, org %+v", m.Source, m.Org)
	}
	if pi := policyInfo(m); pi.Org == nil || pi.Org.Digest != orgInfo.Digest {
		t.Errorf("the verdict's policy does not record the organisation digest: %+v", pi)
	}
}

func TestMergePolicyWithoutARepositoryFileIsTheOrganisations(t *testing.T) {
	org := parse(t, orgInfo.Source, orgSrc)
	m, err := MergePolicy(org, DefaultPolicy(mergeCatalog()), orgInfo)
	if err != nil {
		t.Fatal(err)
	}
	pi := policyInfo(m)
	if pi.Source != orgInfo.Source || pi.Digest != orgInfo.Digest || m.Batch.MaxChanges != 5 || m.Control("plain").Budget.OnOverrun != budgets.FailClosed {
		t.Errorf("merged = %+v, batch %+v", pi, m.Batch)
	}
}

func TestMergePolicyLetsTheRepositorySetOptionsTheOrganisationLeaves(t *testing.T) {
	org := parse(t, orgInfo.Source, "version: 1\ncontrols:\n  probe:\n    budget: 2s\n")
	repo := parse(t, ".sluice.yaml", "version: 1\ncontrols:\n  probe:\n    scope: added\n")
	m, err := MergePolicy(org, repo, orgInfo)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Control("probe").Options.(*probeOptions).Scope; got != "added" {
		t.Errorf("scope = %q, want the repository's", got)
	}
}

func TestMergePolicyKeepsTheQueueAndBudgetsSections(t *testing.T) {
	org := parse(t, "org.yaml", orgSrc+"queue:\n  timeout: 2s\nbudgets:\n  auto_demote: true\n  min_runs: 5\n")
	t.Run("the organisation's when the repository is silent", func(t *testing.T) {
		m, err := MergePolicy(org, parse(t, ".sluice.yaml", "version: 1\n"), orgInfo)
		if err != nil {
			t.Fatal(err)
		}
		if m.Queue.Timeout != 2*time.Second || !m.Budgets.AutoDemote || m.Budgets.MinRuns != 5 {
			t.Errorf("queue %+v, budgets %+v", m.Queue, m.Budgets)
		}
	})
	t.Run("the repository's when it has them", func(t *testing.T) {
		m, err := MergePolicy(org, parse(t, ".sluice.yaml", "version: 1\nqueue:\n  timeout: 3s\nbudgets:\n  auto_demote: false\n"), orgInfo)
		if err != nil {
			t.Fatal(err)
		}
		if m.Queue.Timeout != 3*time.Second || m.Budgets.AutoDemote {
			t.Errorf("queue %+v, budgets %+v", m.Queue, m.Budgets)
		}
	})
	t.Run("the organisation's alone when there is no repository file", func(t *testing.T) {
		m, err := MergePolicy(org, DefaultPolicy(mergeCatalog()), orgInfo)
		if err != nil {
			t.Fatal(err)
		}
		if m.Queue.Timeout != 2*time.Second || !m.Budgets.AutoDemote {
			t.Errorf("queue %+v, budgets %+v", m.Queue, m.Budgets)
		}
	})
}

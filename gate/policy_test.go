package gate

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/budgets"
)

type probeOptions struct {
	Scope string      `yaml:"scope"`
	Limit Size        `yaml:"limit"`
	Rules []probeRule `yaml:"rules"`
}

type probeRule struct {
	ID    string `yaml:"id"`
	Regex string `yaml:"regex"`
}

// testCatalog has one fast control with options, one without, and one
// slow-only control.
func testCatalog() Catalog {
	return Catalog{
		{
			Name: "probe", Kind: "probe", Placement: Fast, Enabled: true,
			Budget:     budgets.Budget{Time: 2 * time.Second, OnOverrun: budgets.Defer, OnError: budgets.FailClosed},
			NewOptions: func() any { return &probeOptions{Scope: "all"} },
			Build: func(opts any, env Env) (Control, error) {
				o := opts.(*probeOptions)
				for i, r := range o.Rules {
					if strings.Contains(r.Regex, "(") && !strings.Contains(r.Regex, ")") {
						return nil, &FieldError{Field: "rules[" + strconv.Itoa(i) + "].regex", Err: errors.New("missing closing )")}
					}
				}
				return ControlFunc(nil), nil
			},
		},
		{
			Name: "plain", Kind: "plain", Placement: Fast, Enabled: false,
			Budget: budgets.Budget{Time: time.Second, OnOverrun: budgets.FailClosed, OnError: budgets.FailClosed},
			Build:  func(any, Env) (Control, error) { return ControlFunc(nil), nil },
		},
		{Name: "deep", Kind: "deep-scan", Placement: Slow, SlowOnly: true, Enabled: true,
			Budget: budgets.Budget{Time: time.Minute, OnOverrun: budgets.FailClosed, OnError: budgets.FailClosed}},
	}
}

func TestParsePolicyAcceptsAFullPolicy(t *testing.T) {
	src := `version: 1
controls:
  probe:
    budget: 750ms
    on_overrun: fail-open
    on_error: fail-open
    scope: added
    limit: 2MiB
    rules:
      - id: acme
        regex: 'acme_[a-z]{8}'
  plain:
    enabled: true
    placement: slow
  deep:
    budget: 20m
`
	p, err := ParsePolicy(".sluice.yaml", []byte(src), testCatalog())
	if err != nil {
		t.Fatal(err)
	}
	probe := p.Control("probe")
	if probe.Budget != (budgets.Budget{Time: 750 * time.Millisecond, OnOverrun: budgets.FailOpen, OnError: budgets.FailOpen}) {
		t.Errorf("probe budget = %+v", probe.Budget)
	}
	o := probe.Options.(*probeOptions)
	if o.Scope != "added" || o.Limit != 2<<20 || len(o.Rules) != 1 || o.Rules[0].ID != "acme" {
		t.Errorf("probe options = %+v", o)
	}
	if plain := p.Control("plain"); !plain.Enabled || plain.Placement != Slow {
		t.Errorf("plain = %+v", plain)
	}
	if deep := p.Control("deep"); deep.Budget.Time != 20*time.Minute || deep.Budget.OnError != budgets.FailClosed {
		t.Errorf("deep = %+v", deep.Budget)
	}
	if !strings.HasPrefix(p.Digest, "sha256:") || len(p.Digest) != 71 {
		t.Errorf("digest %q", p.Digest)
	}
	if err := p.Validate(Env{}); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestDefaultPolicyKeepsEachSpecsDefaults(t *testing.T) {
	p := DefaultPolicy(testCatalog())
	if p.Source != "" || p.Version != PolicyVersion || len(p.Controls) != 3 {
		t.Fatalf("default policy %+v", p)
	}
	if c := p.Control("probe"); !c.Enabled || c.Budget.Time != 2*time.Second || c.Options.(*probeOptions).Scope != "all" {
		t.Errorf("probe defaults %+v", c)
	}
	if c := p.Control("plain"); c.Enabled {
		t.Error("plain enabled by default")
	}
}

func TestParsePolicyErrorsNameFileLineAndField(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // file:line:col: field: message start
	}{
		{"an unknown top-level key", "version: 1\ncontrol: {}\n", ".sluice.yaml:2:1: control: unknown key \"control\""},
		{"a missing version", "controls: {}\n", ".sluice.yaml:1:1: version: missing"},
		{"an unsupported version", "version: 2\n", ".sluice.yaml:1:10: version: unsupported policy version 2"},
		{"an unknown control", "version: 1\ncontrols:\n  secretz: {}\n", ".sluice.yaml:3:3: controls.secretz: unknown control \"secretz\" (known: probe, plain, deep)"},
		{"an unknown control key", "version: 1\ncontrols:\n  probe:\n    budgt: 2s\n", ".sluice.yaml:4:5: controls.probe.budgt: unknown key \"budgt\" (known: budget, enabled, limit, on_error, on_overrun, placement, rules, scope)"},
		{"an unknown key in a control without options", "version: 1\ncontrols:\n  plain:\n    scope: x\n", ".sluice.yaml:4:5: controls.plain.scope: unknown key \"scope\""},
		{"a bad duration", "version: 1\ncontrols:\n  probe:\n    budget: 2 seconds\n", ".sluice.yaml:4:13: controls.probe.budget: bad duration \"2 seconds\""},
		{"a zero budget", "version: 1\ncontrols:\n  probe:\n    budget: 0s\n", ".sluice.yaml:4:13: controls.probe.budget: must be more than zero"},
		{"an unknown overrun mode", "version: 1\ncontrols:\n  probe:\n    on_overrun: retry\n", ".sluice.yaml:4:17: controls.probe.on_overrun: unknown mode \"retry\""},
		{"defer as an error mode", "version: 1\ncontrols:\n  probe:\n    on_error: defer\n", ".sluice.yaml:4:15: controls.probe.on_error: unknown mode \"defer\" (want fail-closed or fail-open; defer applies to overruns only)"},
		{"an unknown placement", "version: 1\ncontrols:\n  probe:\n    placement: medium\n", ".sluice.yaml:4:16: controls.probe.placement: unknown placement \"medium\""},
		{"a slow control deferring its overrun", "version: 1\ncontrols:\n  probe:\n    placement: slow\n    on_overrun: defer\n", ".sluice.yaml:5:17: controls.probe.on_overrun: on_overrun: defer moves an overrun to the slow path, but probe already runs there"},
		{"a slow placement inheriting a deferring default", "version: 1\ncontrols:\n  probe:\n    placement: slow\n", ".sluice.yaml:4:16: controls.probe.placement: on_overrun: defer moves an overrun"},
		{"a deep control placed on the fast path", "version: 1\ncontrols:\n  deep:\n    placement: fast\n", ".sluice.yaml:4:16: controls.deep.placement: deep is deep analysis and runs on the slow path only"},
		{"a bad option value", "version: 1\ncontrols:\n  probe:\n    limit: lots\n", ".sluice.yaml:4:12: controls.probe.limit: bad size \"lots\""},
		{"a list where a value belongs", "version: 1\ncontrols:\n  probe:\n    scope: [a, b]\n", ".sluice.yaml:4:12: controls.probe.scope: want a single value, got a list"},
		{"an unknown key inside a list item", "version: 1\ncontrols:\n  probe:\n    rules:\n      - id: x\n        regx: y\n", ".sluice.yaml:6:9: controls.probe.rules[0].regx: unknown key \"regx\" (known: id, regex)"},
		{"a key given twice", "version: 1\ncontrols:\n  probe:\n    budget: 1s\n    budget: 2s\n", ".sluice.yaml:5:5: controls.probe.budget: key given twice"},
		{"a YAML syntax error", "version: 1\ncontrols:\n  probe: [\n", ".sluice.yaml:3: did not find expected node content"},
		{"a non-boolean enabled", "version: 1\ncontrols:\n  plain:\n    enabled: maybe\n", ".sluice.yaml:4:14: controls.plain.enabled: want true or false"},
		{"an empty file", "", ".sluice.yaml:1: version: empty policy"},
		{"two documents", "version: 1\n---\nversion: 1\n", ".sluice.yaml:2: more than one YAML document"},
		{"an unknown queue mode", "version: 1\nqueue:\n  on_unreachable: defer\n", ".sluice.yaml:3:19: queue.on_unreachable: unknown mode \"defer\" (want fail-closed or fail-open)"},
		{"an unknown queue key", "version: 1\nqueue:\n  uri: x\n", ".sluice.yaml:3:3: queue.uri: unknown key \"uri\" (known: deferred_budget, max_attempts, on_unreachable, timeout, url)"},
		{"a zero queue timeout", "version: 1\nqueue:\n  timeout: 0s\n", ".sluice.yaml:3:12: queue.timeout: must be more than zero"},
		{"too many attempts", "version: 1\nqueue:\n  max_attempts: 1000\n", ".sluice.yaml:3:17: queue.max_attempts: must be between 1 and 100, got 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePolicy(".sluice.yaml", []byte(tt.src), testCatalog())
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want a *ConfigError", err, err)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("err = %q\nwant prefix %q", err, tt.want)
			}
		})
	}
}

func TestValidateLocatesAControlsFieldError(t *testing.T) {
	src := "version: 1\ncontrols:\n  probe:\n    rules:\n      - id: a\n        regex: ok\n      - id: b\n        regex: 'acme_(['\n"
	p, err := ParsePolicy("policy.yaml", []byte(src), testCatalog())
	if err != nil {
		t.Fatal(err)
	}
	err = p.Validate(Env{})
	want := "policy.yaml:8:16: controls.probe.rules[1].regex: missing closing )"
	if err == nil || err.Error() != want {
		t.Fatalf("Validate = %v, want %s", err, want)
	}
}

func TestParseSize(t *testing.T) {
	tests := map[string]Size{"0": 0, "512": 512, "2MiB": 2 << 20, "1 GiB": 1 << 30, "300kB": 300000, "64KiB": 64 << 10}
	for in, want := range tests {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "2XB", "many"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestDatePassedAtTheEndOfTheDayUTC(t *testing.T) {
	d := Date{time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC)}
	tests := []struct {
		now  time.Time
		want bool
	}{
		{time.Date(2026, 3, 31, 23, 59, 0, 0, time.UTC), false},
		{time.Date(2026, 4, 1, 0, 0, 1, 0, time.UTC), true},
		{time.Date(2026, 3, 31, 20, 0, 0, 0, time.FixedZone("UTC-5", -5*3600)), true}, // 01:00 UTC on 1 April
	}
	for _, tt := range tests {
		if got := d.Passed(tt.now); got != tt.want {
			t.Errorf("Passed(%v) = %v, want %v", tt.now, got, tt.want)
		}
	}
	if (Date{}).Passed(time.Now()) {
		t.Error("an unset date has passed")
	}
}

func TestParsePolicyReadsTheQueueSection(t *testing.T) {
	src := "version: 1\nqueue:\n  url: postgres://sluice@db.example/sluice\n  on_unreachable: fail-open\n  timeout: 2s\n  max_attempts: 3\n  deferred_budget: 5m\n"
	p, err := ParsePolicy(".sluice.yaml", []byte(src), testCatalog())
	if err != nil {
		t.Fatal(err)
	}
	want := QueuePolicy{URL: "postgres://sluice@db.example/sluice", OnUnreachable: budgets.FailOpen, Timeout: 2 * time.Second, MaxAttempts: 3, DeferredBudget: 5 * time.Minute}
	if p.Queue != want {
		t.Errorf("queue = %+v, want %+v", p.Queue, want)
	}
	d, err := ParsePolicy(".sluice.yaml", []byte("version: 1\n"), testCatalog())
	if err != nil {
		t.Fatal(err)
	}
	if d.Queue != DefaultQueuePolicy() || d.Queue.OnUnreachable != budgets.FailClosed {
		t.Errorf("a silent policy: queue = %+v, want the defaults (fail-closed)", d.Queue)
	}
}

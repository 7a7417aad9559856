package secrets

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/internal/testrepo"
)

// Planted secrets: shaped like real credentials, random, never valid.
const (
	githubPAT = "ghp_R2k9Qz7LmX4pT8vW1bN6cY3hJ5sD0fGaKe12"
	awsKey    = "AKIAQ7X3MZ5TJ2WB6KPD"
	stripeKey = "sk_live_4eC39HqLyjWDarjtT1zdp7dc9Gx2"
)

func newScanner(t *testing.T, cfg Config) *Scanner {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ruleIDsOf lists the rule ids of findings, in order.
func ruleIDsOf(findings []Finding) []string {
	var ids []string
	for _, f := range findings {
		ids = append(ids, f.RuleID)
	}
	return ids
}

func TestPlantedSecretsAreFound(t *testing.T) {
	defaults := newScanner(t, Config{})
	privateKey := "-----BEGIN RSA PRIVATE KEY-----\n" +
		"MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n" +
		"VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n" +
		"-----END RSA PRIVATE KEY-----\n"
	acme := Rule{ID: "acme-token", Regex: `(?i)acme_[a-z0-9]{16}`, Keywords: []string{"ACME_"}}
	tests := []struct {
		name     string
		cfg      *Config // nil: the defaults
		path     string
		content  string
		wantRule string // "" for no finding
		wantLine int
	}{
		{name: "a GitHub token in Go code is found", path: "main.go", content: "package main\n\nconst token = \"" + githubPAT + "\"\n", wantRule: "github-pat", wantLine: 3},
		{name: "keywords match case-insensitively", cfg: &Config{NoDefaults: true, Rules: []Rule{acme}}, path: "a.txt", content: "x = ACME_0123456789abcdef\n", wantRule: "acme-token", wantLine: 1},
		{name: "a multi-line private key is found", path: "id_rsa.txt", content: "key:\n" + privateKey, wantRule: "private-key", wantLine: 2},
		{name: "a secret in a Markdown file is found", path: "docs/README.md", content: "# Setup\n\nExport `AWS_ACCESS_KEY_ID=" + awsKey + "`.\n", wantRule: "aws-access-token", wantLine: 3},
		{name: "a base64-encoded secret is decoded and found", path: "config.yaml", content: "auth:\n  blob: " + base64.StdEncoding.EncodeToString([]byte("token="+githubPAT)) + "\n", wantRule: "github-pat", wantLine: 2},
		{name: "a hex-encoded secret is decoded and found", path: "config.yaml", content: "blob = " + fmt.Sprintf("%x", "key "+stripeKey+" ") + "\n", wantRule: "stripe-access-token", wantLine: 1},
		{name: "a path rule matches the file name alone", path: "certs/client.p12", content: "anything", wantRule: "pkcs12-file"},
		{name: "a custom rule is applied", cfg: &Config{Rules: []Rule{acme}}, path: "a.txt", content: "acme_0123456789abcdef", wantRule: "acme-token", wantLine: 1},
		{name: "a disabled default rule reports nothing", cfg: &Config{Disable: []string{"github-pat"}}, path: "main.go", content: "x := \"" + githubPAT + "\"\n"},
		{name: "a custom rule with a default id replaces it", cfg: &Config{Rules: []Rule{{ID: "github-pat", Regex: `never-matches-[0-9]{99}`, Keywords: []string{"ghp_"}}}}, path: "main.go", content: githubPAT},
		{name: "a line marked gitleaks:allow is skipped", path: "main.go", content: "x := \"" + githubPAT + "\" // gitleaks:allow\n"},
		{name: "gitleaks' global allowlist skips go.sum", path: "go.sum", content: githubPAT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaults
			if tt.cfg != nil {
				s = newScanner(t, *tt.cfg)
			}
			got := s.Scan(tt.path, []byte(tt.content))
			if tt.wantRule == "" {
				if len(got) > 0 {
					t.Fatalf("got findings %v, want none", ruleIDsOf(got))
				}
				return
			}
			i := slices.IndexFunc(got, func(f Finding) bool { return f.RuleID == tt.wantRule })
			if i < 0 {
				t.Fatalf("got findings %v, want one of rule %s", ruleIDsOf(got), tt.wantRule)
			}
			if f := got[i]; f.Line != tt.wantLine || f.File != tt.path {
				t.Errorf("finding at %s:%d, want %s:%d", f.File, f.Line, tt.path, tt.wantLine)
			}
		})
	}
}

func TestEntropyThreshold(t *testing.T) {
	s := newScanner(t, Config{NoDefaults: true, Rules: []Rule{
		{ID: "pw", Regex: `pw=([a-zA-Z0-9]{12,})`, Keywords: []string{"pw="}, SecretGroup: 1, Entropy: 3},
	}})
	tests := []struct {
		name    string
		content string
		want    int
	}{
		{"a random value above the threshold is reported", "pw=Zx8kQ2mN7vR4tY", 1},
		{"a repetitive value below the threshold is not", "pw=aaaaaaaabbbbbbbb", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Scan("f.txt", []byte(tt.content))
			if len(got) != tt.want {
				t.Fatalf("got %d findings, want %d", len(got), tt.want)
			}
			if tt.want > 0 && got[0].Entropy <= 3 {
				t.Errorf("entropy %v, want > 3", got[0].Entropy)
			}
		})
	}
}

func TestAllowlists(t *testing.T) {
	rule := Rule{ID: "tok", Regex: `tok_([a-z0-9]{12})`, Keywords: []string{"tok_"}}
	withAllow := func(a Allow) Config {
		r := rule
		r.Allow = []Allow{a}
		return Config{NoDefaults: true, Rules: []Rule{r}}
	}
	tests := []struct {
		name    string
		cfg     Config
		path    string
		content string
		want    int
	}{
		{"without an allowlist the secret is reported", Config{NoDefaults: true, Rules: []Rule{rule}}, "a.go", "x tok_abc123def456", 1},
		{"a global path allowlist skips the file", Config{NoDefaults: true, Rules: []Rule{rule}, Allow: []Allow{{Paths: []string{`^vendor/`}}}}, "vendor/a.go", "tok_abc123def456", 0},
		{"a global allowlist limited to other rules does not apply", Config{NoDefaults: true, Rules: []Rule{rule, {ID: "other", Regex: "zzz"}}, Allow: []Allow{{Paths: []string{`.`}, Rules: []string{"other"}}}}, "a.go", "tok_abc123def456", 1},
		{"a rule path allowlist skips the file", withAllow(Allow{Paths: []string{`_test\.go$`}}), "a_test.go", "tok_abc123def456", 0},
		{"a regex allowlist matches the secret by default", withAllow(Allow{Regexes: []string{`^abc`}}), "a.go", "tok_abc123def456", 0},
		{"a regex on the secret does not see the rest of the match", withAllow(Allow{Regexes: []string{`^tok_`}}), "a.go", "tok_abc123def456", 1},
		{"a regex allowlist can target the match", withAllow(Allow{Regexes: []string{`^tok_abc`}, RegexTarget: "match"}), "a.go", "tok_abc123def456", 0},
		{"a regex allowlist can target the line", withAllow(Allow{Regexes: []string{`example`}, RegexTarget: "line"}), "a.go", "example: tok_abc123def456\n", 0},
		{"a line target looks at the finding's line only", withAllow(Allow{Regexes: []string{`example`}, RegexTarget: "line"}), "a.go", "example\ntok_abc123def456\n", 1},
		{"a stop word in the secret allows it", withAllow(Allow{StopWords: []string{"123DEF"}}), "a.go", "tok_abc123def456", 0},
		{"an AND allowlist needs every check", withAllow(Allow{Condition: "AND", Paths: []string{`^test/`}, Regexes: []string{`^abc`}}), "src/a.go", "tok_abc123def456", 1},
		{"an AND allowlist allows when every check holds", withAllow(Allow{Condition: "AND", Paths: []string{`^test/`}, Regexes: []string{`^abc`}}), "test/a.go", "tok_abc123def456", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newScanner(t, tt.cfg).Scan(tt.path, []byte(tt.content))
			if len(got) != tt.want {
				t.Fatalf("got %d findings, want %d", len(got), tt.want)
			}
		})
	}
}

func TestNewErrorsNameRuleAndField(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"a bad regex names the rule and the field", Config{Rules: []Rule{{ID: "acme", Regex: `(abc`}}}, `rule "acme": regex: missing closing )`},
		{"a bad path regex names the field", Config{Rules: []Rule{{ID: "acme", Path: `[`}}}, `rule "acme": path: missing closing ]`},
		{"a secret group beyond the regex's groups is refused", Config{Rules: []Rule{{ID: "acme", Regex: `a(b)`, SecretGroup: 2}}}, `rule "acme": secret_group: 2`},
		{"an unknown severity is refused", Config{Rules: []Rule{{ID: "acme", Regex: `a`, Severity: "URGENT"}}}, `rule "acme": severity`},
		{"a bad allowlist condition is refused", Config{Rules: []Rule{{ID: "acme", Regex: `a`, Allow: []Allow{{Condition: "XOR", Paths: []string{"x"}}}}}}, `rule "acme": allow[0].condition`},
		{"an allowlist for an unknown rule is refused", Config{Allow: []Allow{{Paths: []string{"x"}, Rules: []string{"nope"}}}}, `rules: no rule "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
	t.Run("a rule error is a *RuleError naming the rule and field", func(t *testing.T) {
		_, err := New(Config{Rules: []Rule{{ID: "acme", Regex: "a", Allow: []Allow{{Regexes: []string{"("}}}}}})
		var re *RuleError
		if !errors.As(err, &re) || re.Rule != "acme" || re.Field != "allow[0].regexes" {
			t.Fatalf("got %#v", err)
		}
	})
}

func TestRedaction(t *testing.T) {
	tests := []struct{ secret, want string }{
		{githubPAT, "ghp_****"},
		{"abcdefgh", "ab****"},
		{"abc", "****"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("a %d-character secret shows %q", len(tt.secret), tt.want), func(t *testing.T) {
			if got := redact(tt.secret); got != tt.want {
				t.Errorf("redact = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestScanTargets(t *testing.T) {
	dir := testrepo.Tree(t, map[string]string{
		"main.go":          "package main\n\nvar k = \"" + awsKey + "\"\n",
		"docs/setup.md":    "token: " + githubPAT + "\n",
		"blob.bin":         "\x00\x01" + githubPAT,
		"big.txt":          strings.Repeat("x", 3000) + githubPAT,
		".git/config":      githubPAT,
		"nested/.git/HEAD": githubPAT,
		"clean.txt":        "nothing to see",
		"certs/client.p12": "\x30\x82\x00\x00binary",
	})
	if err := os.Symlink(filepath.Join(dir, "main.go"), filepath.Join(dir, "link.go")); err != nil {
		t.Fatal(err)
	}
	targets, skipped := walkTree(t, dir)
	var paths []string
	for _, tg := range targets {
		paths = append(paths, tg.Path)
	}
	if want := []string{"big.txt", "blob.bin", "certs/client.p12", "clean.txt", "docs/setup.md", "main.go"}; !slices.Equal(paths, want) {
		t.Errorf("walkTree listed %v, want %v", paths, want)
	}
	if want := []Skipped{{File: "link.go", Reason: "symlink"}}; !slices.Equal(skipped, want) {
		t.Errorf("walkTree skipped %v, want %v", skipped, want)
	}
	targets = append(targets,
		Target{Path: "gone.txt", Abs: filepath.Join(dir, "gone.txt")},
		Target{Path: "blob/HEAD:app.env", Content: []byte("STRIPE=" + stripeKey + "\n")},
	)
	s := newScanner(t, Config{MaxFileSize: 2048})
	rep, err := s.ScanTargets(context.Background(), targets, 2)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("findings are sorted by file and carry their location", func(t *testing.T) {
		var got []string
		for _, f := range rep.Findings {
			got = append(got, fmt.Sprintf("%s:%d:%d %s", f.File, f.Line, f.Column, f.RuleID))
		}
		want := []string{
			"blob/HEAD:app.env:1:8 stripe-access-token",
			"certs/client.p12:0:0 pkcs12-file",
			"docs/setup.md:1:8 github-pat",
			"main.go:3:10 aws-access-token",
		}
		if !slices.Equal(got, want) {
			t.Errorf("findings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
	t.Run("binary, oversized and unreadable files are reported as skipped", func(t *testing.T) {
		want := []Skipped{
			{File: "big.txt", Reason: "too large (3.0 KiB > 2 KiB)"},
			{File: "blob.bin", Reason: "binary"},
			{File: "certs/client.p12", Reason: "binary"},
			{File: "gone.txt", Reason: "unreadable: open: no such file or directory"},
		}
		if !slices.Equal(rep.Skipped, want) {
			t.Errorf("skipped %v, want %v", rep.Skipped, want)
		}
	})
	t.Run("scanned files and bytes are counted", func(t *testing.T) {
		if rep.Files != 4 {
			t.Errorf("Files = %d, want 4", rep.Files)
		}
		if rep.Bytes <= 0 {
			t.Errorf("Bytes = %d", rep.Bytes)
		}
	})
	t.Run("the raw secrets appear nowhere in the report", func(t *testing.T) {
		js, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		for _, out := range []string{fmt.Sprintf("%+v", rep), fmt.Sprintf("%#v", rep), string(js)} {
			for _, secret := range []string{githubPAT, awsKey, stripeKey, githubPAT[4:], awsKey[4:], stripeKey[8:]} {
				if strings.Contains(out, secret) {
					t.Errorf("report holds secret %q:\n%s", secret, out)
				}
			}
		}
	})
}

func TestTooLargeMessage(t *testing.T) {
	if got, want := TooLarge(3_250_000, DefaultMaxFileSize), "too large (3.1 MiB > 2 MiB)"; got != want {
		t.Errorf("TooLarge = %q, want %q", got, want)
	}
}

func TestCancellation(t *testing.T) {
	s := newScanner(t, Config{MaxFileSize: 1 << 30})
	t.Run("a cancelled context stops ScanTargets and returns its error", func(t *testing.T) {
		targets := make([]Target, 5000)
		for i := range targets {
			targets[i] = Target{Path: fmt.Sprintf("f%d.txt", i), Content: []byte("key = " + githubPAT)}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		_, err := s.ScanTargets(ctx, targets, 2)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("a deadline inside one large file is noticed promptly", func(t *testing.T) {
		line := "secret_key = \"" + strings.Repeat("Zx8kQ2mN7vR4tY", 4) + "\" # api token password\n"
		big := []byte(strings.Repeat(line, (128<<20)/len(line)))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := s.ScanTargets(ctx, []Target{{Path: "big.txt", Content: big}}, 1)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %v to notice the deadline", d)
		}
	})
}

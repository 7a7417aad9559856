package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testrepo"
)

// randomToken returns n characters of [A-Za-z0-9], made at run time so that
// no credential-shaped literal lives in this repository.
func randomToken(t *testing.T, n int) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			t.Fatal(err)
		}
		b[i] = alphabet[k.Int64()]
	}
	return string(b)
}

// githubPAT makes a token of the classic GitHub personal access token form.
func githubPAT(t *testing.T) string { return "ghp_" + randomToken(t, 36) }

// result is one run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// sluice runs the CLI in dir, as main does.
func sluice(t *testing.T, dir string, args ...string) result {
	t.Helper()
	t.Chdir(dir)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, func(string) string { return "" })
	return result{code, stdout.String(), stderr.String()}
}

func decodeVerdict(t *testing.T, s string) gate.Verdict {
	t.Helper()
	var v gate.Verdict
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("verdict is not JSON: %v\n%s", err, s)
	}
	return v
}

func findings(v gate.Verdict, control string) []gate.Finding {
	for _, c := range v.Controls {
		if c.Name == control {
			return c.Findings
		}
	}
	return nil
}

// assertAbsent fails if any of the secrets appears whole in any output.
func assertAbsent(t *testing.T, outputs map[string]string, secrets ...string) {
	t.Helper()
	for name, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("the secret value appears whole in %s", name)
			}
		}
	}
}

func TestCheckRangeFindsAddedAndExistingSecretsInTouchedFiles(t *testing.T) {
	r := testrepo.New(t)
	old, added := githubPAT(t), githubPAT(t)
	r.Write("config/app.env", "NAME=app\nGITHUB_TOKEN="+old+"\nMODE=dev\n")
	r.Write("README.md", "# app\n")
	r.Write("untouched.env", "OTHER_TOKEN="+githubPAT(t)+"\n")
	base := r.Commit("base")
	r.Write("config/app.env", "NAME=app\nGITHUB_TOKEN="+old+"\nMODE=dev\nDEPLOY=1\nRELEASE_TOKEN="+added+"\n")
	r.Write("docs/onboarding.md", "Welcome! Ask for access.\n")
	r.Commit("head")

	out := filepath.Join(t.TempDir(), "verdict.json")
	res := sluice(t, r.Dir, "check", "--base", base, "--head", "HEAD", "--format", "json", "--output", out)
	if res.code != exitBlocked {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", res.code, exitBlocked, res.stdout, res.stderr)
	}
	v := decodeVerdict(t, res.stdout)
	if v.Schema != gate.Schema || v.Verdict != "fail" || v.Change.Files != 2 || v.Change.Base != base {
		t.Errorf("verdict header %+v %+v", v.Verdict, v.Change)
	}
	fs := findings(v, "secrets")
	type loc struct {
		file     string
		line     int
		inChange bool
	}
	var got []loc
	for _, f := range fs {
		got = append(got, loc{f.File, f.Line, f.InChange})
		if f.Rule == "" || f.Fingerprint == "" || !strings.HasSuffix(f.Redacted, "****") || len(f.Redacted) > 12 {
			t.Errorf("finding %+v lacks rule, fingerprint or redaction", f)
		}
	}
	want := []loc{{"config/app.env", 2, false}, {"config/app.env", 5, true}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("findings at %v, want %v (the untouched file must not be scanned)", got, want)
	}
	written, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(written, []byte(res.stdout)) {
		t.Error("--output differs from the JSON on stdout")
	}

	text := sluice(t, r.Dir, "check", "--base", base, "--head", "HEAD", "-v")
	if text.code != exitBlocked || !strings.Contains(text.stdout, "config/app.env:5 github-pat") || !strings.Contains(text.stdout, "FAIL: blocked by secrets") {
		t.Errorf("text verdict:\n%s", text.stdout)
	}
	assertAbsent(t, map[string]string{
		"JSON stdout": res.stdout, "JSON stderr": res.stderr, "--output": string(written),
		"text stdout": text.stdout, "text stderr": text.stderr,
	}, old, added)
}

func TestCheckScopeAddedLinesReportsOnlyWhatTheChangeAdds(t *testing.T) {
	r := testrepo.New(t)
	r.Write("app.env", "A_TOKEN="+githubPAT(t)+"\n")
	r.Write(".sluice.yaml", "version: 1\ncontrols:\n  secrets:\n    scope: added-lines\n")
	r.Commit("base")
	r.Write("app.env", "A_TOKEN=x\nB=1\n")
	r.Commit("clean edit")
	res := sluice(t, r.Dir, "check", "--format", "json")
	if res.code != exitPass {
		t.Fatalf("exit %d:\n%s%s", res.code, res.stdout, res.stderr)
	}
	r.Write("app.env", "A_TOKEN="+githubPAT(t)+"\nB=1\nC_TOKEN="+githubPAT(t)+"\n")
	r.Commit("both")
	r.Write("app.env", "A_TOKEN="+githubPAT(t)+"\nB=1\nC_TOKEN=x\nD_TOKEN="+githubPAT(t)+"\n")
	r.Commit("one more")
	res = sluice(t, r.Dir, "check", "--format", "json")
	fs := findings(decodeVerdict(t, res.stdout), "secrets")
	if res.code != exitBlocked || len(fs) != 2 || fs[0].Line != 1 || fs[1].Line != 4 {
		t.Fatalf("exit %d, findings %+v; want lines 1 and 4 (base HEAD^ by default)", res.code, fs)
	}
}

func TestCheckReportsBinaryAndOversizedFilesAsSkipped(t *testing.T) {
	r := testrepo.New(t)
	r.Write(".sluice.yaml", "version: 1\ncontrols:\n  secrets:\n    max_file_size: 1KiB\n")
	r.Commit("base")
	r.Write("logo.bin", "GIF89a\x00\x01\x02 TOKEN="+githubPAT(t))
	r.Write("big.txt", strings.Repeat("x", 2048))
	r.Write("ok.txt", "fine\n")
	r.Commit("head")
	res := sluice(t, r.Dir, "check", "--format", "json")
	v := decodeVerdict(t, res.stdout)
	skipped := map[string]string{}
	for _, c := range v.Controls {
		for _, s := range c.Skipped {
			skipped[s.File] = s.Reason
		}
	}
	if !strings.HasPrefix(skipped["logo.bin"], "binary") || !strings.HasPrefix(skipped["big.txt"], "too large") || len(skipped) != 2 {
		t.Errorf("skipped = %v; want logo.bin binary and big.txt too large", skipped)
	}
	if res.code != exitPass {
		t.Errorf("exit %d; skipped files are reported, not findings", res.code)
	}
	text := sluice(t, r.Dir, "check")
	if !strings.Contains(text.stdout, "not checked:") || !strings.Contains(text.stdout, "big.txt: secrets: too large") {
		t.Errorf("text output does not list skipped files:\n%s", text.stdout)
	}
}

func TestCheckBaselineAcceptsAFingerprintUntilItExpires(t *testing.T) {
	r := testrepo.New(t)
	r.Commit("root")
	r.Write("app.env", "A_TOKEN="+githubPAT(t)+"\n")
	r.Commit("secret")
	first := sluice(t, r.Dir, "check", "--format", "json")
	fs := findings(decodeVerdict(t, first.stdout), "secrets")
	if len(fs) != 1 {
		t.Fatalf("findings %+v", fs)
	}
	fp := fs[0].Fingerprint
	r.Write(".sluice-baseline.yaml", "version: 1\naccepted:\n  - fingerprint: "+fp+"\n    file: app.env\n    reason: revoked, kept for history\n")
	res := sluice(t, r.Dir, "check", "--format", "json")
	v := decodeVerdict(t, res.stdout)
	if res.code != exitPass || v.Controls[0].Suppressed != 1 {
		t.Fatalf("exit %d, controls %+v; want the finding accepted", res.code, v.Controls)
	}
	r.Write(".sluice-baseline.yaml", "version: 1\naccepted:\n  - fingerprint: "+fp+"\n    reason: revoked\n    expires: 2020-01-31\n  - fingerprint: feedfacefeedface\n    reason: stale\n    file: app.env\n")
	res = sluice(t, r.Dir, "check", "--format", "json")
	v = decodeVerdict(t, res.stdout)
	notes := strings.Join(v.Controls[0].Notes, "\n")
	if res.code != exitBlocked || !strings.Contains(notes, "expired on 2020-01-31") || !strings.Contains(notes, "feedfacefeedface matched no finding") {
		t.Fatalf("exit %d, notes %q; want the expired entry to stop suppressing and the unused one reported", res.code, notes)
	}
	r.Write(".sluice-baseline.yaml", "version: 1\naccepted:\n  - fingerprint: "+fp+"\n")
	res = sluice(t, r.Dir, "check")
	if res.code != exitUsage || !strings.Contains(res.stderr, ".sluice-baseline.yaml: accepted[0].reason: missing") {
		t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
	}
}

func TestCheckPathsModeScansFilesWhole(t *testing.T) {
	dir := t.TempDir()
	secret := githubPAT(t)
	if err := os.MkdirAll(filepath.Join(dir, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "docs", "onboarding.md"), []byte("# Setup\n\nUse `"+secret+"` to log in.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := sluice(t, dir, "check", "--format", "json", "docs")
	v := decodeVerdict(t, res.stdout)
	fs := findings(v, "secrets")
	if res.code != exitBlocked || len(fs) != 1 || fs[0].File != "docs/onboarding.md" || fs[0].Line != 3 || !fs[0].InChange {
		t.Fatalf("exit %d findings %+v", res.code, fs)
	}
	assertAbsent(t, map[string]string{"stdout": res.stdout, "stderr": res.stderr}, secret)
}

func TestCheckUsageAndConfigErrorsExitTwo(t *testing.T) {
	r := testrepo.New(t)
	r.Write("a.txt", "a\n")
	r.Commit("one")
	tests := []struct {
		name   string
		policy string
		args   []string
		stderr string
	}{
		{"an unknown ref", "", []string{"check", "--base", "nope"}, `--base "nope" is not a commit`},
		{"a ref that looks like a flag", "", []string{"check", "--base", "--output=x"}, "a revision cannot start with '-'"},
		{"paths and a range together", "", []string{"check", "--base", "HEAD", "a.txt"}, "not both"},
		{"a missing path", "", []string{"check", "--paths", "missing.txt"}, `--paths "missing.txt": no such file or directory`},
		{"an unknown format", "", []string{"check", "--format", "xml"}, `--format "xml"`},
		{"a policy with a bad duration", "version: 1\ncontrols:\n  secrets:\n    budget: fast\n", []string{"check"}, ".sluice.yaml:4:13: controls.secrets.budget: bad duration"},
		{"a policy with an unknown scope", "version: 1\ncontrols:\n  secrets:\n    scope: everything\n", []string{"check"}, `.sluice.yaml:4:12: controls.secrets.scope: unknown scope "everything"`},
		{"a custom rule with a bad regex", "version: 1\ncontrols:\n  secrets:\n    rules:\n      - id: acme\n        regex: 'acme_(['\n", []string{"policy", "validate"}, ".sluice.yaml:6:16: controls.secrets.rules[0].regex"},
		{"a missing policy file", "", []string{"check", "--policy", "nope.yaml"}, "nope.yaml: policy file not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(r.Dir, ".sluice.yaml")
			os.Remove(p)
			if tt.policy != "" {
				r.Write(".sluice.yaml", tt.policy)
			}
			res := sluice(t, r.Dir, tt.args...)
			if res.code != exitUsage || !strings.Contains(res.stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", res.code, res.stderr, tt.stderr)
			}
		})
	}
}

func TestPolicyValidateAcceptsAGoodPolicy(t *testing.T) {
	r := testrepo.New(t)
	r.Write(".sluice.yaml", "version: 1\ncontrols:\n  secrets:\n    budget: 3s\n    on_overrun: fail-open\n    rules:\n      - id: acme-key\n        regex: 'acme_[a-z0-9]{32}'\n        keywords: [acme_]\n  dependency-scan:\n    enabled: false\n")
	res := sluice(t, r.Dir, "policy", "validate")
	if res.code != exitPass || !strings.Contains(res.stdout, "ok, version 1; controls: secrets (fast, 3s), lint (fast, 20s), image-scan (slow, 10m0s)") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", res.code, res.stdout, res.stderr)
	}
}

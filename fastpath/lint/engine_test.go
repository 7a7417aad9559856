package lint

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/aquasecurity/trivy/pkg/iac/rego"
	iactypes "github.com/aquasecurity/trivy/pkg/iac/types"

	"github.com/sluice-ci/sluice/gate"
)

// viaTrivy lints with Trivy's own Rego scanner and file scanners: what
// sluice's checkSet must agree with.
var viaTrivy = &Linter{newEngine: newTrivyScannerEngine}

func lintBoth(t *testing.T, native, trivy *Linter, dir string) (got, want []Finding) {
	t.Helper()
	ch, err := gate.ChangeFromPaths(dir, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	a, err := native.Lint(context.Background(), ch)
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	b, err := trivy.Lint(context.Background(), ch)
	if err != nil {
		t.Fatalf("lint with Trivy's scanners: %v", err)
	}
	return a.Findings, b.Findings
}

func sameFindings(t *testing.T, got, want []Finding) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	in := func(fs []Finding, f Finding) bool { return slices.Contains(fs, f) }
	for _, f := range got {
		if !in(want, f) {
			t.Errorf("only sluice's engine: %s", f)
		}
	}
	for _, f := range want {
		if !in(got, f) {
			t.Errorf("only Trivy's scanners: %s", f)
		}
	}
	if !t.Failed() {
		t.Errorf("same findings, different order or count: %d vs %d", len(got), len(want))
	}
}

// TestEngineAgreesWithTrivyOnGolden runs every golden input through
// sluice's engine and through Trivy's scanners, all in one tree, and wants
// the same findings.
func TestEngineAgreesWithTrivyOnGolden(t *testing.T) {
	root := filepath.Join("..", "..", "testdata", "lint")
	tmp := t.TempDir()
	kinds, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		entries, err := os.ReadDir(filepath.Join(root, k.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".out") {
				continue
			}
			// Each case in a folder of its own, so that Terraform modules and
			// charts stay apart.
			dst := filepath.Join(tmp, k.Name()+"-"+e.Name(), filepath.FromSlash(caseTarget(k.Name(), e.Name())))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			copyTree(t, filepath.Join(root, k.Name(), e.Name()), dst)
		}
	}
	got, want := lintBoth(t, shared, viaTrivy, tmp)
	kindsSeen := map[Kind]bool{}
	for _, f := range got {
		kindsSeen[f.Kind] = true
	}
	for _, k := range []Kind{Dockerfile, Kubernetes, Helm, Terraform, CloudFormation} {
		if !kindsSeen[k] {
			t.Errorf("no %s finding: the comparison does not cover that kind", k)
		}
	}
	sameFindings(t, got, want)
}

// TestEngineAgreesWithTrivyOnBenchTree does the same over the benchmark's
// tree of 200 configuration files (bench/lint-tree.sh).
func TestEngineAgreesWithTrivyOnBenchTree(t *testing.T) {
	if testing.Short() {
		t.Skip("lints 200 files twice")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run bench/lint-tree.sh")
	}
	tree := filepath.Join(t.TempDir(), "tree")
	out, err := exec.Command(bash, filepath.Join("..", "..", "bench", "lint-tree.sh"), tree, "200").CombinedOutput()
	if err != nil {
		t.Fatalf("making the tree: %v\n%s", err, out)
	}
	got, want := lintBoth(t, shared, viaTrivy, tree)
	if len(got) < 500 {
		t.Errorf("only %d findings over the bench tree", len(got))
	}
	sameFindings(t, got, want)
}

// TestChecksBundle lints with a folder of checks instead of the embedded
// ones: its check reports, the embedded checks do not, and both engines
// agree.
func TestChecksBundle(t *testing.T) {
	bundle := t.TempDir()
	check := `# METADATA
# title: No Alpine images
# description: This test check reports every FROM of an Alpine image.
# custom:
#   id: SLUICE-T001
#   avd_id: SLUICE-T001
#   severity: HIGH
#   recommended_action: Use a distroless image.
#   input:
#     selector:
#     - type: dockerfile
package builtin.dockerfile.SLUICET001

import rego.v1

deny contains res if {
	some instr in input.Stages[_].Commands
	instr.Cmd == "from"
	startswith(instr.Value[0], "alpine")
	res := {"msg": "Alpine image", "startline": instr.StartLine, "endline": instr.EndLine, "filepath": instr.Path}
}
`
	if err := os.WriteFile(filepath.Join(bundle, "alpine.rego"), []byte(check), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	df := "FROM alpine:3.20\nRUN apk add --no-cache curl\n"
	if err := os.WriteFile(filepath.Join(tree, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	got, want := lintBoth(t, New(Options{ChecksBundle: bundle}),
		&Linter{opts: Options{ChecksBundle: bundle}, newEngine: newTrivyScannerEngine}, tree)
	if len(got) != 1 || got[0].Check != "SLUICE-T001" || got[0].Line != 1 || got[0].File != "Dockerfile" {
		t.Errorf("findings with the bundle: %v; want one SLUICE-T001 on Dockerfile:1", got)
	}
	sameFindings(t, got, want)

	if _, err := New(Options{ChecksBundle: filepath.Join(bundle, "alpine.rego")}).engine(); err == nil ||
		!strings.Contains(err.Error(), "not a folder") {
		t.Errorf("a bundle that is a file: %v", err)
	}
}

// TestEngineAgreesOnInlineIgnores puts Trivy's inline ignore comments in
// files of each kind: the findings they name go (with a Terraform ignore's
// condition checked), and both engines agree.
func TestEngineAgreesOnInlineIgnores(t *testing.T) {
	root := filepath.Join("..", "..", "testdata", "lint")
	tree := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(tree, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	write("df/Dockerfile", "# trivy:ignore:DS-0001\n"+read("dockerfile/fail.Dockerfile"))
	write("tf/main.tf", strings.Replace(
		strings.Replace(read("terraform/fail.tf"), "    cidr_blocks", "    #trivy:ignore:AWS-0107\n    cidr_blocks", 1),
		`resource "aws_s3_bucket" "data"`, "#trivy:ignore:AWS-0086[bucket=example-data]\n#trivy:ignore:AWS-0087[bucket=other]\n"+`resource "aws_s3_bucket" "data"`, 1))
	write("cfn/stack.yaml", strings.Replace(read("cloudformation/fail.yaml"),
		"          CidrIp:", "          # trivy:ignore:AWS-0107\n          CidrIp:", 1))
	copyTree(t, filepath.Join(root, "helm", "fail"), filepath.Join(tree, "chart"))
	write("chart/templates/pod.yaml", strings.Replace(read("helm/fail/templates/pod.yaml"),
		"  hostNetwork:", "  # trivy:ignore:KSV-0009\n  hostNetwork:", 1))

	got, want := lintBoth(t, shared, viaTrivy, tree)
	sameFindings(t, got, want)
	has := func(file, check string) bool {
		return slices.ContainsFunc(got, func(f Finding) bool { return f.File == file && f.Check == check })
	}
	for _, c := range []struct {
		file, check string
		want        bool
	}{
		{"df/Dockerfile", "DS-0001", false},
		{"df/Dockerfile", "DS-0002", true},
		{"tf/main.tf", "AWS-0107", false},
		{"tf/main.tf", "AWS-0086", false}, // the ignore's condition holds
		{"tf/main.tf", "AWS-0087", true},  // it does not
		{"cfn/stack.yaml", "AWS-0107", false},
		{"cfn/stack.yaml", "AWS-0086", true},
		// Helm drops the template's comments when it renders the chart, so
		// the ignore rule never reaches Trivy.
		{"chart/templates/pod.yaml", "KSV-0009", true},
	} {
		if has(c.file, c.check) != c.want {
			t.Errorf("%s %s reported: %v, want %v", c.file, c.check, !c.want, c.want)
		}
	}
}

// TestSubsetKeepsWhatChecksReferTo compiles for Dockerfiles only the
// checks that can run on them, and the modules those refer to, even
// checks of another input type.
func TestSubsetKeepsWhatChecksReferTo(t *testing.T) {
	check := func(pkg, typ, body string) string {
		return "# METADATA\n# custom:\n#   id: " + pkg + "\n#   input:\n#     selector:\n#     - type: " + typ +
			"\npackage builtin." + typ + "." + pkg + "\n\n" + body + "\n"
	}
	srcs := map[string]string{
		"docker.rego": check("D1", "dockerfile", "import data.builtin.kubernetes.K1\n\ndeny[msg] {\n\tK1.helper\n\tmsg := \"d\"\n}"),
		"k8s.rego":    check("K1", "kubernetes", "helper := true\n\ndeny[msg] {\n\tmsg := \"k\"\n}"),
		"k8s2.rego":   check("K2", "kubernetes", "deny[msg] {\n\tmsg := \"k2\"\n}"),
		"cloud.rego":  check("C1", "cloud", "deny[msg] {\n\tdata.builtin.cloud.C2.x\n\tmsg := \"c\"\n}"),
		"cloud2.rego": check("C2", "cloud", "x := true"),
		"lib.rego":    "package lib.util\n\nf := 1\n",
		"nosel.rego":  "# METADATA\n# custom:\n#   id: N1\npackage builtin.any.N1\n\ndeny[msg] {\n\tmsg := \"n\"\n}\n",
		"legacy.rego": "package builtin.old.L1\n\n__rego_metadata__ := {\"id\": \"L1\"}\n\ndeny[msg] {\n\tmsg := \"l\"\n}\n",
	}
	l := &checkLib{policies: map[string]*ast.Module{}}
	for name, src := range srcs {
		m, err := rego.ParseRegoModule(name, src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		l.policies[name] = m
	}
	for src, want := range map[iactypes.Source][]string{
		iactypes.SourceDockerfile: {"docker.rego", "k8s.rego", "legacy.rego", "lib.rego", "nosel.rego"},
		iactypes.SourceKubernetes: {"k8s.rego", "k8s2.rego", "legacy.rego", "lib.rego", "nosel.rego"},
		iactypes.SourceCloud:      {"cloud.rego", "cloud2.rego", "legacy.rego", "lib.rego", "nosel.rego"},
	} {
		if got := slices.Sorted(maps.Keys(l.subset(src))); !slices.Equal(got, want) {
			t.Errorf("subset for %s: %v, want %v", src, got, want)
		}
	}
}

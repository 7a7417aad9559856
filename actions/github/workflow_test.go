package github_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/actions/github"
	"github.com/sluice-ci/sluice/internal/golden"
)

// runner is a fake runner environment: the files a runner gives a step.
type runner struct {
	env          map[string]string
	stdout       bytes.Buffer
	output, summ string
}

func newRunner(t *testing.T) *runner {
	dir := t.TempDir()
	r := &runner{output: filepath.Join(dir, "output"), summ: filepath.Join(dir, "summary")}
	r.env = map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": r.output, "GITHUB_STEP_SUMMARY": r.summ}
	return r
}

func (r *runner) getenv(k string) string { return r.env[k] }

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// commandRE matches a workflow command at the start of a line, as the
// runner reads them (after leading whitespace).
var commandRE = regexp.MustCompile(`(?m)^\s*::([a-z-]+)(?: ([^:]*))?::(.*)$`)

func TestAnnotationsCannotBeForgedByFileNamesOrMessages(t *testing.T) {
	r := newRunner(t)
	wf := github.NewWorkflow(&r.stdout, r.getenv)
	err := wf.Annotate(github.Annotation{
		Level: github.Error, File: "evil\n::add-mask::x,line=1.txt", Line: 3, Column: 2,
		Title: "a:b,c", Message: "100% bad\r\n::error file=x::forged",
	})
	if err != nil {
		t.Fatal(err)
	}
	out := r.stdout.String()
	cmds := commandRE.FindAllStringSubmatch(out, -1)
	if len(cmds) != 1 || strings.Count(out, "\n") != 1 {
		t.Fatalf("want exactly one command line, got %q", out)
	}
	want := "::error col=2,file=evil%0A%3A%3Aadd-mask%3A%3Ax%2Cline=1.txt,line=3,title=a%3Ab%2Cc::100%25 bad%0D%0A::error file=x::forged\n"
	if out != want {
		t.Errorf("annotation\n got %q\nwant %q", out, want)
	}
}

func TestOutputsGoToTheOutputFileAndForgeriesAreRefused(t *testing.T) {
	r := newRunner(t)
	wf := github.NewWorkflow(&r.stdout, r.getenv)
	if err := wf.SetOutput("verdict", "fail"); err != nil {
		t.Fatal(err)
	}
	if err := wf.SetOutput("x", "a\n_GitHubActionsFileCommandDelimeter_\nverdict<<EOF\npass"); err == nil {
		t.Error("a value holding the heredoc delimiter was accepted")
	}
	got := read(t, r.output)
	if !strings.HasPrefix(got, "verdict<<") || strings.Contains(got, "pass") {
		t.Errorf("output file %q", got)
	}
}

func TestWriteFailuresAreErrorsNotPanics(t *testing.T) {
	r := newRunner(t)
	r.env["GITHUB_OUTPUT"] = t.TempDir() // a folder: opening it for append fails
	r.env["GITHUB_STEP_SUMMARY"] = ""
	wf := github.NewWorkflow(&r.stdout, r.getenv)
	if err := wf.SetOutput("verdict", "pass"); err == nil {
		t.Error("SetOutput into a folder succeeded")
	}
	if err := wf.AddSummary("# x"); err == nil || !strings.Contains(err.Error(), "GITHUB_STEP_SUMMARY is not set") {
		t.Errorf("AddSummary: %v", err)
	}
	broken := github.NewWorkflow(failingWriter{}, r.getenv)
	if err := broken.Annotate(github.Annotation{Level: github.Notice, Message: "m"}); err == nil {
		t.Error("an annotation written to a failing writer reported no error")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestInputsTreatEmptyAsNotGiven(t *testing.T) {
	r := newRunner(t)
	r.env["INPUT_FETCH-DEPTH"] = " 10 "
	r.env["INPUT_ENFORCE"] = "maybe"
	wf := github.NewWorkflow(&r.stdout, r.getenv)
	if got := wf.Input("fetch-depth"); got != "10" {
		t.Errorf("Input = %q", got)
	}
	if b, err := wf.InputBool("check-run", true); err != nil || !b {
		t.Errorf("an absent boolean input gives %v, %v; want the default", b, err)
	}
	if _, err := wf.InputBool("enforce", true); err == nil || !strings.Contains(err.Error(), `input "enforce"`) {
		t.Errorf("a bad boolean input: %v", err)
	}
}

func TestUntrustedTextIsFencedByStopCommands(t *testing.T) {
	r := newRunner(t)
	wf := github.NewWorkflow(&r.stdout, r.getenv)
	text := func(w io.Writer) error { _, err := io.WriteString(w, "  ::add-mask::forged\n"); return err }
	if err := wf.Untrusted(text); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n")
	token, ok := strings.CutPrefix(lines[0], "::stop-commands::")
	if !ok || len(token) < 32 || lines[len(lines)-1] != "::"+token+"::" {
		t.Fatalf("not fenced: %q", r.stdout.String())
	}
	r.stdout.Reset()
	if err := wf.Untrusted(text); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.stdout.String(), token) {
		t.Error("the resume token is reused, so text could guess it")
	}
}

func TestMaskRegistersEachLine(t *testing.T) {
	r := newRunner(t)
	wf := github.NewWorkflow(&r.stdout, r.getenv)
	if err := wf.Mask("p4ss\nw0rd"); err != nil {
		t.Fatal(err)
	}
	if got := r.stdout.String(); got != "::add-mask::p4ss\n::add-mask::w0rd\n" {
		t.Errorf("masks %q", got)
	}
}

func TestSummaryMatchesGolden(t *testing.T) {
	v := golden.Verdict(t, "../testdata/verdict.json")
	golden.Check(t, "testdata/summary.md", []byte(github.Summary(v)))
}

func TestReportWritesOutputsSummaryAndAnnotations(t *testing.T) {
	r := newRunner(t)
	wf := github.NewWorkflow(&r.stdout, r.getenv)
	v := golden.Verdict(t, "../testdata/verdict.json")
	if err := wf.Report(v, github.Files{Verdict: "/tmp/v.json", SARIF: "/tmp/s.sarif"}); err != nil {
		t.Fatal(err)
	}
	outputs := read(t, r.output)
	for _, want := range []string{"verdict<<", "\nfail\n", "findings<<", "\n3\n", "blocking-controls<<", "\nsecrets\n", "verdict-file<<", "/tmp/v.json", "sarif-file<<"} {
		if !strings.Contains(outputs, want) {
			t.Errorf("outputs lack %q:\n%s", want, outputs)
		}
	}
	if !strings.Contains(read(t, r.summ), "## sluice: :x: fail (blocked by `secrets`)") {
		t.Errorf("summary:\n%s", read(t, r.summ))
	}
	cmds := commandRE.FindAllStringSubmatch(r.stdout.String(), -1)
	var kinds []string
	for _, c := range cmds {
		kinds = append(kinds, c[1])
	}
	// Two findings in the change of a blocking control are errors; the one
	// already present is a notice; the warning is a warning.
	if strings.Join(kinds, " ") != "error notice error warning" {
		t.Errorf("commands %v:\n%s", kinds, r.stdout.String())
	}
	if !strings.Contains(cmds[0][2], "file=config/app.env,line=5") {
		t.Errorf("first annotation properties %q", cmds[0][2])
	}
}

package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testrepo"
	"github.com/sluice-ci/sluice/slowpath/deep"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// binary builds sluice once per test run, the way a release does, and
// returns its path.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "sluice")
		cmd := exec.Command("go", "build", "-trimpath", "-o", builtBin, ".")
		cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// TestMain removes the binary the tests built, and Trivy's per-process
// temporary folder, as main does when the process ends.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	if err := deep.Cleanup(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// baseEnv is a clean environment for child processes: git isolated from
// the user's configuration.
func baseEnv(home string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C",
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.test",
	}
}

type proc struct {
	code           int
	stdout, stderr string
}

func runBinary(t *testing.T, dir string, env []string, stdin string, name string, args ...string) proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return proc{code, stdout.String(), stderr.String()}
}

// workflowCommand matches a workflow command as the runner reads a line.
var workflowCommand = regexp.MustCompile(`^\s*::([A-Za-z0-9-]+)(?: ([^:]*))?::(.*)$`)

// commands returns the workflow commands the runner would act on in out,
// honouring ::stop-commands::.
func commands(out string) [][]string {
	var cmds [][]string
	stopped := ""
	for _, line := range strings.Split(out, "\n") {
		m := workflowCommand.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if stopped != "" {
			if m[1] == stopped && m[3] == "" {
				stopped = ""
			}
			continue
		}
		if m[1] == "stop-commands" {
			stopped = m[3]
			continue
		}
		cmds = append(cmds, m[1:])
	}
	return cmds
}

// TestGitHubActionsRunOfThePullRequestEvent runs the built binary as the
// action's check step does on a runner: INPUT_* variables, the event
// payload, the output and summary files.
func TestGitHubActionsRunOfThePullRequestEvent(t *testing.T) {
	bin := binary(t)
	r := testrepo.New(t)
	r.Write("README.md", "# app\n")
	base := r.Commit("base")
	r.Git("checkout", "-q", "-b", "changes")
	secret := githubPAT(t)
	r.Write("config/app.env", "NAME=app\nGITHUB_TOKEN="+secret+"\n")
	// A file name that tries to forge workflow commands in every output.
	r.Write("evil\n::warning::forged,title=x.env", "DEPLOY_TOKEN="+secret+"\n")
	r.Write("docs/guide.md", "fine\n")
	head := r.Commit("changes")
	// The default branch moved on after the branch was cut: the range is
	// from the merge base, not from base.sha.
	r.Git("checkout", "-q", "main")
	r.Write("later.md", "later\n")
	moved := r.Commit("main moves on")
	r.Git("checkout", "-q", "changes")

	tmp := t.TempDir()
	payload, err := os.ReadFile("testdata/pull_request.json")
	if err != nil {
		t.Fatal(err)
	}
	payload = bytes.ReplaceAll(bytes.ReplaceAll(payload, []byte("BASE_SHA"), []byte(moved)), []byte("HEAD_SHA"), []byte(head))
	event := filepath.Join(tmp, "event.json")
	os.WriteFile(event, payload, 0o644)
	outputFile, summaryFile := filepath.Join(tmp, "output"), filepath.Join(tmp, "summary.md")
	runnerTemp := filepath.Join(tmp, "runner")
	os.Mkdir(runnerTemp, 0o755)
	env := append(baseEnv(tmp),
		"GITHUB_ACTIONS=true", "CI=true", "GITHUB_EVENT_NAME=pull_request", "GITHUB_EVENT_PATH="+event,
		"GITHUB_OUTPUT="+outputFile, "GITHUB_STEP_SUMMARY="+summaryFile, "RUNNER_TEMP="+runnerTemp,
		"GITHUB_SHA="+head, "GITHUB_WORKSPACE="+r.Dir, "GITHUB_REPOSITORY=Codertocat/Hello-World",
		"INPUT_POLICY=", "INPUT_IMAGES=", "INPUT_FORMAT=text", "INPUT_ENFORCE=true", "INPUT_BASE=", "INPUT_HEAD=",
		"INPUT_FETCH-DEPTH=50", "INPUT_SARIF-FILE=", "INPUT_CHECK-RUN=false", "INPUT_QUEUE-URL=",
	)
	res := runBinary(t, r.Dir, env, "", bin, "check", "--github")
	if res.code != exitBlocked {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, exitBlocked, res.stdout, res.stderr)
	}

	outputs := readFile(t, outputFile)
	for _, want := range []string{"verdict<<", "\nfail\n", "findings<<", "\n2\n", "blocking-controls<<", "\nsecrets\n", "verdict-file<<", "sarif-file<<"} {
		if !strings.Contains(outputs, want) {
			t.Errorf("GITHUB_OUTPUT lacks %q:\n%s", want, outputs)
		}
	}
	verdictPath := filepath.Join(runnerTemp, "sluice-verdict.json")
	verdictJSON := readFile(t, verdictPath)
	var v gate.Verdict
	if err := json.Unmarshal([]byte(verdictJSON), &v); err != nil {
		t.Fatal(err)
	}
	if v.Change.Base != base || v.Change.Head != head || v.Change.BaseSource != "pull_request event" || v.Change.Files != 3 {
		t.Errorf("change %+v; want the merge base %s..%s, 3 files", v.Change, base, head)
	}
	sarifLog := readFile(t, filepath.Join(runnerTemp, "sluice.sarif"))
	if !strings.Contains(sarifLog, `"ruleId": "secrets/github-pat"`) {
		t.Errorf("SARIF lacks the finding")
	}

	summary := readFile(t, summaryFile)
	for _, want := range []string{"## sluice: :x: fail (blocked by `secrets`)", "| `secrets` | :x: failed |", "config/app.env:2", "### Findings (2)", "(base: pull\\_request event)"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}

	cmds := commands(res.stdout)
	var errorsOn []string
	for _, c := range cmds {
		switch c[0] {
		case "error":
			errorsOn = append(errorsOn, c[1])
		case "group", "endgroup", "notice":
		default:
			t.Errorf("unexpected workflow command %q %q %q", c[0], c[1], c[2])
		}
		if strings.Contains(c[1]+c[2], "forged") && !strings.Contains(c[1], "%0A%3A%3Awarning%3A%3Aforged%2Ctitle=x.env") {
			t.Errorf("an unescaped forged name reached a command: %q", c)
		}
	}
	if len(errorsOn) != 2 || !strings.HasPrefix(errorsOn[0], "col=") || !strings.Contains(errorsOn[0], "file=config/app.env,line=2") {
		t.Errorf("error annotations %q", errorsOn)
	}
	for _, want := range []string{"sluice: secrets running", "sluice: secrets failed in", "::group::sluice verdict (text)", "::stop-commands::"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, res.stdout)
		}
	}
	assertAbsent(t, map[string]string{
		"stdout": res.stdout, "stderr": res.stderr, "GITHUB_OUTPUT": outputs, "GITHUB_STEP_SUMMARY": summary,
		"verdict file": verdictJSON, "SARIF": sarifLog,
	}, secret)

	t.Run("enforce false reports and passes", func(t *testing.T) {
		env := append(slicesWithout(env, "INPUT_ENFORCE="), "INPUT_ENFORCE=false")
		res := runBinary(t, r.Dir, env, "", bin, "check")
		if res.code != exitPass || !strings.Contains(res.stdout, "enforce is false") {
			t.Errorf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
	})
	t.Run("a push deleting a branch has nothing to check", func(t *testing.T) {
		del := filepath.Join(tmp, "delete.json")
		os.WriteFile(del, []byte(`{"ref":"refs/heads/x","before":"`+head+`","after":"0000000000000000000000000000000000000000","deleted":true}`), 0o644)
		env := append(slicesWithout(slicesWithout(env, "GITHUB_EVENT_NAME="), "GITHUB_EVENT_PATH="), "GITHUB_EVENT_NAME=push", "GITHUB_EVENT_PATH="+del)
		res := runBinary(t, r.Dir, env, "", bin, "check")
		if res.code != exitPass || !strings.Contains(res.stdout, "nothing to check") {
			t.Errorf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
	})
}

func slicesWithout(env []string, prefix string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPrePushHookRefusesASecretAndLetsACleanPushThrough installs the hook
// with the built binary and pushes to a local bare remote with git.
func TestPrePushHookRefusesASecretAndLetsACleanPushThrough(t *testing.T) {
	bin := binary(t)
	home := t.TempDir()
	env := baseEnv(home)
	remote := filepath.Join(t.TempDir(), "remote.git")
	git := func(dir string, args ...string) proc { return runBinary(t, dir, env, "", "git", args...) }
	if p := git(".", "init", "-q", "--bare", "-b", "main", remote); p.code != 0 {
		t.Fatal(p.stderr)
	}
	r := testrepo.New(t)
	r.Git("remote", "add", "origin", remote)

	inst := runBinary(t, r.Dir, env, "", bin, "hook", "install")
	if inst.code != 0 || !strings.Contains(inst.stdout, "installed") {
		t.Fatalf("hook install: %d %s %s", inst.code, inst.stdout, inst.stderr)
	}
	again := runBinary(t, r.Dir, env, "", bin, "hook", "install")
	if again.code != 0 || !strings.Contains(again.stdout, "updated") {
		t.Errorf("a second install: %d %s %s", again.code, again.stdout, again.stderr)
	}

	r.Write("README.md", "# app\n")
	clean := r.Commit("clean")
	if p := git(r.Dir, "push", "-q", "origin", "main"); p.code != 0 {
		t.Fatalf("a clean first push was refused:\n%s", p.stderr)
	}

	secret := githubPAT(t)
	r.Write("deploy.env", "TOKEN="+secret+"\n")
	r.Commit("add a token")
	p := git(r.Dir, "push", "origin", "main")
	if p.code == 0 {
		t.Fatal("a push adding a secret went through")
	}
	for _, want := range []string{"deploy.env:1 github-pat", "push refused"} {
		if !strings.Contains(p.stderr, want) {
			t.Errorf("push output lacks %q:\n%s", want, p.stderr)
		}
	}
	if got := git(remote, "rev-parse", "main").stdout; strings.TrimSpace(got) != clean {
		t.Errorf("the remote moved to %s", got)
	}
	assertAbsent(t, map[string]string{"push stderr": p.stderr, "push stdout": p.stdout}, secret)

	// Fixed on a new branch: the branch is checked from where it left
	// origin/main, and goes through.
	r.Git("reset", "-q", "--hard", clean)
	r.Git("checkout", "-q", "-b", "topic")
	r.Write("docs/guide.md", "how to\n")
	r.Commit("docs")
	if p := git(r.Dir, "push", "-q", "origin", "topic"); p.code != 0 {
		t.Fatalf("a clean new branch was refused:\n%s", p.stderr)
	}
	// Deleting a branch checks nothing.
	if p := git(r.Dir, "push", "-q", "origin", ":topic"); p.code != 0 {
		t.Errorf("deleting a branch was refused:\n%s", p.stderr)
	}
}

// TestInstallScriptVerifiesTheChecksum runs action/install.sh against a
// local file server holding a release archive of the built binary.
func TestInstallScriptVerifiesTheChecksum(t *testing.T) {
	bin := binary(t)
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("the action installs on Linux and macOS")
	}
	const version = "9.8.7"
	name := fmt.Sprintf("sluice_%s_%s_%s", version, runtime.GOOS, runtime.GOARCH)
	archive := tarGz(t, name+"/sluice", bin)
	sum := sha256.Sum256(archive)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v"+version+"/"+name+".tar.gz" {
			http.NotFound(w, r)
			return
		}
		w.Write(archive)
	}))
	defer srv.Close()

	script, err := filepath.Abs("../../action/install.sh")
	if err != nil {
		t.Fatal(err)
	}
	install := func(t *testing.T, checksums, pinned string, extra ...string) (proc, string) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "checksums.txt"), []byte(checksums), 0o644)
		os.WriteFile(filepath.Join(dir, "VERSION"), []byte(pinned+"\n"), 0o644)
		tmp := t.TempDir()
		arch := map[string]string{"amd64": "X64", "arm64": "ARM64"}[runtime.GOARCH]
		osName := map[string]string{"linux": "Linux", "darwin": "macOS"}[runtime.GOOS]
		env := append(baseEnv(tmp), "ACTION_DIR="+dir, "RUNNER_OS="+osName, "RUNNER_ARCH="+arch, "RUNNER_TEMP="+tmp,
			"SLUICE_DOWNLOAD_URL="+srv.URL)
		return runBinary(t, tmp, append(env, extra...), "", "bash", script), tmp
	}
	good := hex.EncodeToString(sum[:]) + "  " + name + ".tar.gz\n"
	t.Run("the pinned version with a matching checksum installs", func(t *testing.T) {
		p, tmp := install(t, good, version)
		want := filepath.Join(tmp, "sluice-install", name, "sluice")
		if p.code != 0 || !strings.Contains(p.stdout, "bin="+want) {
			t.Fatalf("exit %d\n%s%s", p.code, p.stdout, p.stderr)
		}
	})
	t.Run("a mismatched checksum fails and installs nothing", func(t *testing.T) {
		bad := strings.Repeat("0", 64) + "  " + name + ".tar.gz\n"
		p, tmp := install(t, bad, version)
		if p.code == 0 || !strings.Contains(p.stderr, "checksum mismatch") {
			t.Fatalf("exit %d\n%s%s", p.code, p.stdout, p.stderr)
		}
		if _, err := os.Stat(filepath.Join(tmp, "sluice-install", name)); err == nil {
			t.Error("the archive was unpacked anyway")
		}
	})
	t.Run("another version needs its sha256", func(t *testing.T) {
		p, _ := install(t, good, "1.0.0", "SLUICE_VERSION=v"+version)
		if p.code == 0 || !strings.Contains(p.stderr, "give its archive's sha256") {
			t.Fatalf("exit %d\n%s%s", p.code, p.stdout, p.stderr)
		}
		p, _ = install(t, "", "1.0.0", "SLUICE_VERSION=v"+version, "SLUICE_SHA256="+hex.EncodeToString(sum[:]))
		if p.code != 0 {
			t.Fatalf("with its sha256: exit %d\n%s%s", p.code, p.stdout, p.stderr)
		}
	})
	t.Run("an unreleased commit says to use a release", func(t *testing.T) {
		p, _ := install(t, "", "unreleased")
		if p.code == 0 || !strings.Contains(p.stderr, "not a release") {
			t.Fatalf("exit %d\n%s%s", p.code, p.stdout, p.stderr)
		}
	})
}

func tarGz(t *testing.T, name, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	dir, _, _ := strings.Cut(name, "/")
	tw.WriteHeader(&tar.Header{Name: dir + "/", Mode: 0o755, Typeflag: tar.TypeDir})
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg})
	tw.Write(data)
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-ci/sluice/internal/testrepo"
)

// runEnv runs the CLI in dir with the given environment, as main does.
func runEnv(t *testing.T, dir string, env map[string]string, args ...string) result {
	t.Helper()
	t.Chdir(dir)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, func(k string) string { return env[k] })
	return result{code, stdout.String(), stderr.String()}
}

func actionsEnv(t *testing.T) map[string]string {
	dir := t.TempDir()
	return map[string]string{
		"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": filepath.Join(dir, "out"), "GITHUB_STEP_SUMMARY": filepath.Join(dir, "sum"),
		"RUNNER_TEMP": dir,
	}
}

func TestActionsModeMasksTheQueuePasswordAndRefusesBadInputs(t *testing.T) {
	r := testrepo.New(t)
	r.Write("a.txt", "a\n")
	r.Commit("one")
	env := actionsEnv(t)
	env["INPUT_QUEUE-URL"] = "postgres://sluice:s3cr3t-pw@db.internal:5432/q"
	res := runEnv(t, r.Dir, env, "check", "--paths", "a.txt")
	if res.code != exitPass {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if !strings.HasPrefix(res.stdout, "::add-mask::s3cr3t-pw\n") {
		t.Errorf("the password is not masked before anything else is printed:\n%s", res.stdout)
	}
	if strings.Count(res.stdout+res.stderr, "s3cr3t-pw") != 1 {
		t.Error("the password appears outside its mask command")
	}

	env = actionsEnv(t)
	env["INPUT_FETCH-DEPTH"] = "deep"
	env["GITHUB_EVENT_NAME"], env["GITHUB_EVENT_PATH"] = "push", filepath.Join(t.TempDir(), "none.json")
	res = runEnv(t, r.Dir, env, "check")
	if res.code != exitUsage || !strings.Contains(res.stdout, "::error title=sluice::input fetch-depth \"deep\"") {
		t.Errorf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	env["INPUT_FETCH-DEPTH"] = ""
	env["INPUT_FORMAT"] = "html"
	res = runEnv(t, r.Dir, env, "check")
	if res.code != exitUsage || !strings.Contains(res.stderr, `input format "html"`) {
		t.Errorf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

func TestCheckRunIsPublishedOnTheHeadCommit(t *testing.T) {
	r := testrepo.New(t)
	r.Write("a.txt", "a\n")
	r.Commit("base")
	secret := githubPAT(t)
	r.Write("app.env", "TOKEN="+secret+"\n")
	head := r.Commit("head")

	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		b, _ := io.ReadAll(req.Body)
		bodies = append(bodies, req.Method+" "+req.URL.Path+" "+string(b))
		w.Header().Set("Content-Type", "application/json")
		switch req.Method {
		case http.MethodGet:
			io.WriteString(w, `{"total_count":0,"check_runs":[]}`)
		case http.MethodPost:
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"id":42}`)
		}
	}))
	defer srv.Close()
	env := map[string]string{"GITHUB_TOKEN": "t", "GITHUB_API_URL": srv.URL, "GITHUB_REPOSITORY": "acme/app"}
	res := runEnv(t, r.Dir, env, "check", "--check-run")
	if res.code != exitBlocked || !strings.Contains(res.stdout, "sluice: check run 42 on "+head) {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if len(bodies) != 2 || !strings.HasPrefix(bodies[1], "POST /repos/acme/app/check-runs ") {
		t.Fatalf("requests %q", bodies)
	}
	var body struct {
		HeadSHA    string `json:"head_sha"`
		Conclusion string `json:"conclusion"`
		Output     struct {
			Annotations []struct {
				Path  string `json:"path"`
				Level string `json:"annotation_level"`
			} `json:"annotations"`
		} `json:"output"`
	}
	json.Unmarshal([]byte(strings.SplitN(bodies[1], " ", 3)[2]), &body)
	if body.HeadSHA != head || body.Conclusion != "failure" || len(body.Output.Annotations) != 1 || body.Output.Annotations[0].Path != "app.env" || body.Output.Annotations[0].Level != "failure" {
		t.Errorf("check run %+v", body)
	}
	assertAbsent(t, map[string]string{"check run requests": strings.Join(bodies, "\n")}, secret)

	env["GITHUB_REPOSITORY"] = ""
	res = runEnv(t, r.Dir, env, "check", "--check-run")
	if res.code != exitUsage || !strings.Contains(res.stderr, "GITHUB_REPOSITORY") {
		t.Errorf("without a repository: exit %d\n%s", res.code, res.stderr)
	}
}

func TestActionsModeAnnotatesAPolicyErrorOnItsLine(t *testing.T) {
	r := testrepo.New(t)
	r.Write(".sluice.yaml", "version: 1\ncontrols:\n  secrets:\n    budget: fast\n")
	r.Commit("bad policy")
	env := actionsEnv(t)
	env["GITHUB_WORKSPACE"] = r.Dir
	res := runEnv(t, r.Dir, env, "check", "--paths", ".sluice.yaml")
	if res.code != exitUsage {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "::error col=") || !strings.Contains(res.stdout, "file=.sluice.yaml,line=4,title=sluice::") {
		t.Errorf("no annotation on the policy's line:\n%s", res.stdout)
	}
}

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/budgets"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/internal/testrepo"
	"github.com/sluice-ci/sluice/slowpath/queue"
)

// checkRunAPI serves GitHub's check-run endpoints for acme/app as its REST
// documentation describes them: list by commit and name, create (201),
// update; and, while limited, the primary rate limit's 403 (remaining 0,
// reset an hour away), or once a secondary rate limit with Retry-After.
type checkRunAPI struct {
	mu        sync.Mutex
	limited   bool
	secondary bool
	runs      map[string]map[string]any // by name
	bodies    []string
	nextID    int
}

func (f *checkRunAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, _ := io.ReadAll(r.Body)
	f.bodies = append(f.bodies, r.Method+" "+r.URL.Path+" "+string(data))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if r.Header.Get("Authorization") != "Bearer gh-test-token" {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"message":"Bad credentials"}`)
		return
	}
	if f.limited {
		w.Header().Set("X-Ratelimit-Remaining", "0")
		w.Header().Set("X-Ratelimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"message":"API rate limit exceeded for installation ID 1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}`)
		return
	}
	if f.secondary {
		f.secondary = false
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`)
		return
	}
	var body map[string]any
	if len(data) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"message":"Problems parsing JSON"}`)
			return
		}
	}
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/repos/acme/app/commits/") && strings.HasSuffix(r.URL.Path, "/check-runs"):
		sha := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/repos/acme/app/commits/"), "/check-runs")
		runs := []map[string]any{}
		if run, ok := f.runs[r.URL.Query().Get("check_name")]; ok && run["head_sha"] == sha {
			runs = append(runs, run)
		}
		json.NewEncoder(w).Encode(map[string]any{"total_count": len(runs), "check_runs": runs})
	case r.Method == http.MethodPost && r.URL.Path == "/repos/acme/app/check-runs":
		name, _ := body["name"].(string)
		if name == "" || body["head_sha"] == nil {
			w.WriteHeader(http.StatusUnprocessableEntity)
			io.WriteString(w, `{"message":"Invalid request."}`)
			return
		}
		f.nextID++
		body["id"] = f.nextID
		f.runs[name] = body
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(body)
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/repos/acme/app/check-runs/"):
		id, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/repos/acme/app/check-runs/"))
		for name, run := range f.runs {
			if run["id"] == id {
				for k, v := range body {
					run[k] = v
				}
				f.runs[name] = run
				json.NewEncoder(w).Encode(run)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"message":"Not Found"}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"message":"Not Found"}`)
	}
}

// TestWorkerPublishesCheckRuns: check --queue in a GitHub repository, the
// worker drains while GitHub rate-limits it (results stored, publishes
// recorded as retrying and shown by status), then the next drain publishes
// one check run per deep control on the checked commit, through one more
// (secondary) rate limit.
func TestWorkerPublishesCheckRuns(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			url := testdb.For(t, driver)
			repo := testrepo.New(t)
			repo.Write("main.go", "package main\n")
			repo.Commit("first")
			// secrets overruns a 1µs budget and is deferred: the worker re-runs
			// it and finds the planted token; the image scan has no analyzer in
			// this build, fails its one attempt and concludes fail-closed.
			repo.Write(".sluice.yaml", "version: 1\nqueue:\n  max_attempts: 1\ncontrols:\n  secrets:\n    budget: 1us\n    on_overrun: defer\n")
			secret := githubPAT(t)
			repo.Write("app.env", "TOKEN="+secret+"\n")
			head := repo.Commit("second")

			api := &checkRunAPI{runs: map[string]map[string]any{}, limited: true}
			srv := httptest.NewServer(api)
			defer srv.Close()
			env := map[string]string{"GITHUB_REPOSITORY": "acme/app"}
			res := runEnv(t, repo.Dir, env, "check", "--queue", url, "--base", "HEAD^", "--format", "json", "--image", digestRef)
			if v := decodeVerdict(t, res.stdout); res.code != exitPass || len(v.Deferred) != 2 {
				t.Fatalf("check: exit %d, deferred %+v\n%s", res.code, v.Deferred, res.stderr)
			}

			env = map[string]string{"GITHUB_TOKEN": "gh-test-token", "GITHUB_API_URL": srv.URL}
			dr := runEnv(t, repo.Dir, env, "worker", "--queue", url, "--drain")
			if dr.code != exitBlocked || !strings.Contains(dr.stdout, "1 completed, 1 failed") {
				t.Fatalf("drain: exit %d\n%s\n%s", dr.code, dr.stdout, dr.stderr)
			}
			if len(api.runs) != 0 {
				t.Fatalf("check runs created while rate-limited: %v", api.runs)
			}
			rep := statusJSON(t, repo.Dir, url, head)
			for _, j := range rep.Jobs {
				cr := j.CheckRun
				if cr == nil || cr.State != queue.PublishRetrying || cr.Attempts != 1 || !strings.Contains(cr.Error, "rate limit") || cr.Repo != "acme/app" || cr.HeadSHA != head {
					t.Errorf("job %s (%s) after a rate-limited publish: check run %+v", j.Job, j.Kind, cr)
				}
				if j.Result == nil && j.State != queue.StateFailed {
					t.Errorf("job %s: the result must be stored whatever GitHub answers: %+v", j.Job, j)
				}
			}
			if st := runEnv(t, repo.Dir, nil, "status", "--queue", url, "--commit", head); !strings.Contains(st.stdout, "check run on acme/app@"+head[:12]+": retrying after 1 of 5 publish attempt(s)") {
				t.Errorf("status text does not show the pending publish:\n%s", st.stdout)
			}

			api.mu.Lock()
			api.limited, api.secondary = false, true
			api.mu.Unlock()
			dr = runEnv(t, repo.Dir, env, "worker", "--queue", url, "--drain")
			if dr.code != exitPass {
				t.Fatalf("second drain (nothing queued, publishes pending): exit %d\n%s\n%s", dr.code, dr.stdout, dr.stderr)
			}
			secrets, image := api.runs["sluice / secrets"], api.runs["sluice / image-scan"]
			if len(api.runs) != 2 || secrets == nil || image == nil {
				t.Fatalf("want the check runs sluice / secrets and sluice / image-scan, got %v", api.runs)
			}
			if secrets["head_sha"] != head || secrets["conclusion"] != "failure" || secrets["status"] != "completed" {
				t.Errorf("secrets check run: %v", secrets)
			}
			out := secrets["output"].(map[string]any)
			anns := out["annotations"].([]any)
			if len(anns) != 1 {
				t.Fatalf("secrets annotations: %v", anns)
			}
			a := anns[0].(map[string]any)
			if a["path"] != "app.env" || a["start_line"] != float64(1) || a["annotation_level"] != "failure" {
				t.Errorf("annotation %v", a)
			}
			if !strings.Contains(out["summary"].(string), "| Severity | Findings |") {
				t.Errorf("secrets summary lacks the counts by severity:\n%s", out["summary"])
			}
			iout := image["output"].(map[string]any)
			if image["head_sha"] != head || image["conclusion"] != "failure" || !strings.Contains(iout["summary"].(string), "fail-closed") ||
				!strings.Contains(iout["summary"].(string), "sluice db fetch") {
				t.Errorf("image-scan check run: %v", image)
			}
			for _, j := range statusJSON(t, repo.Dir, url, head).Jobs {
				if cr := j.CheckRun; cr == nil || cr.State != queue.PublishDone || cr.ID == 0 || cr.Error != "" {
					t.Errorf("job %s after publishing: %+v", j.Job, cr)
				}
			}
			assertAbsent(t, map[string]string{"GitHub requests": strings.Join(api.bodies, "\n")}, secret)

			// A third run publishes nothing again.
			n := len(api.bodies)
			runEnv(t, repo.Dir, env, "worker", "--queue", url, "--drain")
			if len(api.bodies) != n {
				t.Errorf("a drain with nothing to publish sent %d requests", len(api.bodies)-n)
			}
		})
	}
}

func statusJSON(t *testing.T, dir, url, head string) queue.Report {
	t.Helper()
	st := runEnv(t, dir, nil, "status", "--queue", url, "--commit", head, "--format", "json")
	var rep queue.Report
	if err := json.Unmarshal([]byte(st.stdout), &rep); err != nil {
		t.Fatalf("status JSON: %v\n%s%s", err, st.stdout, st.stderr)
	}
	return rep
}

func TestCheckReportConcludesByTheControlsMode(t *testing.T) {
	pol := gate.DefaultPolicy(catalog())
	pol.Control("image-scan").Budget.OnError = budgets.FailOpen
	findings := []gate.Finding{
		{Rule: "CVE-2024-1", Severity: "HIGH", File: "go.sum", Line: 3, Message: "x"},
		{Rule: "CVE-2024-2", Severity: "CRITICAL", Message: "y"},
		{Rule: "CVE-2024-3", Severity: "HIGH", File: "go.sum", Message: "z"},
	}
	for _, tt := range []struct {
		name        string
		c           queue.Conclusion
		conclusion  string
		summary     string
		annotations int
	}{
		{"a clean result succeeds", queue.Conclusion{Control: "dependency-scan", State: queue.StateCompleted, Status: "passed"}, "success", "No findings", 0},
		{"findings fail, counted by severity, annotated where they have a file", queue.Conclusion{Control: "dependency-scan", State: queue.StateCompleted, Status: "failed", Findings: findings},
			"failure", "| CRITICAL | 1 |\n| HIGH | 2 |", 2},
		{"a final failure under fail-closed fails", queue.Conclusion{Control: "dependency-scan", State: queue.StateFailed, Status: "errored", Error: "boom", Attempts: 5},
			"failure", "`on_error: fail-closed`", 0},
		{"a final failure under fail-open is neutral and says why", queue.Conclusion{Control: "image-scan", State: queue.StateFailed, Status: "overran", Error: "ran past its budget", Attempts: 5},
			"neutral", "ran past its budget after 5 attempts and was not checked. The policy's `on_error: fail-open`", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := checkReport(tt.c, pol)
			if r.Conclusion != tt.conclusion || !strings.Contains(r.Summary, tt.summary) || len(r.Annotations) != tt.annotations {
				t.Errorf("conclusion %q, %d annotations, summary:\n%s", r.Conclusion, len(r.Annotations), r.Summary)
			}
			if r.Name != "sluice / "+tt.c.Control {
				t.Errorf("name %q", r.Name)
			}
		})
	}
}

// TestActionInputQueueURLRecordsTheRepository: in GitHub Actions the
// action's queue-url input is the queue, and the jobs a check defers there
// carry the repository and commit their check runs go to.
func TestActionInputQueueURLRecordsTheRepository(t *testing.T) {
	url := testdb.For(t, "sqlite")
	repo := testrepo.New(t)
	repo.Write("main.go", "package main\n")
	repo.Commit("first")
	repo.Write("deploy.yaml", "image: x\n")
	head := repo.Commit("second")
	env := actionsEnv(t)
	env["INPUT_QUEUE-URL"], env["INPUT_IMAGES"], env["GITHUB_REPOSITORY"] = url, digestRef, "acme/app"
	res := runEnv(t, repo.Dir, env, "check", "--base", "HEAD^", "--head", head)
	if res.code != exitPass {
		t.Fatalf("check: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	rep := statusJSON(t, repo.Dir, url, head)
	if len(rep.Jobs) != 1 || rep.Jobs[0].CheckRun == nil || rep.Jobs[0].CheckRun.Repo != "acme/app" || rep.Jobs[0].CheckRun.HeadSHA != head || rep.Jobs[0].CheckRun.State != queue.PublishAwaiting {
		t.Fatalf("want the image scan queued with its check run awaiting on acme/app@%s, got %+v", head, rep.Jobs)
	}
}

package github_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ci/sluice/actions/github"
	"github.com/sluice-ci/sluice/internal/golden"
)

const sha = "9e2a0b1c2d3e4f5061728394a5b6c7d8e9f0a1b2"

// fakeGitHub serves the check-run endpoints the way GitHub's REST docs
// describe them, recording what it was sent.
type fakeGitHub struct {
	mu       sync.Mutex
	existing []map[string]any // check runs already on the commit
	requests []request
	// fail, when set, answers a request instead (then is called again).
	fail func(n int, w http.ResponseWriter) bool
	n    int
}

type request struct {
	Method, Path, Auth string
	Body               map[string]any
}

func (f *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	var body map[string]any
	if data, _ := io.ReadAll(r.Body); len(data) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			http.Error(w, `{"message":"Problems parsing JSON"}`, http.StatusBadRequest)
			return
		}
	}
	f.requests = append(f.requests, request{r.Method, r.URL.Path, r.Header.Get("Authorization"), body})
	if f.fail != nil && f.fail(f.n, w) {
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/repos/acme/app/commits/"+sha+"/check-runs":
		if r.URL.Query().Get("check_name") == "" {
			http.Error(w, `{"message":"check_name missing"}`, 400)
			return
		}
		runs := f.existing
		if runs == nil {
			runs = []map[string]any{}
		}
		json.NewEncoder(w).Encode(map[string]any{"total_count": len(runs), "check_runs": runs})
	case r.Method == http.MethodPost && r.URL.Path == "/repos/acme/app/check-runs":
		if body["head_sha"] != sha || body["name"] == nil {
			http.Error(w, `{"message":"Invalid request.","documentation_url":"https://docs.github.com/rest/checks/runs#create-a-check-run"}`, 422)
			return
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"id": 4, "head_sha": sha, "name": body["name"], "status": body["status"]})
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/repos/acme/app/check-runs/"):
		id, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/repos/acme/app/check-runs/"))
		json.NewEncoder(w).Encode(map[string]any{"id": id, "head_sha": sha, "name": body["name"], "status": body["status"]})
	default:
		http.Error(w, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}`, 404)
	}
}

func newClient(t *testing.T, f *fakeGitHub, opts ...github.ClientOption) (*github.Client, *[]time.Duration) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	var waits []time.Duration
	env := map[string]string{"GITHUB_TOKEN": "test-token", "GITHUB_API_URL": srv.URL}
	opts = append([]github.ClientOption{
		github.WithSleep(func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }),
		github.WithClock(func() time.Time { return time.Unix(1700000000, 0) }),
	}, opts...)
	c, err := github.NewClient(func(k string) string { return env[k] }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c, &waits
}

func reportWith(n int) github.CheckReport {
	r := github.CheckReport{Name: "sluice", Conclusion: "failure", Title: "sluice: fail", Summary: "## sluice"}
	for i := range n {
		r.Annotations = append(r.Annotations, github.CheckAnnotation{Path: "a.txt", StartLine: i + 1, EndLine: i + 1, Level: "failure", Message: "m"})
	}
	return r
}

func TestPublishCreatesACheckRunSendingAnnotationsFiftyAtATime(t *testing.T) {
	f := &fakeGitHub{}
	c, _ := newClient(t, f)
	id, err := c.Publish(context.Background(), "acme/app", sha, reportWith(120))
	if err != nil {
		t.Fatal(err)
	}
	if id != 4 {
		t.Errorf("id %d, want 4", id)
	}
	var got []string
	for _, r := range f.requests {
		n := -1
		if out, ok := r.Body["output"].(map[string]any); ok {
			n = len(out["annotations"].([]any))
		}
		got = append(got, fmt.Sprintf("%s %s %d %v %v", r.Method, r.Path, n, r.Body["status"], r.Body["conclusion"]))
		if r.Auth != "Bearer test-token" {
			t.Errorf("Authorization %q", r.Auth)
		}
	}
	want := []string{
		"GET /repos/acme/app/commits/" + sha + "/check-runs -1 <nil> <nil>",
		"POST /repos/acme/app/check-runs 50 in_progress <nil>",
		"PATCH /repos/acme/app/check-runs/4 50 in_progress <nil>",
		"PATCH /repos/acme/app/check-runs/4 20 completed failure",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPublishUpdatesTheCheckRunAlreadyOnTheCommit(t *testing.T) {
	f := &fakeGitHub{existing: []map[string]any{{"id": 77, "name": "sluice", "head_sha": sha, "status": "completed"}}}
	c, _ := newClient(t, f)
	v := golden.Verdict(t, "../testdata/verdict.json")
	id, err := c.Publish(context.Background(), "acme/app", sha, github.ReportFromVerdict("sluice", v))
	if err != nil {
		t.Fatal(err)
	}
	if id != 77 || len(f.requests) != 2 || f.requests[1].Method != http.MethodPatch || f.requests[1].Path != "/repos/acme/app/check-runs/77" {
		t.Fatalf("id %d, requests %+v", id, f.requests)
	}
	body := f.requests[1].Body
	out := body["output"].(map[string]any)
	if body["conclusion"] != "failure" || !strings.Contains(out["summary"].(string), "## sluice: :x: fail") || len(out["annotations"].([]any)) != 3 {
		t.Errorf("body %v", body)
	}
}

func TestPublishWaitsOutRateLimits(t *testing.T) {
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter)
		wait   time.Duration
	}{
		{"primary: x-ratelimit-remaining 0 until x-ratelimit-reset", func(w http.ResponseWriter) {
			w.Header().Set("X-RateLimit-Limit", "5000")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", "1700000030")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"message":"API rate limit exceeded for installation ID 1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}`)
		}, 31 * time.Second},
		{"secondary with Retry-After", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`)
		}, 7 * time.Second},
		{"secondary without headers: one minute", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`)
		}, time.Minute},
		{"429 with Retry-After", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
		}, 2 * time.Second},
		{"a server error backs off", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusBadGateway)
		}, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeGitHub{fail: func(n int, w http.ResponseWriter) bool {
				if n == 2 { // the POST, once
					tt.answer(w)
					return true
				}
				return false
			}}
			c, waits := newClient(t, f)
			if _, err := c.Publish(context.Background(), "acme/app", sha, reportWith(1)); err != nil {
				t.Fatal(err)
			}
			if len(*waits) != 1 || (*waits)[0] != tt.wait {
				t.Errorf("waited %v, want [%v]", *waits, tt.wait)
			}
			if len(f.requests) != 3 || f.requests[2].Method != http.MethodPost {
				t.Errorf("the POST was not retried: %d requests", len(f.requests))
			}
		})
	}
}

func TestPublishGivesUp(t *testing.T) {
	always := func(status int, header, value string) *fakeGitHub {
		return &fakeGitHub{fail: func(n int, w http.ResponseWriter) bool {
			if header != "" {
				w.Header().Set(header, value)
			}
			w.WriteHeader(status)
			io.WriteString(w, `{"message":"nope"}`)
			return true
		}}
	}
	t.Run("after the retries are spent, with bounded backoff", func(t *testing.T) {
		f := always(http.StatusServiceUnavailable, "", "")
		c, waits := newClient(t, f, github.WithRetries(3))
		_, err := c.Publish(context.Background(), "acme/app", sha, reportWith(1))
		if err == nil || !strings.Contains(err.Error(), "giving up after 4 attempts") {
			t.Fatalf("err %v", err)
		}
		if fmt.Sprint(*waits) != "[1s 2s 4s]" {
			t.Errorf("waits %v", *waits)
		}
	})
	t.Run("when the reset is further away than it waits", func(t *testing.T) {
		f := always(http.StatusTooManyRequests, "Retry-After", "3600")
		c, waits := newClient(t, f)
		_, err := c.Publish(context.Background(), "acme/app", sha, reportWith(1))
		if err == nil || !strings.Contains(err.Error(), "rate limited for 1h0m0s") || len(*waits) != 0 {
			t.Fatalf("err %v, waits %v", err, *waits)
		}
	})
	t.Run("at once on a permission error", func(t *testing.T) {
		f := always(http.StatusForbidden, "", "")
		c, waits := newClient(t, f)
		_, err := c.Publish(context.Background(), "acme/app", sha, reportWith(1))
		if err == nil || !strings.Contains(err.Error(), "403 Forbidden: nope") || len(*waits) != 0 || len(f.requests) != 1 {
			t.Fatalf("err %v, waits %v, %d requests", err, *waits, len(f.requests))
		}
	})
}

func TestNewClientNeedsAToken(t *testing.T) {
	if _, err := github.NewClient(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "GITHUB_TOKEN") {
		t.Errorf("err %v", err)
	}
	c, _ := newClient(t, &fakeGitHub{})
	for _, repo := range []string{"acme", "acme/app/x", "/app"} {
		if _, err := c.Publish(context.Background(), repo, sha, reportWith(0)); err == nil {
			t.Errorf("repository %q accepted", repo)
		}
	}
}

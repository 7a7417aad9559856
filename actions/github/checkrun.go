package github

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-ci/sluice/gate"
)

// Check-run limits from GitHub's REST documentation: at most 50
// annotations per request, and 65,535 characters of summary or text.
const (
	AnnotationsPerRequest = 50
	maxOutputText         = 65535
)

// CheckReport is what a check run shows on a commit.
type CheckReport struct {
	// Name of the check run (default "sluice").
	Name string
	// Conclusion: success, failure, neutral, cancelled, skipped, timed_out
	// or action_required (default neutral).
	Conclusion string
	Title      string
	// Summary and Text are Markdown.
	Summary, Text string
	Annotations   []CheckAnnotation
	// ExternalID and DetailsURL are optional links back (a job id, a URL
	// of the results).
	ExternalID, DetailsURL string
}

// CheckAnnotation is one annotation of a check run.
type CheckAnnotation struct {
	Path      string `json:"path"`
	StartLine int    `json:"start_line"`
	EndLine   int    `json:"end_line"`
	// Level is notice, warning or failure.
	Level   string `json:"annotation_level"`
	Message string `json:"message"`
	Title   string `json:"title,omitempty"`
}

// ReportFromVerdict makes a check report of a verdict.
func ReportFromVerdict(name string, v *gate.Verdict) CheckReport {
	r := CheckReport{Name: name, Conclusion: "success", Title: "sluice: pass", Summary: Summary(v)}
	if !v.Pass() {
		r.Conclusion, r.Title = "failure", "sluice: fail"
	}
	for _, c := range v.Controls {
		for _, f := range c.Findings {
			if f.File == "" {
				continue
			}
			level := "warning"
			if c.Blocks && f.InChange {
				level = "failure"
			}
			line := max(f.Line, 1)
			msg := f.Message
			if f.Redacted != "" {
				msg += " (" + f.Redacted + ")"
			}
			r.Annotations = append(r.Annotations, CheckAnnotation{
				Path: f.File, StartLine: line, EndLine: line, Level: level, Message: msg,
				Title: fmt.Sprintf("%s: %s (%s)", c.Name, f.Rule, f.Severity),
			})
		}
	}
	return r
}

// Client creates and updates check runs through GitHub's REST API.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
	// retries is the most attempts after the first for one request.
	retries int
	// maxWait is the longest single wait for a rate limit to reset.
	maxWait time.Duration
	sleep   func(ctx context.Context, d time.Duration) error
	now     func() time.Time
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithHTTPClient sets the HTTP client (default: one with a 30 s timeout).
func WithHTTPClient(h *http.Client) ClientOption { return func(c *Client) { c.http = h } }

// WithRetries sets how many times a request is retried after a rate limit
// or a server error (default 5).
func WithRetries(n int) ClientOption { return func(c *Client) { c.retries = n } }

// WithMaxWait sets the longest wait for one rate limit to reset (default
// 2 minutes); a longer one fails the request at once, saying when to retry.
func WithMaxWait(d time.Duration) ClientOption { return func(c *Client) { c.maxWait = d } }

// WithSleep replaces the wait between attempts (tests record it).
func WithSleep(fn func(ctx context.Context, d time.Duration) error) ClientOption {
	return func(c *Client) { c.sleep = fn }
}

// WithClock replaces the clock used to read x-ratelimit-reset.
func WithClock(now func() time.Time) ClientOption { return func(c *Client) { c.now = now } }

// NewClient makes a client from the environment: the token from
// GITHUB_TOKEN, the API from GITHUB_API_URL (default https://api.github.com,
// so GitHub Enterprise Server works by setting it).
func NewClient(getenv func(string) string, opts ...ClientOption) (*Client, error) {
	token := getenv("GITHUB_TOKEN")
	if token == "" {
		return nil, errors.New("GITHUB_TOKEN is not set: check runs need a token with checks: write")
	}
	api := getenv("GITHUB_API_URL")
	if api == "" {
		api = "https://api.github.com"
	}
	u, err := url.Parse(strings.TrimSuffix(api, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("GITHUB_API_URL %q is not a URL", api)
	}
	c := &Client{
		base: u, token: token, http: &http.Client{Timeout: 30 * time.Second},
		retries: 5, maxWait: 2 * time.Minute, sleep: sleepCtx, now: time.Now,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Publish creates the check run named r.Name on commit sha of repo
// ("owner/name"), or updates it when one of that name exists, with the
// summary and the annotations (sent 50 a request, as GitHub requires) and,
// with the last request, the conclusion. It returns the check run's id.
func (c *Client) Publish(ctx context.Context, repo, sha string, r CheckReport) (int64, error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return 0, fmt.Errorf("publishing check run: repository %q is not owner/name", repo)
	}
	if !shaRE.MatchString(sha) {
		return 0, fmt.Errorf("publishing check run: %q is not a commit SHA", sha)
	}
	if r.Name == "" {
		r.Name = "sluice"
	}
	if r.Conclusion == "" {
		r.Conclusion = "neutral"
	}
	repoPath := "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name)
	id, err := c.find(ctx, repoPath, sha, r.Name)
	if err != nil {
		return 0, fmt.Errorf("publishing check run: %w", err)
	}
	chunks := [][]CheckAnnotation{nil}
	for i := 0; i < len(r.Annotations); i += AnnotationsPerRequest {
		if i == 0 {
			chunks = chunks[:0]
		}
		chunks = append(chunks, r.Annotations[i:min(i+AnnotationsPerRequest, len(r.Annotations))])
	}
	for i, chunk := range chunks {
		body := map[string]any{
			"name": r.Name,
			"output": map[string]any{
				"title": r.Title, "summary": clip(r.Summary), "text": clip(r.Text),
				"annotations": nonNil(chunk),
			},
		}
		if r.ExternalID != "" {
			body["external_id"] = r.ExternalID
		}
		if r.DetailsURL != "" {
			body["details_url"] = r.DetailsURL
		}
		if i == len(chunks)-1 {
			body["status"] = "completed"
			body["conclusion"] = r.Conclusion
			body["completed_at"] = c.now().UTC().Format(time.RFC3339)
		} else {
			body["status"] = "in_progress"
		}
		var resp struct {
			ID int64 `json:"id"`
		}
		if id == 0 {
			body["head_sha"] = sha
			err = c.do(ctx, http.MethodPost, repoPath+"/check-runs", body, &resp)
		} else {
			err = c.do(ctx, http.MethodPatch, repoPath+"/check-runs/"+strconv.FormatInt(id, 10), body, &resp)
		}
		if err != nil {
			return id, fmt.Errorf("publishing check run (annotations %d-%d of %d): %w", i*AnnotationsPerRequest+1, i*AnnotationsPerRequest+len(chunk), len(r.Annotations), err)
		}
		if id == 0 {
			id = resp.ID
		}
	}
	return id, nil
}

func nonNil(a []CheckAnnotation) []CheckAnnotation {
	if a == nil {
		return []CheckAnnotation{}
	}
	return a
}

func clip(s string) string {
	if len(s) <= maxOutputText {
		return s
	}
	const more = "\n\n… (cut to GitHub's 65,535-character limit)"
	return s[:maxOutputText-len(more)] + more
}

// find returns the id of the newest check run named name on sha, or 0.
func (c *Client) find(ctx context.Context, repoPath, sha, name string) (int64, error) {
	q := url.Values{"check_name": {name}, "filter": {"latest"}}
	var resp struct {
		CheckRuns []struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		} `json:"check_runs"`
	}
	if err := c.do(ctx, http.MethodGet, repoPath+"/commits/"+sha+"/check-runs?"+q.Encode(), nil, &resp); err != nil {
		return 0, fmt.Errorf("listing check runs: %w", err)
	}
	for _, r := range resp.CheckRuns {
		if r.Name == name {
			return r.ID, nil
		}
	}
	return 0, nil
}

// APIError is a response GitHub refused, with its status and message.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("GitHub API: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// do sends one request, retrying on rate limits (403 or 429 with
// Retry-After, or x-ratelimit-remaining: 0 until x-ratelimit-reset, or a
// secondary rate limit message: one minute) and on server errors
// (exponential backoff from 1 s), at most c.retries times.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
	}
	backoff := time.Second
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, bytes.NewReader(payload))
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set("User-Agent", "sluice")
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		data, rerr := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		if rerr != nil {
			return fmt.Errorf("reading response of %s %s: %w", method, path, rerr)
		}
		if resp.StatusCode < 300 {
			if out != nil && len(data) > 0 {
				if err := json.Unmarshal(data, out); err != nil {
					return fmt.Errorf("decoding response of %s %s: %w", method, path, err)
				}
			}
			return nil
		}
		apiErr := &APIError{Status: resp.StatusCode, Message: apiMessage(data)}
		wait, retry := c.retryAfter(resp, apiErr, backoff)
		if !retry {
			return apiErr
		}
		if attempt >= c.retries {
			return fmt.Errorf("giving up after %d attempts: %w", attempt+1, apiErr)
		}
		if wait > c.maxWait {
			return fmt.Errorf("rate limited for %s more (longer than the %s sluice waits): %w", wait.Round(time.Second), c.maxWait, apiErr)
		}
		if err := c.sleep(ctx, wait); err != nil {
			return err
		}
		if resp.StatusCode >= 500 {
			backoff *= 2
		}
	}
}

func (c *Client) retryAfter(resp *http.Response, e *APIError, backoff time.Duration) (time.Duration, bool) {
	switch {
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusTooManyRequests:
		if s := resp.Header.Get("Retry-After"); s != "" {
			if n, err := strconv.Atoi(s); err == nil && n >= 0 {
				return time.Duration(n) * time.Second, true
			}
		}
		if resp.Header.Get("X-Ratelimit-Remaining") == "0" {
			if n, err := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Reset"), 10, 64); err == nil {
				return max(time.Unix(n, 0).Sub(c.now()), 0) + time.Second, true
			}
		}
		if resp.StatusCode == http.StatusTooManyRequests || strings.Contains(strings.ToLower(e.Message), "secondary rate limit") {
			// GitHub: "wait for at least one minute before retrying".
			return time.Minute, true
		}
		return 0, false
	case resp.StatusCode >= 500:
		return backoff, true
	}
	return 0, false
}

func apiMessage(data []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &m) == nil && m.Message != "" {
		return m.Message
	}
	s := strings.TrimSpace(string(data))
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

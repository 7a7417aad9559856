package worker_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-ci/sluice/internal/testdb"
	"github.com/sluice-ci/sluice/slowpath/queue"
	"github.com/sluice-ci/sluice/slowpath/worker"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServiceEndpoints(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			q := open(t, driver, queue.Options{})
			if _, err := q.Enqueue(ctx, []queue.Job{{Kind: queue.KindImageScan, Subject: "r.example/a@sha256:1", Control: "image-scan"}}); err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			m, err := worker.NewMetrics(reg, q, nil)
			if err != nil {
				t.Fatal(err)
			}
			w := newWorker(t, q, worker.Options{Metrics: m})
			h, err := w.Handler(ctx, reg)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()

			if code, body := get(t, srv.URL+"/healthz"); code != 200 || body != "ok\n" {
				t.Errorf("/healthz: %d %q", code, body)
			}
			code, body := get(t, srv.URL+"/metrics")
			for _, want := range []string{
				`sluice_queue_depth{kind="image-scan",state="waiting"} 1`,
				`sluice_queue_depth{kind="deferred",state="waiting"} 0`,
				`sluice_queue_oldest_age_seconds{kind="image-scan"}`,
				`sluice_queue_up 1`,
			} {
				if code != 200 || !strings.Contains(body, want) {
					t.Errorf("/metrics (%d) lacks %q:\n%s", code, want, body)
				}
			}
			if code, body := get(t, srv.URL+worker.UIPrefix+"/api/jobs?state=available"); code != 200 || !strings.Contains(body, `"kind":"image-scan"`) {
				t.Errorf("River UI jobs API: %d %s", code, body)
			}
			if code, body := get(t, srv.URL+worker.UIPrefix+"/"); code != 200 || !strings.Contains(body, "<html") {
				t.Errorf("River UI page: %d %.200s", code, body)
			}
			q.Close()
			if code, _ := get(t, srv.URL+"/healthz"); code != http.StatusServiceUnavailable {
				t.Errorf("/healthz with the database closed: %d, want 503", code)
			}
		})
	}
}

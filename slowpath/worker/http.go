package worker

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/riverqueue/river"
	"riverqueue.com/riverui"
)

// UIPrefix is where River's web UI is mounted.
const UIPrefix = "/riverui"

// Handler serves the worker's HTTP endpoints: /healthz (200 when the queue
// database answers, 503 otherwise), /metrics (Prometheus, from gatherer)
// and River's web UI under /riverui/. The UI's background services run
// until ctx is done.
func (w *Worker) Handler(ctx context.Context, gatherer prometheus.Gatherer) (http.Handler, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := w.q.Depths(ctx); err != nil {
			http.Error(rw, "queue unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	ui, err := w.uiHandler(ctx)
	if err != nil {
		return nil, fmt.Errorf("mounting River's UI: %w", err)
	}
	mux.Handle(UIPrefix+"/", ui)
	return mux, nil
}

func (w *Worker) uiHandler(ctx context.Context) (http.Handler, error) {
	opts := &riverui.HandlerOpts{Logger: w.logger, Prefix: UIPrefix}
	switch c := w.client.(type) {
	case *river.Client[*sql.Tx]:
		opts.Endpoints = riverui.NewEndpoints(c, nil)
	case *river.Client[pgx.Tx]:
		opts.Endpoints = riverui.NewEndpoints(c, nil)
	default:
		return nil, fmt.Errorf("unknown River client %T", w.client)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h, err := riverui.NewHandler(opts)
	if err != nil {
		return nil, err
	}
	if err := h.Start(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

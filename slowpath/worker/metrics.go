package worker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-ci/sluice/slowpath/queue"
)

// Metrics are the worker's Prometheus figures. A nil *Metrics records
// nothing.
type Metrics struct {
	duration *prometheus.HistogramVec
	failures *prometheus.CounterVec
	retries  *prometheus.CounterVec
	exposure *prometheus.HistogramVec
}

// NewMetrics registers the worker's metrics on reg, queue depth and oldest
// job age read from q at each scrape (bounded by a 5s timeout).
func NewMetrics(reg prometheus.Registerer, q *queue.Queue, now func() time.Time) (*Metrics, error) {
	if now == nil {
		now = time.Now
	}
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_job_duration_seconds", Help: "Time a slow-path job attempt ran, by kind and status.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}, []string{"kind", "status"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_job_failures_total", Help: "Failed slow-path job attempts, by kind and whether the failure was final.",
		}, []string{"kind", "final"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_job_retries_total", Help: "Slow-path job attempts after the first, by kind.",
		}, []string{"kind"}),
		exposure: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_exposure_window_seconds", Help: "Time from the fast verdict that deferred work to its deep result, by kind.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.duration, m.failures, m.retries, m.exposure, &depthCollector{q: q, now: now}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) completed(kind, status string, d, exposure time.Duration) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(kind, status).Observe(d.Seconds())
	m.exposure.WithLabelValues(kind).Observe(exposure.Seconds())
}

func (m *Metrics) failure(kind, status string, d time.Duration, final bool) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(kind, status).Observe(d.Seconds())
	f := "false"
	if final {
		f = "true"
	}
	m.failures.WithLabelValues(kind, f).Inc()
}

func (m *Metrics) retry(kind string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(kind).Inc()
}

var (
	depthDesc = prometheus.NewDesc("sluice_queue_depth", "Slow-path jobs not finished, by kind and state (waiting, running).", []string{"kind", "state"}, nil)
	ageDesc   = prometheus.NewDesc("sluice_queue_oldest_age_seconds", "Age of the oldest unfinished slow-path job, by kind (0 when none).", []string{"kind"}, nil)
	upDesc    = prometheus.NewDesc("sluice_queue_up", "1 when the queue database answered the last scrape.", nil, nil)
)

type depthCollector struct {
	q   *queue.Queue
	now func() time.Time
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- depthDesc
	ch <- ageDesc
	ch <- upDesc
}

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ds, err := c.q.Depths(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1)
	now := c.now().UnixMilli()
	for _, d := range ds {
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(d.Waiting), d.Kind, "waiting")
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(d.Running), d.Kind, "running")
		age := 0.0
		if d.OldestMS > 0 {
			age = float64(now-d.OldestMS) / 1000
		}
		ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, age, d.Kind)
	}
}

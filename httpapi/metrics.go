package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are one Server's Prometheus collectors, on their own registry so
// several servers (tests) never collide.
type metrics struct {
	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	decisions *prometheus.CounterVec
	upstream  *prometheus.HistogramVec
	inFlight  prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_http_requests_total",
			Help: "Requests answered, by model, catalog code (ok when the upstream answered) and status.",
		}, []string{"model", "code", "status"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_limiter_decisions_total",
			Help: "Limiter decisions by limit (rate, concurrency) and result (allow, deny, error).",
		}, []string{"limit", "result"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_upstream_latency_seconds",
			Help:    "Time from sending to the upstream to its response headers, by model that served.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"model"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_http_in_flight_requests",
			Help: "Model requests being served now.",
		}),
	}
	m.registry.MustRegister(m.requests, m.decisions, m.upstream, m.inFlight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// decision counters resolved once: label lookups are not free on the hot path.
type decisionCounters struct {
	rateAllow, rateDeny, rateErr prometheus.Counter
	concAllow, concDeny, concErr prometheus.Counter
}

func (m *metrics) decisionCounters() decisionCounters {
	return decisionCounters{
		rateAllow: m.decisions.WithLabelValues("rate", "allow"),
		rateDeny:  m.decisions.WithLabelValues("rate", "deny"),
		rateErr:   m.decisions.WithLabelValues("rate", "error"),
		concAllow: m.decisions.WithLabelValues("concurrency", "allow"),
		concDeny:  m.decisions.WithLabelValues("concurrency", "deny"),
		concErr:   m.decisions.WithLabelValues("concurrency", "error"),
	}
}

package pxe

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, on a registry of its own so that two servers in
// one process (tests) never collide.
type metrics struct {
	reg            *prometheus.Registry
	handler        http.Handler
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	unknown        prometheus.Counter
	tokenRejected  prometheus.Counter
	enrolments     *prometheus.CounterVec
	enrolConflicts prometheus.Counter
	reloads        *prometheus.CounterVec
	nodes          prometheus.Gauge
	loaded         prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_pxe_requests_total", Help: "Requests answered, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kiln_pxe_request_duration_seconds", Help: "Time to answer a request, by route.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30},
		}, []string{"route"}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kiln_pxe_unknown_machines_total", Help: "Requests from machines that match no node.",
		}),
		tokenRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kiln_pxe_token_rejections_total", Help: "Config requests refused for a missing or wrong token.",
		}),
		enrolments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_pxe_enrolments_total", Help: "Enrolment requests answered, by result (issued, pending, refused).",
		}, []string{"result"}),
		enrolConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kiln_pxe_enrol_conflicts_total", Help: "Keys refused because other keys had enrolled the node first (policy first): another machine claimed the node.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_pxe_reloads_total", Help: "Recompiles of the spec after a change, by result (ok, failed).",
		}, []string{"result"}),
		nodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kiln_pxe_nodes", Help: "Nodes of the configs being served.",
		}),
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kiln_pxe_configs_loaded_timestamp_seconds", Help: "When the configs being served were compiled.",
		}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.unknown, m.tokenRejected, m.enrolments, m.enrolConflicts, m.reloads, m.nodes, m.loaded,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{"issued", "pending", "refused"} {
		m.enrolments.WithLabelValues(r)
	}
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

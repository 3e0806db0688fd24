package inspect

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/porthole/porthole/internal/metrics"
)

// Snapshot is the client's connection state and per-tunnel counters, read
// at each scrape. Package client fills it; the counters live beside the
// state they count, over there.
type Snapshot struct {
	State      string
	Server     string
	Latency    time.Duration
	Reconnects int64
	Uptime     time.Duration
	Tunnels    []TunnelSnapshot
}

// TunnelSnapshot is one tunnel's counters.
type TunnelSnapshot struct {
	Name      string
	Proto     string
	URL       string
	Bound     bool
	Requests  int64
	Errors    int64
	BytesIn   int64
	BytesOut  int64
	OpenConns int64
}

// States a client reports; each gets a 0/1 series so dashboards can graph
// time spent reconnecting.
var states = []string{"connecting", "online", "reconnecting", "stopped"}

// Metrics is the client's Prometheus registry: the Snapshot's values,
// request latency and status classes recorded by the Store, and the
// recorder's own counters. Labels are the configured tunnel names (a few,
// chosen by the person running the client) and status classes, so series
// stay bounded.
type Metrics struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
	statuses *prometheus.CounterVec
}

// NewMetrics registers the client's metrics. src is read at every scrape;
// store may be nil when nothing is recorded.
func NewMetrics(src func() Snapshot, store *Store) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "porthole_client_http_request_duration_seconds",
		Help:    "Time from a request's arrival at the client to the end of its response, per tunnel.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"tunnel"})
	m.statuses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "porthole_client_http_responses_total",
		Help: "HTTP responses forwarded, per tunnel and status class (2xx, 3xx, 4xx, 5xx, 1xx for upgrades).",
	}, []string{"tunnel", "code"})
	m.reg.MustRegister(m.duration, m.statuses,
		&snapshotCollector{src: src, store: store},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if store != nil {
		store.finished = m.observe
	}
	return m
}

func (m *Metrics) observe(x *Exchange) {
	x.s.mu.Lock()
	status, d := x.status, x.duration
	x.s.mu.Unlock()
	m.duration.WithLabelValues(x.tunnel).Observe(d.Seconds())
	m.statuses.WithLabelValues(x.tunnel, strconv.Itoa(status/100)+"xx").Inc()
}

// Registry returns the registry, for tests and for adding collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// PrometheusHandler serves /metrics in the Prometheus text format.
func (m *Metrics) PrometheusHandler() http.Handler { return metrics.TextHandler(m.reg) }

// JSONHandler serves /api/metrics: the same families as /metrics, as JSON
// for people without Prometheus (the server's admin listener serves the
// same document).
func (m *Metrics) JSONHandler() http.Handler { return metrics.JSONHandler(m.reg) }

// snapshotCollector turns a Snapshot and the Store's counters into
// metrics at scrape time, so nothing is counted twice.
type snapshotCollector struct {
	src   func() Snapshot
	store *Store
}

var (
	descState      = prometheus.NewDesc("porthole_client_state", "1 for the client's current connection state, 0 for the others.", []string{"state"}, nil)
	descConnected  = prometheus.NewDesc("porthole_client_connected", "1 while a session with a server is up and every tunnel is bound.", nil, nil)
	descReconnects = prometheus.NewDesc("porthole_client_reconnects_total", "Sessions established after the first one.", nil, nil)
	descLatency    = prometheus.NewDesc("porthole_client_latency_seconds", "Round-trip time of the last heartbeat to the server.", nil, nil)
	descUptime     = prometheus.NewDesc("porthole_client_uptime_seconds", "Time since the client started.", nil, nil)
	descBound      = prometheus.NewDesc("porthole_client_tunnel_bound", "1 while the tunnel holds its public name on the server.", []string{"tunnel", "proto"}, nil)
	descRequests   = prometheus.NewDesc("porthole_client_tunnel_requests_total", "HTTP requests (or TCP connections) forwarded to the local app.", []string{"tunnel", "proto"}, nil)
	descErrors     = prometheus.NewDesc("porthole_client_tunnel_errors_total", "Requests answered 5xx and connections the local app refused.", []string{"tunnel", "proto"}, nil)
	descBytes      = prometheus.NewDesc("porthole_client_tunnel_bytes_total", "Body bytes forwarded: in from visitors, out from the local app.", []string{"tunnel", "proto", "direction"}, nil)
	descOpen       = prometheus.NewDesc("porthole_client_tunnel_open_connections", "Requests or TCP connections in progress.", []string{"tunnel", "proto"}, nil)
	descKept       = prometheus.NewDesc("porthole_client_inspect_exchanges", "Exchanges the request inspector holds.", nil, nil)
	descEvicted    = prometheus.NewDesc("porthole_client_inspect_evicted_total", "Exchanges dropped from the inspector to make room.", nil, nil)
	descTruncated  = prometheus.NewDesc("porthole_client_inspect_truncated_bodies_total", "Bodies longer than the inspector's body limit (kept cut).", nil, nil)
	descReplays    = prometheus.NewDesc("porthole_client_inspect_replays_total", "Requests replayed from the inspector.", nil, nil)
	descStored     = prometheus.NewDesc("porthole_client_inspect_stored_body_bytes", "Body bytes the inspector holds.", nil, nil)
)

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descConnected, descReconnects, descLatency, descUptime,
		descBound, descRequests, descErrors, descBytes, descOpen,
		descKept, descEvicted, descTruncated, descReplays, descStored} {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src()
	for _, st := range states {
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, b2f(s.State == st), st)
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, b2f(s.State == "online"))
	ch <- prometheus.MustNewConstMetric(descReconnects, prometheus.CounterValue, float64(s.Reconnects))
	ch <- prometheus.MustNewConstMetric(descLatency, prometheus.GaugeValue, s.Latency.Seconds())
	ch <- prometheus.MustNewConstMetric(descUptime, prometheus.GaugeValue, s.Uptime.Seconds())
	for _, t := range s.Tunnels {
		ch <- prometheus.MustNewConstMetric(descBound, prometheus.GaugeValue, b2f(t.Bound), t.Name, t.Proto)
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(t.Requests), t.Name, t.Proto)
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(t.Errors), t.Name, t.Proto)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(t.BytesIn), t.Name, t.Proto, "in")
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(t.BytesOut), t.Name, t.Proto, "out")
		ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(t.OpenConns), t.Name, t.Proto)
	}
	if c.store != nil {
		st := c.store.Stats()
		ch <- prometheus.MustNewConstMetric(descKept, prometheus.GaugeValue, float64(st.Kept))
		ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(st.Evicted))
		ch <- prometheus.MustNewConstMetric(descTruncated, prometheus.CounterValue, float64(st.Truncated))
		ch <- prometheus.MustNewConstMetric(descReplays, prometheus.CounterValue, float64(st.Replays))
		ch <- prometheus.MustNewConstMetric(descStored, prometheus.GaugeValue, float64(st.StoredBytes))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

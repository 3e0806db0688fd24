package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are the node's counters, exported with the server's metrics
// under porthole_cluster_*.
type Metrics struct {
	n                  *Node
	binds              prometheus.Counter
	bindsUnavailable   prometheus.Counter
	renewFailures      prometheus.Counter
	reloads            prometheus.Counter
	listenerReconnects prometheus.Counter
	notifyLag          prometheus.Histogram
	// ForwardedOut counts visitor requests and connections this node
	// sent to the holding node, ForwardedIn those it served for another
	// node; ForwardLatency is the time to forward a request and relay its
	// whole response.
	ForwardedOut   *prometheus.CounterVec
	ForwardedIn    *prometheus.CounterVec
	ForwardLatency prometheus.Histogram
}

func newMetrics(n *Node) *Metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "porthole_cluster_" + name, Help: help})
	}
	return &Metrics{
		n:                  n,
		binds:              c("binds_total", "Names this node claimed in the cluster database."),
		bindsUnavailable:   c("binds_unavailable_total", "Binds refused because the cluster database was unreachable or the node fenced."),
		renewFailures:      c("lease_renew_failures_total", "Lease renewals that failed."),
		reloads:            c("route_reloads_total", "Full reloads of the route map from the database."),
		listenerReconnects: c("listener_reconnects_total", "Times the LISTEN connection was lost and opened again."),
		notifyLag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "porthole_cluster_notify_lag_seconds",
			Help:    "Time from a route change's commit to this node applying it.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 5}}),
		ForwardedOut: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "porthole_cluster_forwarded_out_total",
			Help: "Visitor requests (kind=http) and connections (kind=tcp) forwarded to the holding node, by result."}, []string{"kind", "result"}),
		ForwardedIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "porthole_cluster_forwarded_in_total",
			Help: "Visitor requests and connections served for another node, by result."}, []string{"kind", "result"}),
		ForwardLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "porthole_cluster_forward_seconds",
			Help:    "Time to forward a visitor's HTTP request to the holding node and relay its whole response.",
			Buckets: prometheus.DefBuckets}),
	}
}

var (
	descClaims = prometheus.NewDesc("porthole_cluster_claims", "Names this node holds in the cluster (connected or held for a client).", nil, nil)
	descRoutes = prometheus.NewDesc("porthole_cluster_routes", "Names in this node's route map, all nodes.", nil, nil)
	descFenced = prometheus.NewDesc("porthole_cluster_fenced", "1 while the node has not renewed its lease in time and refuses binds.", nil, nil)
	descSince  = prometheus.NewDesc("porthole_cluster_lease_age_seconds", "Time since the last successful lease renewal was sent.", nil, nil)
	descNode   = prometheus.NewDesc("porthole_cluster_node_info", "Always 1: the node's name (--node-name) and advertised cluster address, to join with the other series of this target.", []string{"node", "addr"}, nil)
)

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.binds, m.bindsUnavailable, m.renewFailures, m.reloads, m.listenerReconnects,
		m.notifyLag, m.ForwardedOut, m.ForwardedIn, m.ForwardLatency}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
	ch <- descClaims
	ch <- descRoutes
	ch <- descFenced
	ch <- descSince
	ch <- descNode
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
	own, all := 0, 0
	m.n.routes.Range(func(_, v any) bool {
		all++
		if v.(*Route).Node == m.n.cfg.Name {
			own++
		}
		return true
	})
	fenced := 0.0
	if m.n.Fenced() {
		fenced = 1
	}
	ch <- prometheus.MustNewConstMetric(descClaims, prometheus.GaugeValue, float64(own))
	ch <- prometheus.MustNewConstMetric(descRoutes, prometheus.GaugeValue, float64(all))
	ch <- prometheus.MustNewConstMetric(descFenced, prometheus.GaugeValue, fenced)
	ch <- prometheus.MustNewConstMetric(descSince, prometheus.GaugeValue, m.n.sinceRenew().Seconds())
	ch <- prometheus.MustNewConstMetric(descNode, prometheus.GaugeValue, 1, m.n.cfg.Name, m.n.cfg.Addr)
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

func (m *Metrics) reloadCount() float64       { return counterValue(m.reloads) }
func (m *Metrics) reconnectCount() float64    { return counterValue(m.listenerReconnects) }
func (m *Metrics) renewFailureCount() float64 { return counterValue(m.renewFailures) }

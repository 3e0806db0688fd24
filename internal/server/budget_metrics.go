package server

import "github.com/prometheus/client_golang/prometheus"

var (
	descBuffered = prometheus.NewDesc("porthole_buffered_bytes",
		"Bytes received from clients that visitors have not taken yet (tunnel.buffer_budget bounds them).", nil, nil)
	descBudget = prometheus.NewDesc("porthole_buffer_budget_bytes", "The tunnel.buffer_budget setting.", nil, nil)
	descCredit = prometheus.NewDesc("porthole_window_credit_bytes",
		"Stream window credit granted above the 256 KiB per stream, from half the buffer budget.", nil, nil)
	descVisitorConns = prometheus.NewDesc("porthole_visitor_connections",
		"Open visitor connections on the public listeners, HTTP/2 requests in progress included.", nil, nil)
)

// budgetCollector exports the buffer budget and the visitor count, read
// at scrape time.
type budgetCollector struct{ s *Server }

func (c budgetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuffered, descBudget, descCredit, descVisitorConns} {
		ch <- d
	}
}

func (c budgetCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.s.budget
	ch <- prometheus.MustNewConstMetric(descBuffered, prometheus.GaugeValue, float64(b.Buffered()))
	ch <- prometheus.MustNewConstMetric(descBudget, prometheus.GaugeValue, float64(b.Limit()))
	ch <- prometheus.MustNewConstMetric(descCredit, prometheus.GaugeValue, float64(b.Credit()))
	ch <- prometheus.MustNewConstMetric(descVisitorConns, prometheus.GaugeValue, float64(c.s.visitorConns.Load()))
}

package server

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/porthole/porthole/internal/limits"
)

// adminHandler serves the admin listener: health, readiness and metrics.
func (s *Server) adminHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &collector{s: s})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

func (s *Server) ready(ctx context.Context) error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return errShuttingDown
	}
	if s.deps.Ready != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return s.deps.Ready(ctx)
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }

const errShuttingDown = errString("shutting down")

var (
	descSessions      = prometheus.NewDesc("porthole_sessions", "Connected tunnel client sessions.", nil, nil)
	descSessionsTotal = prometheus.NewDesc("porthole_sessions_total", "Client sessions accepted since start.", nil, nil)
	descTunnels       = prometheus.NewDesc("porthole_tunnels", "Bound tunnels.", nil, nil)
	descRequests      = prometheus.NewDesc("porthole_http_requests_total", "Visitor HTTP requests by status class.", []string{"code"}, nil)
	descBytes         = prometheus.NewDesc("porthole_bytes_total", "Bytes proxied, by direction (in: visitor to client).", []string{"direction"}, nil)
	descStreams       = prometheus.NewDesc("porthole_streams", "Open streams to clients.", nil, nil)
	descStreamsTotal  = prometheus.NewDesc("porthole_streams_total", "Streams opened to clients since start.", nil, nil)
	descHandshakeFail = prometheus.NewDesc("porthole_handshake_failures_total", "Tunnel handshakes refused.", nil, nil)
	descReconnects    = prometheus.NewDesc("porthole_tunnel_reclaims_total", "Tunnels rebound to a name the same client held before.", nil, nil)
	descLimitHits     = prometheus.NewDesc("porthole_limit_hits_total", "Requests, connections, binds or messages refused or slowed by a limit, by kind.", []string{"kind"}, nil)
)

// collector exports the server's counters; it reads them at scrape time,
// so the request path only does atomic adds.
type collector struct{ s *Server }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descSessionsTotal, descTunnels, descRequests, descBytes, descStreams, descStreamsTotal, descHandshakeFail, descReconnects, descLimitHits} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := &c.s.stats
	gauge := func(d *prometheus.Desc, v int64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), l...)
	}
	counter := func(d *prometheus.Desc, v int64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge(descSessions, st.sessionsOpen.Load())
	counter(descSessionsTotal, st.sessionsTotal.Load())
	gauge(descTunnels, st.tunnelsOpen.Load())
	for i, class := range []string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		counter(descRequests, st.requests[i].Load(), class)
	}
	counter(descBytes, st.bytesIn.Load(), "in")
	counter(descBytes, st.bytesOut.Load(), "out")
	gauge(descStreams, st.streamsOpen.Load())
	counter(descStreamsTotal, st.streamsTotal.Load())
	counter(descHandshakeFail, st.handshakeFailed.Load())
	counter(descReconnects, st.reconnects.Load())
	for _, k := range limits.AllKinds {
		counter(descLimitHits, c.s.hits.Count(k), string(k))
	}
}

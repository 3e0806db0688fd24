package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/metrics"
	"github.com/porthole/porthole/internal/protocol"
)

// adminHandler serves the admin listener: health, readiness, metrics, and
// the admin JSON API (which needs the admin token).
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.ready(r.Context()); err != nil {
			msg := err.Error()
			if err != errShuttingDown {
				// The database's error names hosts, users or files: the
				// probe gets an id, the log the detail.
				id := auth.NewErrorID()
				s.log.Warn("not ready: the user store does not answer", "error_id", id, "err", err)
				msg = "the user store does not answer (error id " + id + ", see the server log)"
			}
			http.Error(w, "not ready: "+msg, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", metrics.TextHandler(s.prom))
	mux.Handle("GET /api/metrics", metrics.JSONHandler(s.prom))
	mux.Handle("GET /api/sessions", s.adminOnly(s.apiSessions))
	mux.Handle("DELETE /api/sessions/{id}", s.adminOnly(s.apiKick))
	mux.Handle("POST /api/sessions/{id}/kick", s.adminOnly(s.apiKick))
	mux.Handle("GET /api/users/{name}/usage", s.adminOnly(s.apiUsage))
	if s.cfg.Metrics.Pprof {
		mux.Handle("GET /debug/pprof/", s.adminOnly(pprof.Index))
		mux.Handle("GET /debug/pprof/cmdline", s.adminOnly(pprof.Cmdline))
		mux.Handle("GET /debug/pprof/profile", s.adminOnly(pprof.Profile))
		mux.Handle("GET /debug/pprof/symbol", s.adminOnly(pprof.Symbol))
		mux.Handle("GET /debug/pprof/trace", s.adminOnly(pprof.Trace))
	}
	return mux
}

// adminOnly requires "Authorization: Bearer ADMIN_TOKEN". Without a
// configured token the API is off.
func (s *Server) adminOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.AdminToken == "" {
			jsonError(w, http.StatusForbidden, "the admin API is off: set admin_token in the server configuration")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.AdminToken)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="porthole admin"`)
			jsonError(w, http.StatusUnauthorized, "missing or wrong admin token")
			return
		}
		h(w, r)
	})
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// SessionInfo describes a connected client for the admin API.
type SessionInfo struct {
	ID        string       `json:"id"`
	User      string       `json:"user"`
	Auth      string       `json:"auth"`
	Remote    string       `json:"remote_addr"`
	Since     time.Time    `json:"since"`
	LatencyMS float64      `json:"latency_ms"`
	Requests  int64        `json:"requests"`
	BytesIn   int64        `json:"bytes_in"`
	BytesOut  int64        `json:"bytes_out"`
	Streams   int64        `json:"open_streams"`
	Tunnels   []TunnelInfo `json:"tunnels"`
}

// TunnelInfo describes a bound tunnel for the admin API.
type TunnelInfo struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	Name     string    `json:"name,omitempty"`
	URL      string    `json:"url"`
	Since    time.Time `json:"since"`
	Requests int64     `json:"requests"`
	BytesIn  int64     `json:"bytes_in"`
	BytesOut int64     `json:"bytes_out"`
	Streams  int64     `json:"open_streams"`
}

// Sessions lists connected sessions, oldest first.
func (s *Server) Sessions() []SessionInfo {
	list := s.sessionsWhere(func(*session) bool { return true })
	out := make([]SessionInfo, 0, len(list))
	for _, ss := range list {
		out = append(out, ss.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

func (ss *session) info() SessionInfo {
	si := SessionInfo{
		ID: ss.id, User: ss.ident.User, Auth: string(ss.ident.Method), Remote: ss.remote, Since: ss.since,
		LatencyMS: float64(ss.rttNanos.Load()) / 1e6, Streams: ss.streams.Load(), Tunnels: []TunnelInfo{},
	}
	ss.mu.Lock()
	tunnels := make([]*tunnel, 0, len(ss.tunnels))
	for _, t := range ss.tunnels {
		tunnels = append(tunnels, t)
	}
	ss.mu.Unlock()
	sort.Slice(tunnels, func(i, j int) bool { return tunnels[i].since.Before(tunnels[j].since) })
	for _, t := range tunnels {
		ti := TunnelInfo{ID: t.id, Kind: t.kind, Name: t.name, URL: t.urls[0], Since: t.since,
			Requests: t.requests.Load(), BytesIn: t.bytesIn.Load(), BytesOut: t.bytesOut.Load(), Streams: t.openStreams.Load()}
		si.Requests += ti.Requests
		si.BytesIn += ti.BytesIn
		si.BytesOut += ti.BytesOut
		si.Tunnels = append(si.Tunnels, ti)
	}
	return si
}

func (s *Server) apiSessions(w http.ResponseWriter, r *http.Request) {
	list := s.Sessions()
	if u := r.URL.Query().Get("user"); u != "" {
		kept := list[:0]
		for _, si := range list {
			if si.User == u {
				kept = append(kept, si)
			}
		}
		list = kept
	}
	writeJSON(w, map[string]any{"sessions": list})
}

// Kick ends a session as an operator's decision: the client is told why
// and exits; its names are freed at once.
func (s *Server) Kick(id, reason string) bool {
	s.mu.Lock()
	ss := s.sessions[id]
	s.mu.Unlock()
	if ss == nil {
		return false
	}
	if reason == "" {
		reason = "an operator closed this session"
	}
	// The names are free when Kick returns, not when the client hangs up.
	ss.end(protocol.NoticeKicked, reason)
	return true
}

func (s *Server) apiKick(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.Kick(id, r.URL.Query().Get("reason")) {
		jsonError(w, http.StatusNotFound, "no session "+id)
		return
	}
	writeJSON(w, map[string]any{"kicked": id})
}

// Usage is a user's live usage.
type Usage struct {
	User     string `json:"user"`
	Sessions int    `json:"sessions"`
	Tunnels  int    `json:"tunnels"`
	Requests int64  `json:"requests"`
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
}

func (s *Server) apiUsage(w http.ResponseWriter, r *http.Request) {
	u := Usage{User: r.PathValue("name")}
	for _, si := range s.Sessions() {
		if si.User != u.User {
			continue
		}
		u.Sessions++
		u.Tunnels += len(si.Tunnels)
		u.Requests += si.Requests
		u.BytesIn += si.BytesIn
		u.BytesOut += si.BytesOut
	}
	writeJSON(w, u)
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

// serverMetrics are the instruments updated on the request path; the rest
// are read from stats at scrape time by collector.
type serverMetrics struct {
	latency      prometheus.Histogram
	authFailures *prometheus.CounterVec
	perTunnel    *prometheus.CounterVec // nil unless metrics.per_tunnel_labels
}

func (s *Server) setupMetrics() {
	reg := prometheus.NewRegistry()
	s.metrics.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "porthole_http_request_duration_seconds",
		Help:    "Time from a visitor's request to the end of its response, through the tunnel.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	s.metrics.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "porthole_auth_failures_total",
		Help: "Tunnel handshakes refused, by reason.",
	}, []string{"reason"})
	for _, c := range []protocol.Code{protocol.CodeUnauthorized, protocol.CodeForbidden, protocol.CodeRateLimited, protocol.CodeUnsupportedVersion, protocol.CodeShuttingDown} {
		s.metrics.authFailures.WithLabelValues(string(c))
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&collector{s: s}, budgetCollector{s: s}, s.metrics.latency, s.metrics.authFailures)
	if s.deps.Certs != nil {
		reg.MustRegister(tlsCollector{src: s.deps.Certs})
	}
	if s.cluster != nil {
		reg.MustRegister(s.cluster.m)
	}
	if s.cfg.Metrics.PerTunnelLabels {
		// One series per hostname: only when the operator asks, since
		// names are unbounded.
		s.metrics.perTunnel = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "porthole_tunnel_http_requests_total",
			Help: "Visitor HTTP requests by tunnel hostname and status class.",
		}, []string{"host", "code"})
		reg.MustRegister(s.metrics.perTunnel)
	}
	s.prom = reg
}

// authFailed counts a refused handshake.
func (s *Server) authFailed(code protocol.Code) {
	s.stats.handshakeFailed.Add(1)
	s.metrics.authFailures.WithLabelValues(string(code)).Inc()
}

// Metrics returns the server's Prometheus registry.
func (s *Server) Metrics() prometheus.Gatherer { return s.prom }

var (
	descSessions      = prometheus.NewDesc("porthole_sessions", "Connected tunnel client sessions.", nil, nil)
	descSessionsTotal = prometheus.NewDesc("porthole_sessions_total", "Client sessions accepted since start.", nil, nil)
	descTunnels       = prometheus.NewDesc("porthole_tunnels", "Bound tunnels.", nil, nil)
	descRequests      = prometheus.NewDesc("porthole_http_requests_total", "Visitor HTTP requests by status class.", []string{"code"}, nil)
	descBytes         = prometheus.NewDesc("porthole_bytes_total", "Bytes proxied, by direction (in: visitor to client).", []string{"direction"}, nil)
	descStreams       = prometheus.NewDesc("porthole_streams", "Open streams to clients.", nil, nil)
	descStreamsTotal  = prometheus.NewDesc("porthole_streams_total", "Streams opened to clients since start.", nil, nil)
	descHandshakeFail = prometheus.NewDesc("porthole_handshake_failures_total", "Tunnel handshakes refused, all reasons.", nil, nil)
	descReconnects    = prometheus.NewDesc("porthole_tunnel_reclaims_total", "Tunnels rebound to a name the same client held before (reconnects).", nil, nil)
	descLimitHits     = prometheus.NewDesc("porthole_limit_hits_total", "Requests, connections, binds or messages refused or slowed by a limit, by kind.", []string{"kind"}, nil)
	descHeld          = prometheus.NewDesc("porthole_names_held", "Names claimed, including those held for reconnecting clients.", nil, nil)
)

// collector exports the server's counters; it reads them at scrape time,
// so the request path only does atomic adds.
type collector struct{ s *Server }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descSessionsTotal, descTunnels, descRequests, descBytes, descStreams,
		descStreamsTotal, descHandshakeFail, descReconnects, descLimitHits, descHeld} {
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
	gauge(descHeld, int64(c.s.reg.Len()))
}

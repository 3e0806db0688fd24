package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/porthole/porthole/internal/httpfwd"
	"github.com/porthole/porthole/internal/limits"
)

// servePublic routes a visitor's request by its Host header.
func (s *Server) servePublic(w http.ResponseWriter, r *http.Request) {
	host := canonicalHost(r.Host)
	c, ok := s.reg.Lookup(host)
	if !ok {
		s.stats.countRequest(http.StatusNotFound)
		s.page(w, r, http.StatusNotFound, "Tunnel not found",
			fmt.Sprintf("No tunnel is serving %s right now.", host),
			"Check the address, or start a tunnel for it with porthole.", "tunnel_not_found")
		return
	}
	t := c.Endpoint
	if t == nil {
		s.stats.countRequest(http.StatusServiceUnavailable)
		s.clientAway(w, r, host)
		return
	}
	if t.proxy == nil {
		s.page(w, r, http.StatusNotFound, "Tunnel not found", fmt.Sprintf("%s is not an HTTP tunnel.", host), "", "tunnel_not_found")
		return
	}
	if s.redirectHTTPS(t, w, r) {
		return
	}
	// Limits are checked before anything reaches the client.
	if s.visitors.Enabled() {
		if ok, wait := s.visitors.Allow(remoteIP(r.RemoteAddr)); !ok {
			s.hits.Hit(limits.VisitorRequestRate, "remote", r.RemoteAddr, "host", host)
			s.tooMany(w, r, limits.VisitorRequestRate, wait, "Your address sends requests faster than this server allows.")
			return
		}
	}
	if ok, wait := t.reqRate.Allow(); !ok {
		s.hits.Hit(limits.TunnelRequestRate, "host", host, "user", t.sess.ident.User)
		s.tooMany(w, r, limits.TunnelRequestRate, wait, fmt.Sprintf("%s receives more requests than its limit of %g per second.", host, t.sess.lim.RequestsPerSecond))
		return
	}
	if t.maxConns > 0 {
		if n := t.inflight.Add(1); n > t.maxConns {
			t.inflight.Add(-1)
			s.hits.Hit(limits.TunnelConnections, "host", host, "user", t.sess.ident.User)
			s.tooMany(w, r, limits.TunnelConnections, time.Second, fmt.Sprintf("%s is serving as many requests at once as it may (%d).", host, t.maxConns))
			return
		}
		defer t.inflight.Add(-1)
	}
	s.proxyRequest(t, w, r)
}

func (s *Server) clientAway(w http.ResponseWriter, r *http.Request, host string) {
	// The client is reconnecting; a few seconds is its usual backoff.
	w.Header().Set("Retry-After", "5")
	s.page(w, r, http.StatusServiceUnavailable, "Tunnel client is reconnecting",
		fmt.Sprintf("The porthole client serving %s is disconnected right now.", host),
		"Its address is kept for it while it reconnects; try again in a few seconds.", "client_away")
}

// proxyRequest forwards r through t and writes one access log line.
func (s *Server) proxyRequest(t *tunnel, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	if id == "" || len(id) > 200 {
		id = newRequestID()
		r.Header.Set("X-Request-Id", id)
	}
	rec := &httpfwd.Recorder{ResponseWriter: w}
	t.requests.Add(1)
	t.proxy.ServeHTTP(rec, r)
	status := rec.StatusOrOK()
	s.stats.countRequest(status)
	elapsed := time.Since(start)
	s.metrics.latency.Observe(elapsed.Seconds())
	if s.metrics.perTunnel != nil {
		s.metrics.perTunnel.WithLabelValues(t.hostname, statusClass(status)).Inc()
	}
	s.log.Info("request",
		"host", t.hostname,
		"method", r.Method,
		"path", r.URL.Path,
		"status", status,
		"bytes", rec.Bytes,
		"duration", elapsed.Round(time.Microsecond).String(),
		"request_id", id,
		"remote", r.RemoteAddr)
}

// rewrite prepares the outgoing request: the visitor's Host and headers go
// to the app, plus where the request came from.
func (s *Server) rewrite(t *tunnel, pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = pr.In.Host
	pr.Out.Host = pr.In.Host
	// SetXForwarded sets X-Forwarded-For from the visitor's address,
	// X-Forwarded-Host and X-Forwarded-Proto. Any such headers the visitor
	// sent are dropped by Rewrite first, so a visitor cannot spoof them.
	pr.SetXForwarded()
	proto := "http"
	if pr.In.TLS != nil {
		proto = "https"
	}
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		// RFC 7239: IPv6 addresses are quoted and bracketed.
		forIP := ip
		if strings.Contains(ip, ":") {
			forIP = `"[` + ip + `]"`
		}
		pr.Out.Header.Set("Forwarded", fmt.Sprintf("for=%s;host=%q;proto=%s", forIP, pr.In.Host, proto))
	}
}

func modifyResponse(resp *http.Response) error {
	if resp.Header.Get("X-Request-Id") == "" && resp.Request != nil {
		resp.Header.Set("X-Request-Id", resp.Request.Header.Get("X-Request-Id"))
	}
	return nil
}

// proxyError maps transport errors to pages a visitor understands.
func (s *Server) proxyError(t *tunnel, w http.ResponseWriter, r *http.Request, err error) {
	var away *clientAwayError
	var full *streamLimitError
	switch {
	case errors.As(err, &full):
		w.Header().Set("Retry-After", "1")
		s.page(w, r, http.StatusServiceUnavailable, "Tunnel busy", fmt.Sprintf("%s: %v.", t.hostname, full), "Try again shortly.", string(limits.SessionStreams))
	case errors.Is(r.Context().Err(), context.Canceled):
		// The visitor left; nobody reads this answer.
		w.WriteHeader(499)
	case errors.As(err, &away), errors.Is(err, yamux.ErrSessionShutdown):
		s.clientAway(w, r, t.hostname)
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		s.page(w, r, http.StatusGatewayTimeout, "Tunnel timed out",
			fmt.Sprintf("The app behind %s did not answer in time.", t.hostname), "", "timeout")
	default:
		s.log.Info("proxy error", "host", t.hostname, "err", err)
		s.page(w, r, http.StatusBadGateway, "Bad gateway",
			fmt.Sprintf("The tunnel for %s broke off while forwarding this request.", t.hostname),
			"The porthole client or the app behind it closed the connection.", "tunnel_error")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// canonicalHost lowercases host and strips its port and a trailing dot.
func canonicalHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	return strings.ToLower(host)
}

func newRequestID() string {
	return fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
}

func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return string(rune('0'+status/100)) + "xx"
}

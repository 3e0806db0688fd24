package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"time"

	"github.com/porthole/porthole/internal/cluster/link"
	"github.com/porthole/porthole/internal/httpfwd"
	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/registry"
	"github.com/porthole/porthole/internal/transport"
)

// servePublic routes a visitor's request by its Host header.
func (s *Server) servePublic(w http.ResponseWriter, r *http.Request) {
	host := canonicalHost(r.Host)
	c, ok := s.reg.Lookup(host)
	if !ok {
		s.stats.countRequest(http.StatusNotFound)
		s.notFound(w, r, host)
		return
	}
	s.serveClaim(w, r, host, c)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, host string) {
	s.page(w, r, http.StatusNotFound, "Tunnel not found",
		fmt.Sprintf("No tunnel is serving %s right now.", host),
		"Check the address, or start a tunnel for it with porthole.", "tunnel_not_found")
}

// serveClaim serves a visitor's request for host, which c holds: through
// a tunnel of this server, or by the node of the cluster that holds it.
func (s *Server) serveClaim(w http.ResponseWriter, r *http.Request, host string, c *registry.Claim[*route]) {
	rt := c.Endpoint
	if rt == nil && c.Node != "" && c.NodeAddr == "" && s.cluster != nil && s.cluster.node.WaitNode(r.Context(), c.Node, time.Second) {
		// Held at a node that joined after this one last read the node
		// map: now it knows the node's address.
		if c2, ok := s.reg.Lookup(host); ok {
			c, rt = c2, c2.Endpoint
		}
	}
	if rt == nil && c.NodeAddr != "" && s.cluster != nil {
		if _, again := link.Forwarded(r); !again {
			s.forwardHTTP(w, r, host, c)
			return
		}
	}
	var t *tunnel
	if rt != nil {
		t = rt.pick(nil)
	}
	if t == nil {
		s.stats.countRequest(http.StatusServiceUnavailable)
		s.clientAway(w, r, host)
		return
	}
	if t.proxy == nil {
		s.page(w, r, http.StatusNotFound, "Tunnel not found", fmt.Sprintf("%s is not an HTTP tunnel.", host), "", "tunnel_not_found")
		return
	}
	// Redirect first, so credentials are not sent over plain HTTP.
	if s.redirectHTTPS(t, w, r) {
		s.stats.countRequest(http.StatusPermanentRedirect)
		return
	}
	// Limits are checked before anything reaches the client, and before
	// credentials, so that refused guesses count against the rate too.
	if s.visitors.Enabled() {
		if ok, wait := s.visitors.Allow(remoteIP(r.RemoteAddr)); !ok {
			s.hits.Hit(limits.VisitorRequestRate, "remote", r.RemoteAddr, "host", host)
			s.tooMany(w, r, limits.VisitorRequestRate, wait, "Your address sends requests faster than this server allows.")
			return
		}
	}
	if !s.checkAccess(rt.access, w, r, host) {
		return
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

// checkAccess applies a tunnel's access rules to a visitor and answers a
// refused one; it reports whether the request may go on. Refused visitors
// never reach the client. Wrong passwords are throttled per address (IPv6:
// per /64): a burst of tries, then one a second. The throttle comes
// first: an address out of tries gets 429 whatever it sends, the right
// password included, and costs no hash. Each try holds a token while
// the password is checked, so parallel guesses cannot exceed the burst;
// only a wrong password is charged.
func (s *Server) checkAccess(a *access, w http.ResponseWriter, r *http.Request, host string) bool {
	done := func(bool) {}
	if a.hasBasic() {
		ok, wait, end := s.accessFailures.Reserve(remoteIP(r.RemoteAddr))
		if !ok {
			s.hits.Hit(limits.AccessFailures, "remote", r.RemoteAddr, "host", host)
			s.tooMany(w, r, limits.AccessFailures, wait, "Too many wrong passwords from your address.")
			return false
		}
		done = end
	}
	d := a.check(r)
	done(d != nil && d.code == codeBasicFailed)
	if d == nil {
		return true
	}
	if d.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="porthole", charset="UTF-8"`)
	}
	s.stats.countRequest(d.status)
	s.page(w, r, d.status, http.StatusText(d.status), d.reason, "", d.code)
	return false
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
	rec := &httpfwd.Recorder{ResponseWriter: httpfwd.Duplex(w, r)}
	t.requests.Add(1)
	if t.route != nil && t.route.spread() {
		// Keep the visitor's request so a failed attempt can be retried
		// on another member as it arrived.
		r = r.WithContext(context.WithValue(r.Context(), originalKey{}, r))
	}
	t.active.Add(1)
	// Deferred: ServeHTTP panics with http.ErrAbortHandler when a body
	// copy fails (the visitor or the client left mid-response), and the
	// request is still counted and logged.
	aborted := true
	defer func() {
		t.active.Add(-1)
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
			"remote", r.RemoteAddr,
			"aborted", aborted)
	}()
	t.proxy.ServeHTTP(rec, r)
	aborted = false
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
	// The other headers that name the visitor's address: as the server
	// saw the visitor, or not at all, never as the visitor claimed.
	for _, h := range visitorAddrHeaders {
		pr.Out.Header.Del(h)
	}
	// Other spellings of them: CGI and the stacks that follow it (PHP,
	// some WSGI and Rack servers) read "X_Real_IP" as HTTP_X_REAL_IP, the
	// same variable as "X-Real-IP", and the one sent last may win.
	for name := range pr.Out.Header {
		if strings.Contains(name, "_") && isAddrHeader[http.CanonicalHeaderKey(strings.ReplaceAll(name, "_", "-"))] {
			delete(pr.Out.Header, name)
		}
	}
	proto := "http"
	if pr.In.TLS != nil {
		proto = "https"
	}
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		pr.Out.Header.Set("X-Real-Ip", ip)
		// RFC 7239: IPv6 addresses are quoted and bracketed.
		forIP := ip
		if strings.Contains(ip, ":") {
			forIP = `"[` + ip + `]"`
		}
		pr.Out.Header.Set("Forwarded", fmt.Sprintf("for=%s;host=%q;proto=%s", forIP, pr.In.Host, proto))
	}
	// The password that let the visitor in is the tunnel's, not the
	// app's: it stays here unless the tunnel asks to pass it on. (Without
	// basic auth on the tunnel, the header is the visitor's for the app.)
	if a := t.access; a.hasBasic() && !a.forwardAuth {
		pr.Out.Header.Del("Authorization")
	}
	// The tunnel's own rules come last, so they can remove or set any of
	// the above.
	t.headers.applyRequest(pr.Out.Header)
	httpfwd.ForwardRequestTrailers(pr)
}

// visitorAddrHeaders are request headers that, by one convention or
// another, carry the client's address. A visitor's copies are dropped;
// X-Real-Ip and Forwarded are then set from the connection.
var visitorAddrHeaders = []string{
	"X-Real-Ip", "True-Client-Ip", "Forwarded", "X-Client-Ip", "X-Cluster-Client-Ip",
	"Cf-Connecting-Ip", "Fastly-Client-Ip", "X-Forwarded", "Forwarded-For", "Client-Ip", "X-Originating-Ip",
}

// isAddrHeader holds visitorAddrHeaders and the X-Forwarded-* headers
// the server sets, by canonical name.
var isAddrHeader = func() map[string]bool {
	m := map[string]bool{"X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true}
	for _, h := range visitorAddrHeaders {
		m[h] = true
	}
	return m
}()

// errMemberRefused replaces a pool member's "local app refused" answer so
// that the error handler can retry the request on another member.
var errMemberRefused = errors.New("the local app behind this pool member refused the connection")

type originalKey struct{}
type retriedKey struct{}

// tunnelResponse applies t's response rules, and takes a pool member whose
// local app refuses connections out of rotation at once.
func (s *Server) tunnelResponse(t *tunnel, resp *http.Response) error {
	if t.route != nil && t.route.spread() && resp.StatusCode == http.StatusBadGateway &&
		resp.Header.Get("X-Porthole-Error") == "local_app_error" {
		t.markDown()
		resp.Body.Close()
		return errMemberRefused
	}
	t.headers.applyResponse(resp.Header)
	addHSTS(t, resp)
	return modifyResponse(resp)
}

// retryOnPool sends a failed idempotent request once more, to another
// member of t's pool. It reports whether it did.
func (s *Server) retryOnPool(t *tunnel, w http.ResponseWriter, r *http.Request) bool {
	if t.route == nil || !t.route.spread() || r.Context().Value(retriedKey{}) != nil {
		return false
	}
	orig, _ := r.Context().Value(originalKey{}).(*http.Request)
	if orig == nil || !replayable(orig) {
		return false
	}
	other := t.route.pick(t)
	if other == nil || other == t {
		return false
	}
	s.log.Info("retrying on another pool member", "host", t.hostname, "method", orig.Method, "path", orig.URL.Path,
		"request_id", orig.Header.Get("X-Request-Id"))
	retry := orig.WithContext(context.WithValue(orig.Context(), retriedKey{}, true))
	other.requests.Add(1)
	other.active.Add(1)
	defer other.active.Add(-1)
	other.proxy.ServeHTTP(w, retry)
	return true
}

// replayable reports whether a request may be sent twice: an idempotent
// method (RFC 9110 section 9.2.2) with no body to resend.
func replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
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
	if t.route != nil && t.route.spread() && !errors.Is(r.Context().Err(), context.Canceled) {
		if !errors.Is(err, errMemberRefused) {
			t.markDown()
		}
		if s.retryOnPool(t, w, r) {
			return
		}
	}
	switch {
	case errors.Is(err, errMemberRefused):
		s.page(w, r, http.StatusBadGateway, "Bad gateway",
			fmt.Sprintf("The app behind a member of the pool serving %s refused the connection.", t.hostname),
			"No other member could take this request.", "local_app_error")
	case errors.As(err, &full):
		w.Header().Set("Retry-After", "1")
		s.page(w, r, http.StatusServiceUnavailable, "Tunnel busy", fmt.Sprintf("%s: %v.", t.hostname, full), "Try again shortly.", string(limits.SessionStreams))
	case errors.Is(r.Context().Err(), context.Canceled):
		// The visitor left; nobody reads this answer.
		w.WriteHeader(499)
	case errors.As(err, &away), errors.Is(err, transport.ErrSessionShutdown):
		if t.route != nil && t.route.spread() && slices.ContainsFunc(t.route.list(), func(m *tunnel) bool { return m != t }) {
			// The pool serves on; only this member went away.
			s.page(w, r, http.StatusBadGateway, "Bad gateway",
				fmt.Sprintf("The member of the pool serving %s that took this request went away.", t.hostname),
				"Only idempotent requests without a body are retried on another member; send it again.", "tunnel_error")
			return
		}
		s.clientAway(w, r, t.hostname)
	case httpfwd.IsLimit(err):
		// A header block too large, too many fields or an endless run of
		// 1xx responses: the answer is dropped, the tunnel serves on.
		s.log.Info("response over a limit", "host", t.hostname, "err", err)
		s.page(w, r, http.StatusBadGateway, "Bad gateway",
			fmt.Sprintf("The app behind %s sent a response this server does not accept: %v.", t.hostname, err),
			"The limits on response headers are in the server's [http] settings.", "tunnel_error")
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

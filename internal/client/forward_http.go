package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/porthole/porthole/internal/httpfwd"
	"github.com/porthole/porthole/internal/inspect"
)

// httpForwarder serves one HTTP tunnel: the streams the server opens for it
// are HTTP/1.1 connections, served by an http.Server whose handler is a
// reverse proxy to the local app. It outlives sessions: after a reconnect,
// the new session's streams arrive on the same listener.
type httpForwarder struct {
	t      *tunnel
	log    *slog.Logger
	ln     *streamListener
	srv    *http.Server
	tr     *httpfwd.Transport
	up     http.RoundTripper // to the local app: tr, or HTTP/2 (upstream.go)
	target Target
	// ins records each exchange for the request inspector; nil when off.
	ins *inspect.Store
}

// Limits on the local app's response headers (502 to the visitor past
// them). They are as generous as what the client accepts from the server,
// above the server's defaults: the server applies its own limits
// (http.max_header_bytes, http.max_header_fields) to what the client
// passes on, so an operator who raises them is not held to the client's.
// These only keep a hostile or broken app from filling the client's memory.
const (
	appMaxHeaderBytes  = 1 << 20
	appMaxHeaderFields = 10000
)

func newHTTPForwarder(t *tunnel, log *slog.Logger) *httpForwarder {
	f := &httpForwarder{t: t, log: log, target: t.target, ln: newStreamListener()}
	local := newLocalDialer()
	fallback := &http.Transport{
		DialContext: local.DialContext,
		// Keep at least as many idle connections to the app as the
		// server keeps idle streams, so concurrent visitors reuse both.
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true,
		ForceAttemptHTTP2:      false,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
		TLSClientConfig:        &tls.Config{InsecureSkipVerify: t.cfg.InsecureSkipVerify}, //nolint:gosec // opt-in for self-signed local apps
		MaxResponseHeaderBytes: appMaxHeaderBytes,
	}
	// Bodyless GET, HEAD and OPTIONS requests to an http:// app take
	// httpfwd.Transport's path on the handler's own goroutine.
	f.tr = &httpfwd.Transport{
		Dial:            func(ctx context.Context) (net.Conn, error) { return local.DialContext(ctx, "tcp", f.target.Host) },
		Fallback:        fallback,
		MaxIdle:         256,
		IdleTimeout:     90 * time.Second,
		MaxHeaderBytes:  appMaxHeaderBytes,
		MaxHeaderFields: appMaxHeaderFields,
	}
	f.up = newUpstream(&t.cfg, t.target, local, f.tr, log)
	proxy := &httputil.ReverseProxy{
		Rewrite:        f.rewrite,
		Transport:      f.up,
		ErrorHandler:   f.proxyError,
		ModifyResponse: httpfwd.KeepTrailers,
		BufferPool:     httpfwd.BufferPool{},
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	f.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.capture(w, r, func(w http.ResponseWriter, r *http.Request) { f.serve(proxy, w, r) })
		}),
		// The server already enforced header limits and timeouts on the
		// visitor; here the peer is the porthole server itself.
		MaxHeaderBytes: 1 << 20,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// A stream waiting for its next request need not keep the
		// receive buffer an upload grew (up to the stream window).
		ConnState: func(c net.Conn, st http.ConnState) {
			if s, ok := c.(interface{ Shrink() }); ok && st == http.StateIdle {
				s.Shrink()
			}
		},
	}
	go f.srv.Serve(f.ln)
	return f
}

func (f *httpForwarder) serve(proxy *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &httpfwd.Recorder{ResponseWriter: w}
	f.t.requests.Add(1)
	f.t.openConns.Add(1)
	// Deferred: ReverseProxy panics with http.ErrAbortHandler when the
	// visitor leaves mid-response, and the request still counts.
	aborted := true
	defer func() {
		f.t.openConns.Add(-1)
		status := rec.StatusOrOK()
		if status >= 500 {
			f.t.errors.Add(1)
		}
		f.t.bytesOut.Add(rec.Bytes)
		if r.ContentLength > 0 {
			f.t.bytesIn.Add(r.ContentLength)
		}
		f.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", status,
			"bytes", rec.Bytes, "duration", time.Since(start).Round(time.Microsecond).String(),
			"request_id", r.Header.Get("X-Request-Id"), "aborted", aborted)
	}()
	proxy.ServeHTTP(httpfwd.Duplex(rec, r), r)
	aborted = false
}

func (f *httpForwarder) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = f.target.Scheme
	pr.Out.URL.Host = f.target.Host
	switch h := f.t.cfg.HostHeader; h {
	case "":
		pr.Out.Host = pr.In.Host
	case "rewrite":
		pr.Out.Host = f.target.Host
	default:
		pr.Out.Host = h
	}
	// Rewrite drops Forwarded and X-Forwarded-* from the outgoing request;
	// the server set them from the visitor's connection, so carry them on.
	for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v := pr.In.Header.Values(k); len(v) > 0 {
			pr.Out.Header[k] = v
		}
	}
	httpfwd.ForwardRequestTrailers(pr)
}

// proxyError explains to the visitor what went wrong on this side, naming
// the local address, and logs it for the person running the client.
func (f *httpForwarder) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(r.Context().Err(), context.Canceled) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Porthole-Error", "local_app_error")
	var status int
	var msg string
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		status = http.StatusBadGateway
		msg = fmt.Sprintf("502 Bad Gateway: the porthole client could not reach the local app at %s (connection refused). Is it running?", f.target)
		f.log.Warn("local app refused the connection", "target", f.target.String(), "request_id", r.Header.Get("X-Request-Id"))
	case isTimeout(err):
		status = http.StatusGatewayTimeout
		msg = fmt.Sprintf("504 Gateway Timeout: the local app at %s did not answer in time.", f.target)
		f.log.Warn("local app timed out", "target", f.target.String(), "err", err)
	default:
		status = http.StatusBadGateway
		msg = fmt.Sprintf("502 Bad Gateway: error talking to the local app at %s: %v", f.target, trimErr(err))
		f.log.Warn("local app error", "target", f.target.String(), "err", err)
	}
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

func trimErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s, "dial") {
		return s[i+2:]
	}
	return s
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (f *httpForwarder) close() {
	f.srv.Close()
	f.tr.Close()
	if u, ok := f.up.(*upstream); ok {
		u.h2.CloseIdleConnections()
	}
}

// streamListener hands streams to an http.Server as if they were accepted
// connections.
type streamListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closer sync.Once
}

func newStreamListener() *streamListener {
	return &streamListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *streamListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *streamListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *streamListener) Close() error {
	l.closer.Do(func() { close(l.done) })
	return nil
}

func (l *streamListener) Addr() net.Addr { return streamAddr{} }

type streamAddr struct{}

func (streamAddr) Network() string { return "porthole" }
func (streamAddr) String() string  { return "tunnel" }

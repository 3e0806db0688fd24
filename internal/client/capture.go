package client

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/porthole/porthole/internal/inspect"
)

// capture records one request through the forwarder into the inspector:
// headers when they pass, bodies chunk by chunk as the proxy streams them
// (the inspector keeps only the first bytes of each, so a large upload or
// download costs no more memory than a small one), status and duration at
// the end. Without an inspector it only calls next.
func (f *httpForwarder) capture(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request)) {
	if f.ins == nil {
		next(w, r)
		return
	}
	x := f.ins.Begin(f.t.name, r, visitor(r))
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &teeBody{ReadCloser: r.Body, x: x}
	}
	cw := &captureWriter{ResponseWriter: w, x: x}
	defer func() {
		// The proxy panics with http.ErrAbortHandler when the visitor
		// leaves mid-response: the exchange still ends, then the panic
		// goes on to net/http.
		if p := recover(); p != nil {
			x.Finish(errors.New("the visitor went away before the response was complete"))
			panic(p)
		}
	}()
	next(cw, r)
	if cw.status == http.StatusSwitchingProtocols {
		// The proxy copied the app's 101 headers after hijacking.
		x.SetUpgradeHeader(w.Header())
	}
	var err error
	// After a protocol upgrade (101) the connection belongs to the two
	// ends and its end is no failure; otherwise a cancelled request means
	// the visitor left early.
	if r.Context().Err() != nil && cw.status != http.StatusSwitchingProtocols {
		err = errors.New("the visitor went away before the response was complete")
	}
	x.Finish(err)
}

// visitor returns the visitor's address. The connection the forwarder
// sees is a stream from the server, so it is the entry the server appended
// to X-Forwarded-For (the last one; earlier ones are the visitor's claims).
func visitor(r *http.Request) string {
	if r.RemoteAddr == replayRemote {
		return r.RemoteAddr
	}
	v := r.Header.Values("X-Forwarded-For")
	if len(v) == 0 {
		return r.RemoteAddr
	}
	last := v[len(v)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last)
}

// replayRemote is the RemoteAddr of the inspector's replays.
const replayRemote = inspect.ReplayRemoteAddr

// teeBody copies what the proxy reads from a request body into the
// exchange.
type teeBody struct {
	io.ReadCloser
	x *inspect.Exchange
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.x.WriteRequestBody(p[:n])
	}
	return n, err
}

// captureWriter copies a response's status, headers and body into the
// exchange on their way to the visitor. Unwrap lets the proxy's
// http.ResponseController reach the real writer to flush (server-sent
// events) and to hijack (WebSocket upgrades).
type captureWriter struct {
	http.ResponseWriter
	x      *inspect.Exchange
	wrote  bool
	status int
}

func (c *captureWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		c.wrote = true
		c.status = code
	}
	c.x.SetResponse(code, c.ResponseWriter.Header())
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if !c.wrote {
		c.wrote = true
		c.x.SetResponse(http.StatusOK, c.ResponseWriter.Header())
	}
	n, err := c.ResponseWriter.Write(p)
	if n > 0 {
		c.x.WriteResponseBody(p[:n])
	}
	return n, err
}

func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Hijack is how the proxy takes over the connection once the local app
// agreed to switch protocols (it does so only on a 101), and then writes
// the 101 response itself, past WriteHeader: record it here.
func (c *captureWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(c.ResponseWriter).Hijack()
	if err == nil {
		c.wrote = true
		c.status = http.StatusSwitchingProtocols
		c.x.SetResponse(http.StatusSwitchingProtocols, http.Header{})
	}
	return conn, brw, err
}

// ReplayHandler returns the handler that visitors' requests on the named
// HTTP tunnel go through, for the inspector's Replay button: a replay
// reaches the local app the way the original did and is recorded and
// counted like it (inspect.Replayer).
func (c *Client) ReplayHandler(tunnel string) (http.Handler, bool) {
	for _, t := range c.tunnels {
		if t.name == tunnel && t.http != nil {
			return t.http.srv.Handler, true
		}
	}
	return nil, false
}

// InspectSnapshot returns the state and counters the inspector's metrics
// export.
func (c *Client) InspectSnapshot() inspect.Snapshot {
	s := inspect.Snapshot{
		State:      c.state.Load().(string),
		Server:     c.server.Load().(string),
		Latency:    time.Duration(c.rttNanos.Load()),
		Reconnects: c.reconnects.Load(),
		Uptime:     time.Since(c.started),
	}
	for _, t := range c.tunnels {
		st := t.status()
		s.Tunnels = append(s.Tunnels, inspect.TunnelSnapshot{
			Name: st.Name, Proto: st.Proto, URL: st.URL, Bound: st.Bound,
			Requests: st.Requests, Errors: st.Errors, BytesIn: st.BytesIn, BytesOut: st.BytesOut, OpenConns: st.OpenConns,
		})
	}
	return s
}

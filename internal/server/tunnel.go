package server

import (
	"context"
	"fmt"
	"net"
	"net/http/httputil"
	"sync/atomic"
	"time"

	"github.com/porthole/porthole/internal/httpfwd"
	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/protocol"
)

// tunnel is one bound name of one session, a member of the route the
// registry maps the name to.
type tunnel struct {
	id       string
	kind     string
	name     string // the client's label
	key      string // registry key: the hostname, or "tcp/PORT"
	hostname string
	port     int
	urls     []string
	random   bool
	sess     *session
	// httpsRedirect and hstsMaxAge (seconds) are the Bind's TLS options.
	httpsRedirect bool
	hstsMaxAge    int64
	since         time.Time
	route         *route
	access        *access      // visitor access control (nil: open)
	headers       *headerRules // header add/remove rules (nil: none)

	// Pool members leave the rotation while unhealthy (client health
	// check) or until downUntil (unix nanos) after a failure.
	unhealthy atomic.Bool
	downUntil atomic.Int64

	// HTTP tunnels only: the reverse proxy whose transport opens streams
	// on sess. The transport's idle pool is what reuses streams (and so
	// the client's connections to the local app) across requests.
	transport *httpfwd.Transport
	proxy     *httputil.ReverseProxy

	// Limits: the request bucket and the cap on concurrent visitor
	// requests or connections (0: none).
	reqRate  *limits.Bucket
	maxConns int64
	inflight atomic.Int64

	requests    atomic.Int64
	bytesIn     atomic.Int64
	bytesOut    atomic.Int64
	openStreams atomic.Int64
	// active counts visitor requests (HTTP) or connections (TCP) in
	// progress: the load the least-streams pool strategy compares.
	// openStreams is no measure of it, as it includes idle pooled streams.
	active atomic.Int64
}

// openStream opens a stream to the client for this tunnel and writes the
// stream header. It is the HTTP transport's dialer and the TCP forwarder's.
func (t *tunnel) openStream(ctx context.Context, remote, public string) (net.Conn, error) {
	ss := t.sess
	// The stream is counted before it is opened, so that concurrent
	// opens cannot all pass the limit; failures give the count back.
	if max := int64(ss.lim.MaxStreamsPerSession); ss.streams.Add(1) > max && max > 0 {
		// Streams idle in the tunnels' pools count too: give them back
		// before refusing, or one tunnel's idle pool starves the others.
		ss.closeIdleStreams()
		if ss.streams.Load() > max {
			ss.streams.Add(-1)
			ss.srv.hits.Hit(limits.SessionStreams, "session", ss.id, "user", ss.ident.User)
			return nil, &streamLimitError{max: max}
		}
	}
	st, err := t.sess.mux.OpenStream()
	if err != nil {
		ss.streams.Add(-1)
		return nil, &clientAwayError{err: err}
	}
	if dl, ok := ctx.Deadline(); ok {
		st.SetWriteDeadline(dl)
	}
	if err := protocol.WriteStreamHeader(st, &protocol.StreamHeader{TunnelID: t.id, RemoteAddr: remote, PublicAddr: public}); err != nil {
		st.Close()
		ss.streams.Add(-1)
		return nil, &clientAwayError{err: err}
	}
	st.SetWriteDeadline(time.Time{})
	t.openStreams.Add(1)
	ss.srv.stats.streamsOpen.Add(1)
	ss.srv.stats.streamsTotal.Add(1)
	var c net.Conn = &countedConn{Conn: st, t: t}
	if u := ss.user; u != nil && (u.up != nil || u.down != nil) {
		// Shape by the user's bandwidth: reads carry client->visitor
		// bytes, writes visitor->client.
		c = limits.Shape(c, u.down, u.up)
	}
	return c, nil
}

// streamLimitError means the session has as many open streams as allowed.
type streamLimitError struct{ max int64 }

func (e *streamLimitError) Error() string {
	return fmt.Sprintf("the tunnel client has %d open streams, its limit", e.max)
}

// countedConn counts a stream's bytes and keeps the open-stream gauge.
type countedConn struct {
	net.Conn
	t      *tunnel
	closed atomic.Bool
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.t.bytesOut.Add(int64(n))
	c.t.sess.srv.stats.bytesOut.Add(int64(n))
	return n, err
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.t.bytesIn.Add(int64(n))
	c.t.sess.srv.stats.bytesIn.Add(int64(n))
	return n, err
}

// Shrink lets an idle stream drop its receive buffer (yamux keeps one
// grown to the largest unread backlog, up to the window).
func (c *countedConn) Shrink() {
	if s, ok := c.Conn.(interface{ Shrink() }); ok {
		s.Shrink()
	}
}

// CloseWrite half-closes the stream, for TCP tunnels: the peer reads EOF,
// and this side still reads until the peer's own close.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.t.openStreams.Add(-1)
		c.t.sess.streams.Add(-1)
		c.t.sess.srv.stats.streamsOpen.Add(-1)
	}
	return c.Conn.Close()
}

// clientAwayError means a stream could not be opened: the session is gone.
type clientAwayError struct{ err error }

func (e *clientAwayError) Error() string { return "tunnel client unreachable: " + e.err.Error() }
func (e *clientAwayError) Unwrap() error { return e.err }

// closeIdleStreams closes the streams idle in the session's HTTP pools.
func (ss *session) closeIdleStreams() {
	ss.mu.Lock()
	ts := make([]*tunnel, 0, len(ss.tunnels))
	for _, t := range ss.tunnels {
		ts = append(ts, t)
	}
	ss.mu.Unlock()
	for _, t := range ts {
		if t.transport != nil {
			t.transport.CloseIdleConnections()
		}
	}
}

// close releases the tunnel's pooled streams.
func (t *tunnel) close() {
	if t.transport != nil {
		t.transport.Close()
	}
}

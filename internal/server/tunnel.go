package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"sync/atomic"
	"time"

	"github.com/porthole/porthole/internal/protocol"
)

// tunnel is one bound name of one session: the registry's endpoint.
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
	since    time.Time

	// HTTP tunnels only: the reverse proxy whose transport opens streams
	// on sess. The transport's idle pool is what reuses streams (and so
	// the client's connections to the local app) across requests.
	transport *http.Transport
	proxy     *httputil.ReverseProxy

	requests    atomic.Int64
	bytesIn     atomic.Int64
	bytesOut    atomic.Int64
	openStreams atomic.Int64
}

// openStream opens a stream to the client for this tunnel and writes the
// stream header. It is the HTTP transport's dialer and the TCP forwarder's.
func (t *tunnel) openStream(ctx context.Context, remote, public string) (net.Conn, error) {
	st, err := t.sess.mux.OpenStream()
	if err != nil {
		return nil, &clientAwayError{err: err}
	}
	if dl, ok := ctx.Deadline(); ok {
		st.SetWriteDeadline(dl)
	}
	if err := protocol.WriteStreamHeader(st, &protocol.StreamHeader{TunnelID: t.id, RemoteAddr: remote, PublicAddr: public}); err != nil {
		st.Close()
		return nil, &clientAwayError{err: err}
	}
	st.SetWriteDeadline(time.Time{})
	t.openStreams.Add(1)
	t.sess.srv.stats.streamsOpen.Add(1)
	t.sess.srv.stats.streamsTotal.Add(1)
	return &countedConn{Conn: st, t: t}, nil
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

// CloseWrite half-closes the stream, for TCP tunnels.
func (c *countedConn) CloseWrite() error {
	// yamux's Close sends FIN and still lets us read until the peer's FIN.
	return c.Conn.Close()
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.t.openStreams.Add(-1)
		c.t.sess.srv.stats.streamsOpen.Add(-1)
	}
	return c.Conn.Close()
}

// clientAwayError means a stream could not be opened: the session is gone.
type clientAwayError struct{ err error }

func (e *clientAwayError) Error() string { return "tunnel client unreachable: " + e.err.Error() }
func (e *clientAwayError) Unwrap() error { return e.err }

// close releases the tunnel's pooled streams.
func (t *tunnel) close() {
	if t.transport != nil {
		t.transport.CloseIdleConnections()
	}
}

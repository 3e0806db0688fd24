package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porthole/porthole/internal/limits"
)

// Every visitor connection, on the HTTP and HTTPS listeners and on TCP
// tunnel ports, passes admitVisitor: it is counted against
// limits.visitor_connections_per_ip and limits.max_visitor_connections,
// and its writes get http.write_timeout, so that a visitor who stops
// reading is cut off rather than left holding the server's memory.

// refusal says why a visitor connection was not admitted.
type refusal struct {
	kind   limits.Kind
	status int
}

// admitVisitor counts c against the per-address and total caps and wraps
// it; on refusal it returns nil and the limit that refused it.
func (s *Server) admitVisitor(c net.Conn) (*visitorConn, *refusal) {
	ip := remoteIP(c.RemoteAddr().String())
	r := s.acquireVisitor(ip)
	if r != nil {
		return nil, r
	}
	return &visitorConn{Conn: c, s: s, ip: ip, timeout: s.cfg.HTTP.WriteTimeout.D()}, nil
}

// acquireVisitor takes one visitor slot for ip; releaseVisitor gives it
// back.
func (s *Server) acquireVisitor(ip netip.Addr) *refusal {
	if max := int64(s.cfg.Limits.MaxVisitorConnections); s.visitorConns.Add(1) > max && max > 0 {
		s.visitorConns.Add(-1)
		s.hits.Hit(limits.VisitorConnectionsTotal, "remote", ip.String(), "max", max)
		return &refusal{limits.VisitorConnectionsTotal, http.StatusServiceUnavailable}
	}
	if !s.visitors.Acquire(ip) {
		s.visitorConns.Add(-1)
		s.hits.Hit(limits.VisitorConnections, "remote", ip.String())
		return &refusal{limits.VisitorConnections, http.StatusTooManyRequests}
	}
	return nil
}

func (s *Server) releaseVisitor(ip netip.Addr) {
	s.visitors.Release(ip)
	s.visitorConns.Add(-1)
}

// visitorListener admits the connections of a public listener. For the
// HTTPS listener, tc is its TLS configuration: a refusal is then sent
// over TLS (the wrapper sits below TLS, where net/http needs the
// *tls.Conn itself).
func (s *Server) visitorListener(ln net.Listener, tc *tls.Config) net.Listener {
	v := &visitorListener{Listener: ln, s: s}
	if tc != nil {
		v.tls = tc.Clone()
		v.tls.NextProtos = []string{"http/1.1"} // the refusal is HTTP/1.1 text
	}
	return v
}

type visitorListener struct {
	net.Listener
	s   *Server
	tls *tls.Config
}

func refusalText(r *refusal) string {
	msg := "429 Too many open connections from your address\n"
	if r.status == http.StatusServiceUnavailable {
		msg = "503 The server has as many visitor connections as it takes; try again shortly\n"
	}
	return fmt.Sprintf("HTTP/1.1 %d %s\r\nRetry-After: 1\r\nConnection: close\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\nX-Porthole-Error: %s\r\nContent-Length: %d\r\n\r\n%s",
		r.status, http.StatusText(r.status), r.kind, len(msg), msg)
}

func (l *visitorListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		vc, r := l.s.admitVisitor(c)
		if r == nil {
			return vc, nil
		}
		// Answer without blocking Accept: the peer may not read.
		go func() {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if l.tls != nil {
				tc := tls.Server(c, l.tls)
				if tc.Handshake() == nil {
					fmt.Fprint(tc, refusalText(r))
				}
				tc.Close()
				return
			}
			fmt.Fprint(c, refusalText(r))
			c.Close()
		}()
	}
}

// visitorConn is an admitted visitor connection, cut off when its writes
// make no progress for timeout: the visitor stopped reading.
//
// Progress is what the peer takes, not the return of each write: a
// socket buffer of megabytes wakes a blocked writer only when a third of
// it has drained, so a reader at a modest but steady rate could wait
// longer than the timeout for one write. Writes wait a quarter of the
// timeout at a time; each time one is still blocked, the kernel's count
// of unacknowledged bytes (SIOCOUTQ) tells whether the peer took any.
// Four quarters in a row without a byte taken end the connection.
// Deadlines set from above (net/http, TLS) still apply when earlier.
type visitorConn struct {
	net.Conn
	s       *Server
	ip      netip.Addr
	timeout time.Duration
	// upper is the write deadline set from above, in Unix nanoseconds
	// (0: none).
	upper atomic.Int64
	once  sync.Once
}

func (c *visitorConn) Write(p []byte) (int, error) {
	if c.timeout <= 0 {
		return c.Conn.Write(p)
	}
	quarter := c.timeout / 4
	written, stalls, lastQueue := 0, 0, -1
	for {
		d := time.Now().Add(quarter)
		if u := c.upper.Load(); u != 0 && u < d.UnixNano() {
			d = time.Unix(0, u)
		}
		c.Conn.SetWriteDeadline(d)
		n, err := c.Conn.Write(p[written:])
		written += n
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return written, err
		}
		if u := c.upper.Load(); u != 0 && u <= time.Now().UnixNano() {
			return written, err // the deadline from above
		}
		q := sendQueue(c.Conn)
		if n > 0 || (q >= 0 && lastQueue >= 0 && q < lastQueue) {
			stalls = 0
		} else if stalls++; stalls > 4 || (stalls == 4 && q < 0) {
			c.s.hits.Hit(limits.VisitorWriteTimeout, "remote", c.ip.String(), "after", c.timeout.String())
			return written, err
		}
		lastQueue = q
	}
}

func (c *visitorConn) SetWriteDeadline(t time.Time) error {
	c.setUpper(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *visitorConn) SetDeadline(t time.Time) error {
	c.setUpper(t)
	return c.Conn.SetDeadline(t)
}

func (c *visitorConn) setUpper(t time.Time) {
	if t.IsZero() {
		c.upper.Store(0)
	} else {
		c.upper.Store(t.UnixNano())
	}
}

// CloseWrite keeps net/http's graceful close (after an unread request
// body) and TCP tunnels' half-close working through the wrapper.
func (c *visitorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *visitorConn) Close() error {
	c.once.Do(func() { c.s.releaseVisitor(c.ip) })
	return c.Conn.Close()
}

// countHTTP2 counts each HTTP/2 request in progress as a visitor
// connection of its address: one HTTP/2 connection carries up to
// http.max_concurrent_streams requests, which the per-connection cap
// alone would not see.
func (s *Server) countHTTP2(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			next.ServeHTTP(w, r)
			return
		}
		ip := remoteIP(r.RemoteAddr)
		if rf := s.acquireVisitor(ip); rf != nil {
			w.Header().Set("Retry-After", "1")
			s.stats.countRequest(rf.status)
			what := "Your address has as many requests in progress as this server allows."
			if rf.status == http.StatusServiceUnavailable {
				what = "The server has as many visitor connections as it takes."
			}
			s.page(w, r, rf.status, http.StatusText(rf.status), what, "Try again shortly.", string(rf.kind))
			return
		}
		defer s.releaseVisitor(ip)
		next.ServeHTTP(w, r)
	})
}

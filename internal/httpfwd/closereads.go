package httpfwd

import (
	"errors"
	"net"
	"time"
)

// CloseReads wraps c so that Close also ends reads. A multiplexer stream's
// Close only half-closes it (yamux's lets reads go on until the peer's
// FIN), and http.Transport, having closed a connection it gave up on,
// does not stop its read loop otherwise: an upstream sending an endless
// run of 1xx responses would keep that loop parsing them after the
// request was over. The Dial and Fallback of a Transport over such
// streams should return them wrapped.
func CloseReads(c net.Conn) net.Conn { return &closeReads{c} }

type closeReads struct{ net.Conn }

func (c *closeReads) Close() error {
	c.Conn.SetReadDeadline(time.Unix(1, 0))
	return c.Conn.Close()
}

// CloseWrite half-closes, for upgraded connections (ReverseProxy passes a
// visitor's EOF on this way).
func (c *closeReads) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Shrink passes on to streams that can drop their receive buffer.
func (c *closeReads) Shrink() {
	if s, ok := c.Conn.(interface{ Shrink() }); ok {
		s.Shrink()
	}
}

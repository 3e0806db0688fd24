package link

import (
	"errors"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// serveTCP serves a stream that carries a forwarded TCP connection.
func (s *Server) serveTCP(c net.Conn) {
	p, err := readTCPPreamble(c)
	if err != nil {
		s.log.Warn("cluster link TCP stream refused", zap.Error(err))
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	s.tcp.Add(1)
	defer s.tcp.Done()
	s.stats.tcpIn.Add(1)
	tc := &tcpConn{Conn: c, visitor: net.TCPAddrFromAddrPort(p.visitor)}
	err = s.h.ServeForwardedTCP(tc, int(p.port), p.gen, p.visitor)
	if err != nil && tc.refuse(err) && errors.Is(err, ErrStale) {
		s.stats.staleIn.Add(1)
	}
	tc.Close()
}

// tcpConn is the holder's side of a forwarded TCP connection. Its first
// Read or Write tells the dialing node that the connection is accepted;
// its remote address is the visitor's.
type tcpConn struct {
	net.Conn
	visitor *net.TCPAddr

	once     sync.Once
	answered bool
	ackErr   error
}

func (c *tcpConn) accept() error {
	c.once.Do(func() {
		c.answered = true
		_, c.ackErr = c.Conn.Write([]byte{tcpOK})
	})
	return c.ackErr
}

// refuse answers err if nothing was answered yet, and reports whether it
// did.
func (c *tcpConn) refuse(err error) bool {
	did := false
	c.once.Do(func() {
		c.answered, did = true, true
		msg := []byte{tcpStale}
		if !errors.Is(err, ErrStale) {
			m := err.Error()
			if len(m) > 255 {
				m = m[:255]
			}
			msg = append([]byte{tcpRefused, byte(len(m))}, m...)
		}
		c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		c.Conn.Write(msg)
	})
	return did
}

func (c *tcpConn) Read(p []byte) (int, error) {
	if err := c.accept(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *tcpConn) Write(p []byte) (int, error) {
	if err := c.accept(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// CloseWrite passes the visitor's half-close on.
func (c *tcpConn) CloseWrite() error {
	if err := c.accept(); err != nil {
		return err
	}
	return c.Conn.(interface{ CloseWrite() error }).CloseWrite()
}

// RemoteAddr is the visitor's address.
func (c *tcpConn) RemoteAddr() net.Addr { return c.visitor }

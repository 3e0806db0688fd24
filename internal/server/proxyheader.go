package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
)

// maxPendingProxyHeaders bounds the connections from trusted load
// balancers whose PROXY header is still being read; past it new ones are
// closed at once. Only trusted addresses can hold these slots.
const maxPendingProxyHeaders = 1024

// parseProxyFrom reads [http] proxy_protocol_from: addresses or CIDR
// prefixes of the load balancers whose PROXY protocol header is believed.
func parseProxyFrom(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR prefix", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// proxyHeaderListener takes the visitor's address from the PROXY protocol
// header (v1 or v2) that a trusted L4 load balancer sends first, so that
// per-address limits, logs and X-Forwarded-For see the visitor and not the
// balancer. A connection from a trusted address must carry the header (it
// is closed otherwise); any other connection is passed on untouched, so a
// stranger cannot claim an address by sending a header.
//
// Headers are read off the accept loop, each within the read-header
// timeout: a balancer's slow connection holds up no one else.
type proxyHeaderListener struct {
	net.Listener
	trusted []netip.Prefix
	timeout time.Duration
	pending chan struct{} // slots for headers being read
	conns   chan net.Conn
	errs    chan error
	done    chan struct{}
	once    sync.Once
}

// proxyHeaders wraps ln when proxy_protocol_from is set.
func (s *Server) proxyHeaders(ln net.Listener) net.Listener {
	if len(s.proxyFrom) == 0 {
		return ln
	}
	l := &proxyHeaderListener{
		Listener: ln,
		trusted:  s.proxyFrom,
		timeout:  s.cfg.HTTP.ReadHeaderTimeout.D(),
		pending:  make(chan struct{}, maxPendingProxyHeaders),
		conns:    make(chan net.Conn),
		errs:     make(chan error, 1),
		done:     make(chan struct{}),
	}
	if l.timeout <= 0 {
		l.timeout = 10 * time.Second
	}
	go l.acceptLoop()
	return l
}

func (l *proxyHeaderListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *proxyHeaderListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *proxyHeaderListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			// Hand every error to the caller, which retries passing ones
			// (as http.Server and the TCP ports do) and stops on others.
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !l.isTrusted(c.RemoteAddr()) {
			l.deliver(c)
			continue
		}
		select {
		case l.pending <- struct{}{}:
			go l.readHeader(c)
		default:
			c.Close()
		}
	}
}

func (l *proxyHeaderListener) isTrusted(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range l.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (l *proxyHeaderListener) readHeader(c net.Conn) {
	defer func() { <-l.pending }()
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REQUIRE), proxyproto.SetReadHeaderTimeout(l.timeout))
	if pc.ProxyHeader() == nil {
		// No header, a malformed one, or none in time.
		c.Close()
		return
	}
	l.deliver(&proxiedConn{Conn: pc})
}

func (l *proxyHeaderListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// proxiedConn keeps the socket reachable for the write-progress check
// (sendQueue), which the PROXY protocol wrapper hides.
type proxiedConn struct {
	*proxyproto.Conn
}

func (c *proxiedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Raw().(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

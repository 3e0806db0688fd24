package link

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/porthole/porthole/internal/transport"
)

// ErrStale is the answer for a claim this node does not hold (any more)
// at the generation asked: the holder's Handler returns it before writing,
// the link answers 421 (HTTP) or a stale mark (TCP), and the forwarding
// side's ForwardHTTP or DialTCP returns it, with nothing written, so the
// caller can refresh its routes and retry once.
var ErrStale = errors.New("cluster link: the node does not hold this claim at this generation")

// ErrServerClosed is what Serve returns after Shutdown.
var ErrServerClosed = http.ErrServerClosed

// Handler serves what other nodes forward to this one. The requests and
// connections it gets carry the visitor's own address (r.RemoteAddr,
// c.RemoteAddr()) and, for HTTP, r.TLS set when the visitor used TLS
// (only Version and ServerName are filled in); a handler must serve them
// itself, never forward them again (Forwarded tells such a request).
type Handler interface {
	// ServeForwardedHTTP serves a visitor request forwarded by another node for the tunnel at host, claimed at generation gen. Return link.ErrStale (before writing) if this node does not hold host at gen; the link answers 421.
	ServeForwardedHTTP(w http.ResponseWriter, r *http.Request, host string, gen uint64) error
	// ServeForwardedTCP serves a visitor connection forwarded for TCP port at generation gen; visitor is the original remote address.
	// Return ErrStale (or another error) before reading or writing c to
	// refuse it: the dialing node's DialTCP returns that error. The
	// first Read or Write accepts the connection. The link closes c when
	// ServeForwardedTCP returns.
	ServeForwardedTCP(c net.Conn, port int, gen uint64, visitor netip.AddrPort) error
}

// Server accepts the cluster link connections of other nodes and serves
// what they forward with its Handler. Its exported fields are limits,
// each with a safe default when zero; set them before Serve.
type Server struct {
	// HandshakeTimeout bounds each connection's TLS handshake.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds unauthenticated connections at once.
	MaxHandshakes int
	// MaxHandshakesPerIP bounds them per remote IP address.
	MaxHandshakesPerIP int
	// MaxStreams bounds the open streams of each peer session.
	MaxStreams int
	// IdleTimeout closes kept-alive HTTP streams idle this long.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a forwarded request's header block.
	MaxHeaderBytes int

	h      Handler
	log    *zap.Logger
	id     *identity
	idErr  error
	budget *transport.Budget

	httpOnce sync.Once
	httpSrv  *http.Server
	httpL    *streamListener

	mu         sync.Mutex
	closed     bool
	listeners  map[net.Listener]struct{}
	sessions   map[*transport.Session]struct{}
	handshakes int
	perIP      map[netip.Addr]int
	base       context.Context
	cancelBase context.CancelFunc

	conns sync.WaitGroup // handshakes, sessions and their streams
	tcp   sync.WaitGroup // forwarded TCP connections being served

	stats serverStats
}

// NewServer returns a server for the cluster that shares secret, serving
// with h. An unusable secret (ValidateSecret) makes Serve fail.
func NewServer(secret []byte, h Handler, log *zap.Logger) *Server {
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{
		h:         h,
		log:       log,
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*transport.Session]struct{}{},
		perIP:     map[netip.Addr]int{},
		// Bounds what slow readers on this node make all peer sessions
		// buffer together.
		budget: transport.NewBudget(256 << 20),
	}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.id, s.idErr = deriveIdentity(secret)
	s.httpL = newStreamListener()
	return s
}

func orDefault[T int | time.Duration](v, d T) T {
	if v > 0 {
		return v
	}
	return d
}

// Serve accepts link connections on l until Shutdown, then returns
// ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	if s.idErr != nil {
		l.Close()
		return s.idErr
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	s.startHTTP()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		ip := addrIP(c.RemoteAddr())
		if reason := s.admit(ip); reason != "" {
			s.stats.refuse(reason)
			c.Close()
			continue
		}
		s.conns.Add(1)
		go s.handshake(c, ip)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// admit counts a new unauthenticated connection from ip, or names the
// limit it is over.
func (s *Server) admit(ip netip.Addr) Refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return RefusedClosing
	}
	if s.handshakes >= orDefault(s.MaxHandshakes, DefaultMaxHandshakes) {
		return RefusedHandshakes
	}
	if s.perIP[ip] >= orDefault(s.MaxHandshakesPerIP, DefaultMaxHandshakesPerIP) {
		return RefusedHandshakesPerIP
	}
	s.handshakes++
	s.perIP[ip]++
	return ""
}

func (s *Server) handshakeDone(ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handshakes--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

// handshake authenticates c and, if the peer holds the secret, serves a
// session on it. Nothing is read from c but the TLS handshake until
// then.
func (s *Server) handshake(c net.Conn, ip netip.Addr) {
	defer s.conns.Done()
	tc := tls.Server(c, s.id.serverConfig())
	timeout := orDefault(s.HandshakeTimeout, DefaultHandshakeTimeout)
	c.SetDeadline(time.Now().Add(timeout))
	// Shutdown cuts handshakes in progress (base ends).
	ctx, cancel := context.WithTimeout(s.base, timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	s.handshakeDone(ip)
	if err != nil {
		s.stats.refuse(RefusedHandshakeFailed)
		s.log.Debug("cluster link handshake refused", zap.Stringer("remote", c.RemoteAddr()), zap.Error(err))
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	sess, err := transport.NewServerSession(newBatchConn(tc), sessionOptions(orDefault(s.MaxStreams, DefaultMaxStreams), s.budget, s.log))
	if err != nil {
		c.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sess.Close()
		return
	}
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	s.stats.sessions.Add(1)
	s.log.Debug("cluster link peer connected", zap.Stringer("remote", c.RemoteAddr()))
	defer func() {
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
		s.stats.sessions.Add(-1)
	}()
	s.conns.Add(1)
	go func() {
		defer s.conns.Done()
		keepAlive(sess, 0, s.log)
	}()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			sess.Close()
			return
		}
		s.conns.Add(1)
		go s.serveStream(st)
	}
}

// serveStream reads a stream's kind and hands it on.
func (s *Server) serveStream(c net.Conn) {
	defer s.conns.Done()
	c.SetReadDeadline(time.Now().Add(preambleTimeout))
	var kind [1]byte
	if _, err := c.Read(kind[:]); err != nil {
		c.Close()
		return
	}
	switch kind[0] {
	case kindHTTP:
		c.SetReadDeadline(time.Time{})
		if !s.httpL.hand(c) {
			c.Close()
		}
	case kindTCP:
		s.serveTCP(c)
	default:
		s.log.Warn("cluster link stream of unknown kind", zap.Uint8("kind", kind[0]))
		c.Close()
	}
}

// Shutdown stops accepting, lets forwarded HTTP requests and TCP
// connections in progress finish until ctx ends, then closes every
// session. It returns ctx's error if it had to cut some.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.cancelBase()
	}
	for l := range s.listeners {
		l.Close()
	}
	sessions := make([]*transport.Session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	// Peers open no new streams on a session going away.
	for _, sess := range sessions {
		sess.GoAway()
	}
	s.startHTTP() // so that Shutdown below has a server to stop
	err := s.httpSrv.Shutdown(ctx)
	tcpDone := make(chan struct{})
	go func() { s.tcp.Wait(); close(tcpDone) }()
	select {
	case <-tcpDone:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	for sess := range s.sessions {
		sess.Close()
	}
	s.mu.Unlock()
	s.httpSrv.Close()
	s.conns.Wait()
	<-tcpDone
	return err
}

// addrIP is the IP of a connection's remote address.
func addrIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

// streamListener hands HTTP streams to the link's http.Server.
type streamListener struct {
	ch   chan net.Conn
	once sync.Once
	stop chan struct{}
}

func newStreamListener() *streamListener {
	return &streamListener{ch: make(chan net.Conn), stop: make(chan struct{})}
}

func (l *streamListener) hand(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.stop:
		return false
	}
}

func (l *streamListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.stop:
		return nil, net.ErrClosed
	}
}

func (l *streamListener) Close() error {
	l.once.Do(func() { close(l.stop) })
	return nil
}

func (l *streamListener) Addr() net.Addr { return linkAddr{} }

type linkAddr struct{}

func (linkAddr) Network() string { return "cluster-link" }
func (linkAddr) String() string  { return "cluster-link" }

// errTooManyFiles is the accept error of a process out of descriptors:
// waited out, like a timeout.
var errTooManyFiles = syscall.EMFILE

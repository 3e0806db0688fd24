package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/names"
	"github.com/porthole/porthole/internal/registry"
	"github.com/porthole/porthole/internal/transport"
)

// Deps are the parts a server is built from. Only Logger is required.
type Deps struct {
	Logger *slog.Logger
	// Auth checks client credentials; nil requires Config.NoAuth.
	Auth auth.Authenticator
	// Policy decides which names an identity may bind; nil allows any free
	// subdomain and no custom hostnames.
	Policy Policy
	// TLS serves the HTTPS and WSS listeners when set.
	TLS *tls.Config
	// Certs, set with TLS when certificates come from LoadTLS, answers
	// ACME HTTP-01 challenges and feeds the certificate metrics.
	Certs Certs
	// Ready, when set, is consulted by /readyz (e.g. a database ping).
	Ready func(context.Context) error
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Version is reported to clients.
	Version string
	// Cluster, when set, makes the server a node of a cluster; it
	// requires Config.Cluster.Addr.
	Cluster *ClusterDeps
}

// Server is a running porthole server. Create it with New, open its
// listeners with Start, and stop it by cancelling the context given to Run.
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time

	strategy names.Strategy
	reserved names.ReservedSet
	reg      registry.Registry[*route]
	claimMu  sync.Mutex // serializes claims, so pools form without races
	mux      transport.Options

	// proxyFrom: load balancers whose PROXY headers are believed.
	proxyFrom []netip.Prefix

	mu       sync.Mutex
	sessions map[string]*session
	users    map[string]*userState
	closing  bool
	revs     revocationLog // recent revocations, for handshakes in flight
	// sweepStop ends sweepLoop at shutdown.
	sweepStop chan struct{}

	hits     *limits.Hits
	visitors *limits.IPTable // per visitor address, public listeners
	// visitorConns counts open visitor connections (and HTTP/2 requests)
	// on all public listeners, for limits.max_visitor_connections.
	visitorConns atomic.Int64
	// budget bounds what slow visitors make sessions buffer.
	budget     *transport.Budget
	handshakes *limits.IPTable // per client address, tunnel listener
	// accessFailures throttles wrong tunnel passwords per visitor address.
	accessFailures *limits.IPTable
	// floodCuts bars, for a while, the address of a client cut off by the
	// frame guard.
	floodCuts *limits.IPTable

	public, tunnelSrv, admin, https *http.Server
	lnPublic, lnTunnel, lnAdmin     net.Listener
	lnHTTPS                         net.Listener
	httpPort, httpsPort             int
	tcp                             *tcpPorts
	// cluster is set on a node of a cluster.
	cluster *clusterSide

	// errLog takes net/http's and httputil's own messages into the
	// process log, at debug level.
	errLog *log.Logger

	started atomic.Bool
	stats   stats
	metrics serverMetrics
	prom    *prometheus.Registry
}

// New builds a server from a validated config.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		return nil, errors.New("server: Deps.Logger is required")
	}
	if deps.Auth == nil {
		if !cfg.NoAuth {
			return nil, errors.New("server: no authenticator configured and --no-auth not given")
		}
		deps.Auth = auth.Open{}
	}
	if deps.Policy == nil {
		deps.Policy = OpenPolicy{}
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	strategy, _ := names.ParseStrategy(cfg.Subdomains.Strategy)
	reserved := cfg.Subdomains.Reserved
	if len(reserved) == 0 {
		reserved = names.DefaultReserved
	}
	lo, hi, _ := ParsePortRange(cfg.TCPPorts)
	proxyFrom, err := parseProxyFrom(cfg.HTTP.ProxyProtocolFrom)
	if err != nil {
		return nil, fmt.Errorf("http.proxy_protocol_from: %w", err)
	}
	budget := transport.NewBudget(cfg.Tunnel.BufferBudget)
	s := &Server{
		budget:   budget,
		cfg:      cfg,
		deps:     deps,
		log:      deps.Logger,
		now:      deps.Now,
		strategy: strategy,
		reserved: names.NewReservedSet(reserved),
		reg:      registry.NewMemory[*route](deps.Now),
		sessions: make(map[string]*session),
		users:    make(map[string]*userState),
		hits:     limits.NewHits(deps.Logger, 10*time.Second, deps.Now),
		visitors: limits.NewIPTable(cfg.Limits.VisitorRequestsPerIP, cfg.Limits.VisitorBurstPerIP,
			cfg.Limits.VisitorConnectionsPerIP, deps.Now),
		handshakes: limits.NewIPTable(cfg.Limits.HandshakesPerIP, cfg.Limits.HandshakeBurstPerIP, 0, deps.Now),
		accessFailures: limits.NewIPTable(cfg.Limits.BasicAuthFailuresPerSecondPerIP,
			cfg.Limits.BasicAuthFailureBurstPerIP, 0, deps.Now),
		// A client cut off for flooding frames may not come back from its
		// address for 10 s: reconnecting at once would make every cut
		// cost a handshake and a new session, and the flood go on.
		floodCuts: limits.NewIPTable(0.1, 1, 0, deps.Now),
		mux: transport.Options{
			StreamWindow: uint32(cfg.Tunnel.StreamWindow),
			// yamux also sizes its limit on streams opened but not yet
			// acknowledged with this, so it bounds how many visitors can
			// start at once per round trip: keep yamux's default. Streams
			// a client opens itself (only the control stream is allowed)
			// are closed at once by refuseStreams.
			AcceptBacklog:    256,
			Logger:           deps.Logger,
			AllowCompression: cfg.Tunnel.Compression == CompressionAllow,
			Budget:           budget,
		},
	}
	s.proxyFrom = proxyFrom
	s.mux.Guard = transport.ServerGuard(func(kind string) {
		s.hits.Hit(limits.ClientFrames, "frames", kind)
	})
	budget.OnWait = func() { s.hits.Hit(limits.BufferBudget, "budget_bytes", cfg.Tunnel.BufferBudget) }
	s.errLog = slog.NewLogLogger(deps.Logger.Handler(), slog.LevelDebug)
	s.tcp = newTCPPorts(s, lo, hi)
	if (deps.Cluster != nil) != (cfg.Cluster.Addr != "") {
		return nil, errors.New("server: a cluster node needs both cluster.addr and Deps.Cluster")
	}
	if deps.Cluster != nil {
		if err := s.setupCluster(deps.Cluster); err != nil {
			return nil, err
		}
	}
	s.setupMetrics()
	return s, nil
}

// Start opens every listener and starts serving. Addresses can be read
// with the *Addr methods afterwards.
func (s *Server) Start() (err error) {
	defer func() {
		if err != nil {
			s.closeListeners()
		}
	}()
	keepAlive := s.cfg.HTTP.KeepAlive.D()
	if s.lnPublic, err = listen(s.cfg.HTTPAddr, keepAlive); err != nil {
		return fmt.Errorf("public HTTP listener: %w", err)
	}
	s.lnPublic = s.proxyHeaders(s.lnPublic)
	s.httpPort = portOf(s.lnPublic.Addr())
	if s.lnTunnel, err = listen(s.cfg.TunnelAddr, keepAlive); err != nil {
		return fmt.Errorf("tunnel listener: %w", err)
	}
	s.lnTunnel = s.proxyHeaders(s.lnTunnel)
	if s.cfg.AdminAddr != "" {
		if s.lnAdmin, err = listen(s.cfg.AdminAddr, keepAlive); err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
	}
	if s.cfg.HTTPSAddr != "" {
		if s.deps.TLS == nil {
			return errors.New("https listener needs a TLS configuration")
		}
		if s.lnHTTPS, err = listen(s.cfg.HTTPSAddr, keepAlive); err != nil {
			return fmt.Errorf("public HTTPS listener: %w", err)
		}
		s.lnHTTPS = s.proxyHeaders(s.lnHTTPS)
		s.httpsPort = portOf(s.lnHTTPS.Addr())
	}

	s.public = s.publicServer()
	s.public.Protocols = s.plainProtocols()
	s.public.Handler = s.acmeHTTP(s.public.Handler)
	s.tunnelSrv = &http.Server{
		Handler:           http.HandlerFunc(s.serveTunnelHandshake),
		ReadHeaderTimeout: s.cfg.Tunnel.HandshakeTimeout.D(),
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          s.errLog,
	}
	go serve(s.public, s.visitorListener(s.lnPublic, nil))
	tunnelLn := s.lnTunnel
	if s.deps.TLS != nil {
		tunnelLn = tls.NewListener(s.lnTunnel, s.tunnelTLSConfig())
	}
	go serve(s.tunnelSrv, tunnelLn)
	if s.lnHTTPS != nil {
		s.https = s.publicServer()
		publicTLS := s.publicTLSConfig()
		go serve(s.https, tls.NewListener(s.visitorListener(s.lnHTTPS, publicTLS), publicTLS))
	}
	if s.lnAdmin != nil {
		s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: s.errLog}
		go serve(s.admin, s.lnAdmin)
	}
	if s.cluster != nil {
		if err := s.startCluster(); err != nil {
			return err
		}
	}
	s.sweepStop = make(chan struct{})
	go s.sweepLoop(s.sweepStop)
	if s.cluster != nil {
		go s.clusterLoop(s.sweepStop)
	}
	s.started.Store(true)
	s.log.Info("server started",
		"domain", s.cfg.Domain,
		"http", s.lnPublic.Addr().String(),
		"https", addrString(s.lnHTTPS),
		"tunnel", s.lnTunnel.Addr().String(),
		"tunnel_tls", s.deps.TLS != nil,
		"admin", addrString(s.lnAdmin),
		"cluster", addrString(s.clusterListener()),
		"auth", !s.cfg.NoAuth)
	if s.cfg.NoAuth {
		s.log.Warn("authentication is off (--no-auth): anyone who reaches the tunnel listener can open tunnels; use this for development only")
	}
	return nil
}

func (s *Server) publicServer() *http.Server {
	// http.write_timeout is applied per write by visitorConn, not as
	// net/http's WriteTimeout, which would bound a whole response.
	return &http.Server{
		Handler:           s.countHTTP2(http.HandlerFunc(s.servePublic)),
		ReadHeaderTimeout: s.cfg.HTTP.ReadHeaderTimeout.D(),
		IdleTimeout:       s.cfg.HTTP.IdleTimeout.D(),
		MaxHeaderBytes:    s.cfg.HTTP.MaxHeaderBytes,
		ErrorLog:          s.errLog,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: s.cfg.HTTP.MaxConcurrentStreams,
			// A stream's request body waits in a buffer of this size when
			// the tunnel is slower than the visitor; Go's default is 1 MiB
			// per stream, 100 times over per connection.
			MaxReceiveBufferPerStream:     256 << 10,
			MaxReceiveBufferPerConnection: 1 << 20,
		},
	}
}

func (s *Server) tunnelTLSConfig() *tls.Config {
	return listenerTLS(s.deps.TLS, "http/1.1")
}

func (s *Server) publicTLSConfig() *tls.Config {
	c := listenerTLS(s.deps.TLS, "h2", "http/1.1")
	// Client certificates identify tunnel clients only; visitors are
	// never asked for one.
	c.ClientAuth = tls.NoClientCert
	c.ClientCAs = nil
	return c
}

// Run serves until ctx is cancelled, then shuts down gracefully: listeners
// close, in-flight requests drain for up to http.shutdown_timeout, clients
// are told the server is going away. It calls Start if needed.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.Load() {
		if err := s.Start(); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return s.Shutdown()
}

// Shutdown stops the server; see Run.
func (s *Server) Shutdown() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	if s.sweepStop != nil {
		close(s.sweepStop)
	}
	s.mu.Unlock()
	s.log.Info("shutting down: draining in-flight requests", "timeout", s.cfg.HTTP.ShutdownTimeout.D().String())

	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.HTTP.ShutdownTimeout.D())
	defer cancel()
	// Clients hear first, so those with another server move there while
	// this one drains; the sessions stay up until the notice below.
	s.goAway(s.cfg.HTTP.ShutdownTimeout.D() + 2*time.Second)
	s.waitNamesMoved(dctx)
	// Stop taking new clients first, then drain visitors; sessions stay up
	// until their in-flight requests finish.
	_ = s.tunnelSrv.Close()
	s.tcp.closeAll()
	var wg sync.WaitGroup
	for _, hs := range []*http.Server{s.public, s.https} {
		if hs == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Shutdown(dctx); err != nil {
				s.log.Warn("drain timed out; closing remaining connections", "err", err)
				hs.Close()
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.notifyAndClose(noticeShutdown())
	}
	for _, ss := range sessions {
		ss.wait(2 * time.Second)
	}
	s.leaveCluster(dctx)
	if s.admin != nil {
		_ = s.admin.Shutdown(dctx)
	}
	s.log.Info("server stopped")
	return nil
}

func (s *Server) closeListeners() {
	for _, l := range []net.Listener{s.lnPublic, s.lnTunnel, s.lnAdmin, s.lnHTTPS, s.clusterListener()} {
		if l != nil {
			l.Close()
		}
	}
}

func (s *Server) sweepLoop(stop <-chan struct{}) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.reg.Sweep()
		s.visitors.Sweep()
		s.handshakes.Sweep()
		s.accessFailures.Sweep()
		s.floodCuts.Sweep()
	}
}

// HTTPAddr returns the public HTTP listener's address.
func (s *Server) HTTPAddr() net.Addr { return s.lnPublic.Addr() }

// HTTPSAddr returns the public HTTPS listener's address, or nil.
func (s *Server) HTTPSAddr() net.Addr { return addrOf(s.lnHTTPS) }

// TunnelAddr returns the tunnel listener's address.
func (s *Server) TunnelAddr() net.Addr { return s.lnTunnel.Addr() }

// AdminAddr returns the admin listener's address, or nil.
func (s *Server) AdminAddr() net.Addr { return addrOf(s.lnAdmin) }

// TunnelURL returns the ws:// or wss:// URL clients should dial.
func (s *Server) TunnelURL() string {
	scheme := "ws"
	if s.deps.TLS != nil {
		scheme = "wss"
	}
	return scheme + "://" + s.lnTunnel.Addr().String()
}

func (s *Server) addSession(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.revs.since(ss.authGen, ss.ident, "") {
		return false
	}
	s.sessions[ss.id] = ss
	return true
}

func (s *Server) removeSession(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss.id)
	s.mu.Unlock()
}

func listen(addr string, keepAlive time.Duration) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: keepAlive}
	return lc.Listen(context.Background(), "tcp", addr)
}

func serve(hs *http.Server, ln net.Listener) {
	_ = hs.Serve(ln)
}

func portOf(a net.Addr) int {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.Port
	}
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return n
}

func addrOf(l net.Listener) net.Addr {
	if l == nil {
		return nil
	}
	return l.Addr()
}

func addrString(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// Revoke ends every session authenticated with the credential whose id is
// credentialID, freeing its names at once, and returns how many it ended.
// The identity layer calls it when a key is revoked, in this process or
// (seen through the store) in another.
func (s *Server) Revoke(credentialID, reason string) int {
	if credentialID == "" {
		return 0
	}
	return s.RevokeMatching(func(id *auth.Identity) bool { return id.RevokedBy(credentialID) }, reason)
}

// RevokeUser ends every session of user, e.g. when the user is deleted.
func (s *Server) RevokeUser(user, reason string) int {
	if user == "" {
		return 0
	}
	return s.RevokeMatching(func(id *auth.Identity) bool { return id.User == user }, reason)
}

// sessionsWhere returns the sessions that match, read under the lock and
// used outside it (their own methods lock what they touch).
func (s *Server) sessionsWhere(match func(*session) bool) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*session
	for _, ss := range s.sessions {
		if match(ss) {
			out = append(out, ss)
		}
	}
	return out
}

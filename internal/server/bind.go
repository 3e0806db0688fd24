package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"

	"github.com/porthole/porthole/internal/httpfwd"
	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/names"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/registry"
)

func (ss *session) handleBind(b *protocol.Bind) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t, err := ss.srv.bind(ctx, ss, b)
	if err != nil {
		var perr *protocol.Error
		if !errors.As(err, &perr) {
			perr = protocol.Err(protocol.CodeInternal, false, "bind failed: %v", err)
		}
		e := *perr
		e.ID = b.ID
		ss.log.Info("bind refused", "kind", b.Kind, "subdomain", b.Subdomain, "hostname", b.Hostname, "port", b.RemotePort, "code", e.Code, "reason", e.Message)
		ss.w.Write(&e)
		return
	}
	ss.log.Info("tunnel bound", "tunnel", t.key, "url", t.urls[0], "name", t.name)
	ss.w.Write(&protocol.Bound{ID: b.ID, TunnelID: t.id, Hostname: t.hostname, Port: t.port, URLs: t.urls})
}

// bind validates a Bind, claims its name and creates the tunnel.
func (s *Server) bind(ctx context.Context, ss *session, b *protocol.Bind) (*tunnel, error) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return nil, protocol.Err(protocol.CodeShuttingDown, false, "server is shutting down")
	}
	if max := ss.lim.MaxTunnelsPerUser; max > 0 {
		n, err := s.userTunnels(ss)
		if err != nil {
			return nil, unavailableErr()
		}
		if n >= max && !s.takesOver(ss, b) {
			s.hits.Hit(limits.UserTunnels, "user", ss.ident.User)
			return nil, protocol.Err(protocol.CodeLimitExceeded, true, "tunnel limit reached: %d of %d tunnels in use", n, max)
		}
	}
	if max := s.cfg.Limits.MaxTunnels; max > 0 && s.stats.tunnelsOpen.Load() >= int64(max) && !s.takesOver(ss, b) {
		s.hits.Hit(limits.ServerTunnels)
		e := protocol.Err(protocol.CodeLimitExceeded, false, "this server is at its capacity of %d tunnels; try again later", max)
		e.RetryAfterMillis = 30_000
		return nil, e
	}
	t := &tunnel{id: newSessionID(), kind: b.Kind, name: b.Name, sess: ss, since: s.now(),
		reqRate:  limits.NewBucket(ss.lim.RequestsPerSecond, ss.lim.RequestBurst(), s.now),
		maxConns: int64(ss.lim.MaxConnectionsPerTunnel)}
	var err error
	if t.access, err = compileAccess(ctx, b.Access); err != nil {
		return nil, err
	}
	if t.headers, err = compileHeaderRules(b.Headers); err != nil {
		return nil, err
	}
	if b.Pool != nil && b.Subdomain == "" && b.Hostname == "" && b.RemotePort == 0 {
		return nil, badOption("a pool needs a name all its members bind: pass --subdomain, --hostname or --remote-port")
	}
	switch b.Kind {
	case protocol.KindHTTP:
		if err := s.bindTLSOptions(b, t); err != nil {
			return nil, err
		}
		if err := s.bindHTTP(ctx, ss, b, t); err != nil {
			return nil, err
		}
	case protocol.KindTCP:
		if err := s.tcp.bind(ctx, ss, b, t); err != nil {
			return nil, err
		}
	default:
		return nil, protocol.Err(protocol.CodeBadRequest, true, "unknown tunnel kind %q (want http or tcp)", b.Kind)
	}
	ss.addTunnel(t)
	s.stats.tunnelsOpen.Add(1)
	return t, nil
}

func (s *Server) bindHTTP(ctx context.Context, ss *session, b *protocol.Bind, t *tunnel) error {
	if b.Hostname != "" {
		host := strings.TrimSuffix(b.Hostname, ".")
		if err := names.ValidateHostname(host); err != nil {
			return protocol.Err(protocol.CodeInvalidName, true, "%v", err)
		}
		if host == s.cfg.Domain || strings.HasSuffix(host, "."+s.cfg.Domain) {
			return protocol.Err(protocol.CodeInvalidName, true, "%s is under this server's domain; use --subdomain instead of --hostname", host)
		}
		gen := s.revocationGen()
		if err := s.deps.Policy.CheckHostname(ctx, ss.ident, host); err != nil {
			return err
		}
		if err := s.claimHTTP(ss, t, host, b.Pool); err != nil {
			return err
		}
		if s.hostReleasedSince(gen, ss.ident, host) {
			// The domain was removed or given to another user while it
			// was being checked.
			s.unclaim(t, 0)
			t.close()
			return protocol.Err(protocol.CodeForbidden, true, "custom domain %s was removed or reassigned while it was being bound", host)
		}
		return nil
	}
	if b.Subdomain != "" {
		sub := b.Subdomain
		err := s.checkSubdomain(ctx, ss, sub)
		if err == nil {
			err = s.claimHTTP(ss, t, sub+"."+s.cfg.Domain, b.Pool)
		}
		if err == nil || !b.Random {
			if err == nil {
				t.random = b.Random
			}
			return err
		}
		// A name the server chose earlier is gone (its grace period ran
		// out and someone took it): choose a new one rather than fail.
	}
	var lastErr error
	for range 16 {
		sub, err := names.Generate(s.strategy)
		if err != nil {
			return protocol.Err(protocol.CodeInvalidName, true, "%v", err)
		}
		if s.reserved.Has(sub) {
			continue
		}
		// A generated name may still be reserved for another user; a
		// credential that may not bind generated names at all fails here.
		if err := s.deps.Policy.CheckSubdomain(ctx, ss.ident, sub); err != nil {
			if isCode(err, protocol.CodeNameReserved) {
				continue
			}
			return err
		}
		if lastErr = s.claimHTTP(ss, t, sub+"."+s.cfg.Domain, b.Pool); lastErr == nil {
			t.random = true
			return nil
		}
	}
	return protocol.Err(protocol.CodeInternal, false, "could not find a free name: %v", lastErr)
}

func (s *Server) checkSubdomain(ctx context.Context, ss *session, sub string) error {
	if err := names.ValidateLabel(sub); err != nil {
		return protocol.Err(protocol.CodeInvalidName, true, "%v", err)
	}
	if s.reserved.Has(sub) {
		return protocol.Err(protocol.CodeNameReserved, true, "subdomain %q is reserved on this server", sub)
	}
	return s.deps.Policy.CheckSubdomain(ctx, ss.ident, sub)
}

// claimHTTP takes host in the registry for t and builds t's proxy.
func (s *Server) claimHTTP(ss *session, t *tunnel, host string, pool *protocol.Pool) error {
	t.key, t.hostname = host, host
	s.setupProxy(t)
	if err := s.claim(ss, t, host, pool); err != nil {
		return err
	}
	t.urls = s.publicURLs(host)
	return nil
}

// dropTunnel forgets t without releasing its name (someone else holds it now).
func (ss *session) dropTunnel(t *tunnel) {
	ss.mu.Lock()
	_, ok := ss.tunnels[t.id]
	delete(ss.tunnels, t.id)
	ss.mu.Unlock()
	if ok {
		t.close()
		ss.srv.stats.tunnelsOpen.Add(-1)
	}
}

// releaseTunnel frees t's name (or holds it for grace) and its resources.
func (s *Server) releaseTunnel(t *tunnel, grace time.Duration) {
	switch t.kind {
	case protocol.KindTCP:
		s.tcp.release(t, grace)
	default:
		s.unclaim(t, grace)
	}
	t.close()
	s.stats.tunnelsOpen.Add(-1)
}

// takesOver reports whether b asks for a name that another session of the
// same client holds. A client that reconnected before its old session was
// found dead takes its tunnels over one for one, so such a bind adds no
// tunnel to the user's count or the server's, and is not refused by them.
func (s *Server) takesOver(ss *session, b *protocol.Bind) bool {
	var key string
	switch {
	case b.Kind == protocol.KindTCP:
		if b.RemotePort == 0 {
			return false
		}
		key = tcpKey(b.RemotePort)
	case b.Hostname != "":
		key = strings.TrimSuffix(b.Hostname, ".")
	case b.Subdomain != "":
		key = b.Subdomain + "." + s.cfg.Domain
	default:
		return false
	}
	for _, o := range s.sessionsWhere(func(o *session) bool { return o != ss && o.owner == ss.owner }) {
		o.mu.Lock()
		for _, t := range o.tunnels {
			if t.key == key {
				o.mu.Unlock()
				return true
			}
		}
		o.mu.Unlock()
	}
	return false
}

// userTunnels counts the tunnels of ss's user: on this server, and on a
// cluster's other nodes those of the user's other clients, so that the
// per-user limit holds cluster-wide.
func (s *Server) userTunnels(ss *session) (int, error) {
	if ss.ident.User == "" {
		return ss.tunnelCount(), nil
	}
	list := s.sessionsWhere(func(o *session) bool { return o.ident.User == ss.ident.User })
	n := 0
	for _, o := range list {
		n += o.tunnelCount()
	}
	if sh, ok := s.reg.(registry.Shared); ok {
		other, err := sh.OtherClaims(ss.ident.User, ss.owner)
		if err != nil {
			return 0, err
		}
		n += other
	}
	return n, nil
}

// publicURLs lists host's URLs, HTTPS first when it is on.
func (s *Server) publicURLs(host string) []string {
	var urls []string
	if s.lnHTTPS != nil {
		urls = append(urls, urlFor("https", host, s.httpsPort, s.cfg.PublicHTTPSPort, 443))
	}
	urls = append(urls, urlFor("http", host, s.httpPort, s.cfg.PublicPort, 80))
	return urls
}

func urlFor(scheme, host string, port, override, def int) string {
	if override != 0 {
		port = override
	}
	if port == def {
		return scheme + "://" + host
	}
	return scheme + "://" + host + ":" + strconv.Itoa(port)
}

// setupProxy gives an HTTP tunnel its reverse proxy. Each of its two pools
// (httpfwd.Transport's for bodyless requests, http.Transport's for the
// rest) keeps up to tunnel.idle_streams idle streams, each a kept-alive
// HTTP/1.1 connection through the client to the local app, so that
// concurrent visitors reuse connections instead of opening a stream and a
// local connection per request.
func (s *Server) setupProxy(t *tunnel) {
	if t.proxy != nil {
		return
	}
	dial := func(ctx context.Context) (net.Conn, error) {
		c, err := t.openStream(ctx, "", "")
		if err != nil {
			return nil, err
		}
		// A closed stream must not be read on (a client could keep
		// http.Transport parsing what it sends after the request).
		return httpfwd.CloseReads(c), nil
	}
	fallback := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConnsPerHost: s.cfg.Tunnel.IdleStreams,
		IdleConnTimeout:     90 * time.Second,
		// Bodies pass through as the visitor and the app sent them.
		DisableCompression: true,
		WriteBufferSize:    32 << 10,
		ReadBufferSize:     32 << 10,
		// An expect-continue request waits this long for the app's
		// "100 Continue" before the body is sent anyway.
		ExpectContinueTimeout: 1 * time.Second,
		// A client's responses get the limit visitors' requests get.
		MaxResponseHeaderBytes: int64(s.cfg.HTTP.MaxHeaderBytes),
	}
	// Bodyless GET, HEAD and OPTIONS requests, most of the traffic, take
	// httpfwd.Transport's path on the handler's own goroutine; the rest
	// go through http.Transport.
	t.transport = &httpfwd.Transport{
		Dial: dial, Fallback: fallback, MaxIdle: s.cfg.Tunnel.IdleStreams, IdleTimeout: 90 * time.Second,
		MaxHeaderBytes: s.cfg.HTTP.MaxHeaderBytes, MaxHeaderFields: s.cfg.HTTP.MaxHeaderFields,
	}
	t.proxy = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { s.rewrite(t, pr) },
		Transport:      t.transport,
		ErrorHandler:   func(w http.ResponseWriter, r *http.Request, err error) { s.proxyError(t, w, r, err) },
		ModifyResponse: func(resp *http.Response) error { return s.tunnelResponse(t, resp) },
		BufferPool:     httpfwd.BufferPool{},
		ErrorLog:       s.errLog,
	}
}

// isCode reports whether err is a protocol error with code c.
func isCode(err error, c protocol.Code) bool {
	var perr *protocol.Error
	return errors.As(err, &perr) && perr.Code == c
}

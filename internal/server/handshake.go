package server

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/transport"
)

// serveTunnelHandshake is the tunnel listener's handler. Credentials sent
// as headers are checked before the WebSocket upgrade, so a refused client
// costs one HTTP exchange and learns why from a JSON body.
func (s *Server) serveTunnelHandshake(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		if r.URL.Path == "/" && r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusUpgradeRequired)
			w.Write([]byte("This is a porthole tunnel listener. Connect to it with: porthole http PORT --server " + s.TunnelURL() + "\n"))
			return
		}
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Origin") != "" {
		// Only browsers send Origin, and a browser brings the visitor's
		// client certificate and cookies along on its own: a web page
		// must never open a tunnel with them. Refused before any
		// credential is looked at; tunnel clients send no Origin.
		s.authFailed(protocol.CodeForbidden)
		protocol.WriteRefusal(w, http.StatusForbidden, protocol.Err(protocol.CodeForbidden, true,
			"tunnel handshakes from web pages are refused (the request carries an Origin header)"))
		return
	}
	if !offersSubprotocol(r, protocol.Subprotocol) {
		s.authFailed(protocol.CodeUnsupportedVersion)
		protocol.WriteRefusal(w, http.StatusBadRequest, protocol.Err(protocol.CodeUnsupportedVersion, true,
			"this server speaks %s; the client asked for %q: upgrade porthole on the side that is older",
			protocol.Subprotocol, r.Header.Get("Sec-WebSocket-Protocol")))
		return
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		protocol.WriteRefusal(w, http.StatusServiceUnavailable, protocol.Err(protocol.CodeShuttingDown, false, "server is shutting down"))
		return
	}
	ip := remoteIP(r.RemoteAddr)
	free, wait, done := s.floodCuts.Reserve(ip)
	done(false) // a handshake costs nothing here; only a cut does
	if !free {
		s.authFailed(protocol.CodeRateLimited)
		s.hits.Hit(limits.HandshakeRate, "remote", r.RemoteAddr, "after", string(limits.ClientFrames))
		e := protocol.Err(protocol.CodeRateLimited, false, "a client from your address was cut off for flooding the connection; retry later")
		e.RetryAfterMillis = max(wait, time.Second).Milliseconds()
		protocol.WriteRefusal(w, http.StatusTooManyRequests, e)
		return
	}
	if ok, wait := s.handshakes.Allow(ip); !ok {
		s.authFailed(protocol.CodeRateLimited)
		s.hits.Hit(limits.HandshakeRate, "remote", r.RemoteAddr)
		e := protocol.Err(protocol.CodeRateLimited, false, "too many connection attempts from your address; retry later")
		e.RetryAfterMillis = max(wait, time.Second).Milliseconds()
		protocol.WriteRefusal(w, http.StatusTooManyRequests, e)
		return
	}
	creds := credentialsFrom(r)
	// Noted before the check: a revocation from now on that matches the
	// identity refuses the session when it registers.
	authGen := s.revocationGen()
	var ident *auth.Identity
	var err error
	if !s.cfg.NoAuth && creds.Empty() {
		err = auth.ErrNoCredentials
	} else {
		ident, err = s.deps.Auth.Authenticate(r.Context(), creds)
	}
	if err != nil {
		perr := authError(err)
		s.authFailed(perr.Code)
		if perr.Code == protocol.CodeRateLimited {
			// Refused by the failed-authentication throttle: a limit hit,
			// counted and logged at a rate a guessing flood cannot raise.
			s.hits.Hit(limits.AuthFailures, "remote", r.RemoteAddr)
		} else {
			s.log.Info("client refused", "remote", r.RemoteAddr, "code", perr.Code, "reason", perr.Message)
		}
		status := http.StatusUnauthorized
		switch perr.Code {
		case protocol.CodeForbidden:
			status = http.StatusForbidden
		case protocol.CodeRateLimited:
			status = http.StatusTooManyRequests
		case protocol.CodeInternal:
			status = http.StatusServiceUnavailable
		}
		protocol.WriteRefusal(w, status, perr)
		return
	}
	mux, err := transport.Accept(w, r, s.sessionMux(ip))
	if err != nil {
		s.log.Info("websocket handshake failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	id := newSessionID()
	ss := &session{
		srv:     s,
		id:      id,
		mux:     mux,
		ident:   ident,
		authGen: authGen,
		remote:  r.RemoteAddr,
		since:   s.now(),
		log:     s.log.With("session", id, "remote", r.RemoteAddr),
		tunnels: make(map[string]*tunnel),
		done:    make(chan struct{}),
		lim:     s.limitsFor(r.Context(), ident),
	}
	if !s.addSession(ss) {
		// Shutting down, or the credential was revoked while it was
		// being checked: the client reconnects and is told why.
		mux.Close()
		return
	}
	s.stats.sessionsTotal.Add(1)
	s.stats.sessionsOpen.Add(1)
	// The handler returns: the session runs on its own goroutine, so
	// net/http's connection goroutine and request state are freed for the
	// session's whole life (7 KiB less per idle session, measured).
	go ss.run()
}

func offersSubprotocol(r *http.Request, want string) bool {
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if strings.TrimSpace(p) == want {
				return true
			}
		}
	}
	return false
}

// credentialsFrom collects what the client presented: a bearer credential
// (an API key or a token, told apart by the key prefix) and a verified
// client certificate.
func credentialsFrom(r *http.Request) auth.Credentials {
	c := auth.Credentials{RemoteAddr: r.RemoteAddr}
	if v := r.Header.Get("Authorization"); v != "" {
		if scheme, cred, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
			cred = strings.TrimSpace(cred)
			if auth.LooksLikeAPIKey(cred) {
				c.APIKey = cred
			} else {
				c.Token = cred
			}
		}
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		c.PeerCerts = r.TLS.VerifiedChains[0]
	}
	return c
}

// authError turns an authentication failure into what the client is told.
func authError(err error) *protocol.Error {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return perr
	}
	return protocol.Err(protocol.CodeUnauthorized, true, "%v", err)
}

func noticeShutdown() *protocol.Notice {
	return &protocol.Notice{Kind: protocol.NoticeShutdown, Message: "server is shutting down", Final: false}
}

// sessionMux is the multiplexer configuration for a session from ip: a
// flood cut off by the frame guard is counted and bars ip for a while.
func (s *Server) sessionMux(ip netip.Addr) transport.Options {
	o := s.mux
	if o.Guard != nil {
		g := *o.Guard
		g.OnFlood = func(kind string) {
			s.hits.Hit(limits.ClientFrames, "frames", kind)
			_, _, done := s.floodCuts.Reserve(ip)
			done(true)
		}
		o.Guard = &g
	}
	return o
}

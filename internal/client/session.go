package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/transport"
)

// serveSession runs one session of link l: hello, binds, then streams
// and heartbeats until the session ends. A go_away from the server is
// passed on through r; the session serves on until the server closes it.
func (c *Client) serveSession(ctx context.Context, l *link, r *running, mux *transport.Session) error {
	url := r.url
	defer mux.Close()
	ctrl, err := mux.OpenStream()
	if err != nil {
		return err
	}
	w := protocol.NewWriter(ctrl)
	rd := protocol.NewReader(ctrl)

	ctrl.SetDeadline(time.Now().Add(c.cfg.HandshakeTimeout.D()))
	hello := &protocol.Hello{Version: protocol.Version, ClientVersion: c.deps.Version, ResumeToken: c.resumeToken(), Link: l.i}
	if err := w.Write(hello); err != nil {
		return err
	}
	welcome, err := protocol.Expect[*protocol.Welcome](rd)
	if err != nil {
		var perr *protocol.Error
		if errors.As(err, &perr) && perr.Final {
			return &FinalError{Err: perr}
		}
		return fmt.Errorf("handshake: %w", err)
	}
	if welcome.ResumeToken != "" {
		c.setResumeToken(welcome.ResumeToken)
	}
	hb := time.Duration(welcome.HeartbeatMillis) * time.Millisecond
	if hb < time.Second || hb > 10*time.Second {
		hb = 8 * time.Second
	}
	l.server.Store(url)
	c.log.Info("connected", "server", url, "link", l.i, "session", welcome.SessionID, "user", welcome.User)
	c.deps.OnEvent(Event{Kind: EventConnected, Server: url})

	// This session's server-side tunnel ids: each session of each link
	// has its own, and forgets only those when it ends.
	ids := &sessionIDs{m: make(map[*tunnel]string)}
	// Ask for every tunnel; answers arrive on the control loop below.
	for _, t := range c.tunnels {
		if err := w.Write(t.bindMessage()); err != nil {
			return err
		}
	}
	ctrl.SetDeadline(time.Time{})

	var active atomic.Int64
	go c.acceptStreams(mux, &active)
	var onlineOnce sync.Once
	retire := func() {
		ctrl.SetWriteDeadline(time.Now().Add(2 * time.Second))
		for _, id := range ids.list() {
			w.Write(&protocol.Unbind{TunnelID: id})
		}
		ctrl.SetWriteDeadline(time.Time{})
		go func() {
			deadline := time.Now().Add(maxDrain)
			for active.Load() > 0 && time.Now().Before(deadline) && !mux.IsClosed() {
				time.Sleep(100 * time.Millisecond)
			}
			mux.Close()
		}()
	}
	r.retire.Store(&retire)

	pingDone := make(chan struct{})
	defer close(pingDone)
	go heartbeat(w, hb, pingDone)
	for _, t := range c.tunnels {
		if t.cfg.HealthPath != "" && t.http != nil {
			go t.healthLoop(w, func() string { return ids.get(t) }, pingDone)
		}
	}

	// On cancel, release the tunnels at once (no grace period on the
	// server), then hang up once the server has handled the release: the
	// loop below returns on the pong to the ping sent after the unbinds,
	// so a client run again at once finds its names free. A server that
	// does not answer within 2 s is hung up on.
	stop := context.AfterFunc(ctx, func() {
		ctrl.SetWriteDeadline(time.Now().Add(2 * time.Second))
		for _, id := range ids.all() {
			w.Write(&protocol.Unbind{TunnelID: id})
		}
		if w.Write(&protocol.Ping{Seq: releaseSeq, UnixNano: time.Now().UnixNano()}) != nil {
			ctrl.Close()
			return
		}
		time.AfterFunc(2*time.Second, func() { ctrl.Close() })
	})
	defer stop()
	defer c.forget(ids)

	pending := len(c.tunnels)
	// A session the link moved away from ends quietly: the link serves on.
	draining := r.moved.Load
	for {
		ctrl.SetReadDeadline(time.Now().Add(3 * hb))
		m, err := rd.Read()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = fmt.Errorf("server silent for %s: connection presumed dead", 3*hb)
			} else if errors.Is(err, io.EOF) || mux.IsClosed() {
				err = errors.New("connection to server lost")
			}
			if !draining() {
				c.deps.OnEvent(Event{Kind: EventDisconnected, Err: err, Server: url})
			}
			c.log.Warn("disconnected", "server", url, "link", l.i, "err", err)
			return err
		}
		switch m := m.(type) {
		case *protocol.Bound:
			t := c.tunnelByBindID(m.ID)
			if t == nil {
				continue
			}
			if len(m.URLs) == 0 {
				return fmt.Errorf("server answered bind %d without a URL", m.ID)
			}
			changed := t.bound(l.i, m)
			ids.set(t, m.TunnelID)
			c.byID.Store(m.TunnelID, t)
			pending--
			if pending == 0 {
				c.since.Store(time.Now().UnixNano())
				c.setLinkState(l, StateOnline)
				c.boundOnce.Do(func() { close(c.firstBound) })
				onlineOnce.Do(func() { close(r.online) })
			}
			if changed {
				c.deps.OnEvent(Event{Kind: EventForwarding, Tunnel: t.status()})
			}
			t.log.Info("tunnel online", "url", m.URLs[0], "target", t.target.String(), "link", l.i)
		case *protocol.Error:
			if m.ID != 0 {
				t := c.tunnelByBindID(m.ID)
				name := ""
				if t != nil {
					name = t.name
				}
				if m.Final {
					// The client stops: free the names it did get now,
					// rather than leave them held for a reconnect that
					// will never come (a rerun would find them "in use").
					c.releaseAll(ctrl, w, rd, ids)
					return &FinalError{Err: fmt.Errorf("tunnel %s: %w", name, m)}
				}
				return fmt.Errorf("tunnel %s: %w", name, m)
			}
			if m.Final {
				return &FinalError{Err: m}
			}
			return m
		case *protocol.GoAway:
			// Once per session: repeats change nothing.
			if r.goAway(m) {
				c.log.Warn("server going away", "server", url, "link", l.i, "reason", m.Reason, "deadline_ms", m.DeadlineMillis)
			}
		case *protocol.Notice:
			c.log.Warn("server notice", "kind", m.Kind, "message", m.Message, "server", url, "link", l.i)
			if m.Final {
				return &FinalError{Err: fmt.Errorf("%s: %s", m.Kind, m.Message)}
			}
			if !draining() {
				c.deps.OnEvent(Event{Kind: EventDisconnected, Err: errors.New(m.Message), Server: url})
			}
			return errors.New(m.Message)
		case *protocol.Ping:
			w.Write(&protocol.Pong{Seq: m.Seq, UnixNano: m.UnixNano})
		case *protocol.Pong:
			if m.Seq == releaseSeq && ctx.Err() != nil {
				return ctx.Err()
			}
			c.rttNanos.Store(time.Now().UnixNano() - m.UnixNano)
		}
	}
}

// sessionIDs maps a session's tunnels to their server-side ids.
type sessionIDs struct {
	mu sync.Mutex
	m  map[*tunnel]string
}

func (s *sessionIDs) set(t *tunnel, id string) {
	s.mu.Lock()
	s.m[t] = id
	s.mu.Unlock()
}

func (s *sessionIDs) get(t *tunnel) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[t]
}

// take returns every id and forgets them, so each is released once.
func (s *sessionIDs) take() map[*tunnel]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.m
	s.m = make(map[*tunnel]string)
	return m
}

func (s *sessionIDs) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.m))
	for _, id := range s.m {
		out = append(out, id)
	}
	return out
}

func (s *sessionIDs) all() []string {
	var out []string
	for _, id := range s.take() {
		out = append(out, id)
	}
	return out
}

// forget drops a session's ids when it ends.
func (c *Client) forget(ids *sessionIDs) {
	for t, id := range ids.take() {
		c.byID.Delete(id)
		t.unbound(id)
	}
}

func (c *Client) resumeToken() string {
	c.resumeMu.Lock()
	defer c.resumeMu.Unlock()
	return c.resume
}

func (c *Client) setResumeToken(tok string) {
	c.resumeMu.Lock()
	c.resume = tok
	c.resumeMu.Unlock()
}

// acceptStreams takes the streams the server opens and hands each to its
// tunnel. It ends with the session.
func (c *Client) acceptStreams(mux *transport.Session, active *atomic.Int64) {
	for {
		st, err := mux.AcceptStream()
		if err != nil {
			return
		}
		active.Add(1)
		go func() {
			defer active.Add(-1)
			st.SetReadDeadline(time.Now().Add(10 * time.Second))
			h, err := protocol.ReadStreamHeader(st)
			if err != nil {
				c.log.Warn("bad stream from server", "err", err)
				st.Close()
				return
			}
			st.SetReadDeadline(time.Time{})
			t := c.findSoon(h.TunnelID)
			if t == nil {
				st.Close()
				return
			}
			if t.http != nil {
				t.http.serveStream(st)
				return
			}
			t.serveTCP(st, h)
		}()
	}
}

func (c *Client) tunnelByBindID(id uint32) *tunnel {
	for _, t := range c.tunnels {
		if t.bindID == id {
			return t
		}
	}
	return nil
}

// bindMessage asks for the tunnel; after a first bind, it asks for the same
// name again so a reconnect keeps the URL.
func (t *tunnel) bindMessage() *protocol.Bind {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := &protocol.Bind{ID: t.bindID, Name: t.name, Kind: t.cfg.Proto, Subdomain: t.cfg.Subdomain, Hostname: t.cfg.Hostname, RemotePort: t.cfg.RemotePort}
	b.HTTPSRedirect, b.HSTSMaxAge = t.cfg.HTTPSRedirect, t.cfg.HSTSMaxAge
	c := &t.cfg
	if len(c.BasicAuth)+len(c.AllowCIDR)+len(c.DenyCIDR)+len(c.RequireHeader) > 0 {
		b.Access = &protocol.Access{BasicAuth: c.BasicAuth, BasicAuthForward: c.BasicAuthForward,
			AllowCIDR: c.AllowCIDR, DenyCIDR: c.DenyCIDR, RequireHeader: c.RequireHeader}
	}
	if len(c.RequestHeaderAdd)+len(c.RequestHeaderRemove)+len(c.ResponseHeaderAdd)+len(c.ResponseHeaderRemove) > 0 {
		b.Headers = &protocol.HeaderRules{RequestAdd: c.RequestHeaderAdd, RequestRemove: c.RequestHeaderRemove,
			ResponseAdd: c.ResponseHeaderAdd, ResponseRemove: c.ResponseHeaderRemove}
	}
	if c.Pool {
		b.Pool = &protocol.Pool{Strategy: c.PoolStrategy}
	}
	if t.random {
		b.Random = true
		if t.cfg.Proto == "tcp" {
			b.RemotePort = t.port
		} else {
			b.Subdomain = t.assigned
		}
	}
	return b
}

// bound records the server's answer to link's bind; it reports whether
// the URL is new: changed for that link, and not another link's.
func (t *tunnel) bound(link int, m *protocol.Bound) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.linkURL == nil {
		t.linkURL = make(map[int]string)
	}
	// Reported once per URL: links at servers that share names (or at
	// two addresses of one server) get the same one.
	changed := t.linkURL[link] != m.URLs[0]
	for l, u := range t.linkURL {
		if l != link && u == m.URLs[0] {
			changed = false
		}
	}
	t.linkURL[link] = m.URLs[0]
	if t.ids == nil {
		t.ids = make(map[string]bool)
	}
	t.ids[m.TunnelID] = true
	t.urls = m.URLs
	t.port = m.Port
	if t.cfg.Subdomain == "" && t.cfg.Hostname == "" && t.cfg.RemotePort == 0 {
		t.random = true
		if m.Hostname != "" {
			t.assigned, _, _ = strings.Cut(m.Hostname, ".")
		}
	}
	return changed
}

// unbound forgets a server-side id of the tunnel.
func (t *tunnel) unbound(id string) {
	t.mu.Lock()
	delete(t.ids, id)
	t.mu.Unlock()
}

// isFinalTLSError reports TLS failures that retrying cannot fix: the
// server's certificate does not verify, or the server refused ours.
func isFinalTLSError(err error) bool {
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
		pin      *PinMismatchError
		alert    tls.AlertError
	)
	if errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &hostname) || errors.As(err, &verify) || errors.As(err, &pin) {
		return true
	}
	if certificateRefused(err) {
		return true
	}
	if errors.As(err, &alert) {
		// bad_certificate, unsupported_certificate, certificate_revoked,
		// certificate_expired, certificate_unknown, unknown_ca,
		// access_denied, certificate_required (RFC 8446 section 6).
		switch alert {
		case 42, 43, 44, 45, 46, 48, 49, 116:
			return true
		}
	}
	return false
}

// certificateRefused reports a TLS alert from the server about our
// certificate. Over TCP, crypto/tls reports a received alert as a
// *net.OpError with Op "remote error" around an unexported type, so the
// alert is known by its text (crypto/tls alertText).
func certificateRefused(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return false
	}
	switch op.Err.Error() {
	case "tls: bad certificate", "tls: unsupported certificate", "tls: revoked certificate",
		"tls: expired certificate", "tls: unknown certificate", "tls: unknown certificate authority",
		"tls: access denied", "tls: certificate required":
		return true
	}
	return false
}

// releaseSeq marks the ping that follows a final release of names.
const releaseSeq = 1 << 63

// releaseAll unbinds every tunnel and waits (briefly) until the server has
// handled it: the server reads control messages in order, so the pong to a
// ping sent after the unbinds means they are done, and a client run again
// at once finds its names free.
func (c *Client) releaseAll(ctrl net.Conn, w *protocol.Writer, r *protocol.Reader, ids *sessionIDs) {
	any := false
	for _, id := range ids.all() {
		w.Write(&protocol.Unbind{TunnelID: id})
		any = true
	}
	if !any || w.Write(&protocol.Ping{Seq: releaseSeq, UnixNano: time.Now().UnixNano()}) != nil {
		return
	}
	ctrl.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		m, err := r.Read()
		if err != nil {
			return
		}
		if p, ok := m.(*protocol.Pong); ok && p.Seq == releaseSeq {
			return
		}
	}
}

// heartbeat pings the server every interval until done is closed.
func heartbeat(w *protocol.Writer, every time.Duration, done <-chan struct{}) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	// The first ping goes at once, so latency is known from the start.
	for seq := uint64(1); ; seq++ {
		if w.Write(&protocol.Ping{Seq: seq, UnixNano: time.Now().UnixNano()}) != nil {
			return
		}
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

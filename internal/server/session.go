package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/registry"
	"github.com/porthole/porthole/internal/transport"
)

// session is one connected client: one WebSocket, one multiplexer, one
// control stream, any number of tunnels.
type session struct {
	srv   *Server
	id    string
	mux   *transport.Session
	ident *auth.Identity
	// authGen is the server's revocation generation before ident was
	// checked: a revocation after it that matches ident ends the session.
	authGen uint64
	remote  string
	log     *slog.Logger
	since   time.Time

	ctrlc net.Conn
	w     *protocol.Writer
	owner registry.Owner
	// link is the client's Hello.Link: sessions of one owner with
	// different links serve its names side by side (goaway.go).
	link int
	// wentAway is set once the client is sent a go_away, and closed
	// when it is written (goaway.go).
	wentAway chan struct{}

	// lim are this session's effective limits, fixed at connect time;
	// user is state shared with the user's other sessions.
	lim      limits.Config
	user     *userState
	ctrlRate *limits.Bucket
	streams  atomic.Int64 // open streams to the client

	mu      sync.Mutex
	tunnels map[string]*tunnel
	// final is set when the session ends for a reason that must not leave
	// names held (revocation, kick): they are freed at once.
	final bool

	pingSeq  atomic.Uint64
	rttNanos atomic.Int64
	pinger   *time.Timer
	expiry   *time.Timer
	done     chan struct{}
}

func newSessionID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// run speaks the control protocol until the session ends. It runs on the
// tunnel listener's handler goroutine, so a session costs no extra one.
func (ss *session) run() {
	defer close(ss.done)
	defer ss.cleanup()
	hb := ss.srv.cfg.Tunnel.Heartbeat.D()

	actx, cancel := context.WithTimeout(context.Background(), ss.srv.cfg.Tunnel.HandshakeTimeout.D())
	ctrl, err := ss.mux.AcceptStreamWithContext(actx)
	cancel()
	if err != nil {
		ss.log.Info("client did not open a control stream", "err", err)
		return
	}
	go ss.refuseStreams()
	// Under the lock: notifyAndClose may run on another goroutine.
	ss.mu.Lock()
	ss.ctrlc = ctrl
	ss.w = protocol.NewWriter(ctrl)
	ss.mu.Unlock()
	r := protocol.NewReader(ctrl)
	// Every frame counts against the control rate, hello and frames of
	// types this version skips included: skipped frames cost a read too.
	ss.ctrlRate = limits.NewBucket(ss.lim.ControlMessagesPerSecond, ss.lim.ControlBurst, ss.srv.now)
	r.OnFrame(ss.countControl)

	ctrl.SetReadDeadline(time.Now().Add(ss.srv.cfg.Tunnel.HandshakeTimeout.D()))
	hello, err := protocol.Expect[*protocol.Hello](r)
	if e := (*rateError)(nil); errors.As(err, &e) {
		ss.controlFlood(e)
		return
	}
	if err != nil {
		ss.log.Info("bad hello", "err", err)
		ss.sendFinal(protocol.Err(protocol.CodeBadRequest, true, "expected hello: %v", err))
		return
	}
	if hello.Version != protocol.Version {
		ss.sendFinal(protocol.Err(protocol.CodeUnsupportedVersion, true,
			"client speaks protocol version %d, this server speaks %d: upgrade porthole on the side that is older", hello.Version, protocol.Version))
		return
	}
	if err := checkLink(hello.Link); err != nil {
		ss.sendFinal(err)
		return
	}
	resume := hello.ResumeToken
	var welcomeToken string
	if len(resume) < 16 {
		var b [24]byte
		rand.Read(b[:])
		resume = hex.EncodeToString(b[:])
		welcomeToken = resume
	}
	sum := sha256.Sum256([]byte(resume))
	// Written under the server's lock: other sessions read it there.
	ss.srv.mu.Lock()
	ss.owner = registry.Owner{User: ss.ident.User, Client: hex.EncodeToString(sum[:16])}
	ss.link = hello.Link
	ss.srv.mu.Unlock()
	ss.srv.closeStale(ss)
	if err := ss.srv.joinUser(ss); err != nil {
		ss.sendFinal(err.(*protocol.Error))
		return
	}
	if err := ss.w.Write(&protocol.Welcome{
		SessionID:       ss.id,
		ResumeToken:     welcomeToken,
		ServerVersion:   ss.srv.deps.Version,
		User:            ss.ident.User,
		HeartbeatMillis: hb.Milliseconds(),
	}); err != nil {
		return
	}
	ss.log.Info("client connected", "user", ss.ident.User, "auth", ss.ident.Method, "client_version", hello.ClientVersion)
	if !ss.ident.ExpiresAt.IsZero() {
		ss.mu.Lock()
		ss.expiry = time.AfterFunc(ss.ident.ExpiresAt.Sub(ss.srv.now()), func() {
			ss.revoke("the credential expired")
		})
		ss.mu.Unlock()
	}
	ss.mu.Lock()
	ss.pinger = time.AfterFunc(hb, ss.ping)
	ss.mu.Unlock()

	for {
		// A peer that sends nothing, not even a pong, for three heartbeat
		// intervals is gone, e.g. behind a connection dropped silently.
		ctrl.SetReadDeadline(time.Now().Add(3 * hb))
		m, err := r.Read()
		if err != nil {
			var ne net.Error
			var re *rateError
			switch {
			case errors.As(err, &re):
				ss.controlFlood(re)
			case errors.As(err, &ne) && ne.Timeout():
				ss.log.Info("client silent, closing session", "after", (3 * hb).String())
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, transport.ErrStreamClosed), ss.mux.IsClosed():
				ss.log.Debug("control stream closed", "err", err)
			default:
				ss.log.Info("control stream error", "err", err)
				ss.sendFinal(protocol.Err(protocol.CodeBadRequest, true, "%v", err))
			}
			return
		}
		switch m := m.(type) {
		case *protocol.Bind:
			ss.handleBind(m)
		case *protocol.Unbind:
			ss.handleUnbind(m)
		case *protocol.Health:
			ss.mu.Lock()
			t := ss.tunnels[m.TunnelID]
			ss.mu.Unlock()
			if t != nil && t.unhealthy.Swap(!m.Healthy) == m.Healthy {
				ss.log.Info("tunnel health changed", "tunnel", t.key, "healthy", m.Healthy, "reason", m.Reason)
			}
		case *protocol.Ping:
			ss.w.Write(&protocol.Pong{Seq: m.Seq, UnixNano: m.UnixNano})
		case *protocol.Pong:
			if m.UnixNano > 0 {
				ss.rttNanos.Store(time.Now().UnixNano() - m.UnixNano)
			}
		default:
			ss.log.Info("unexpected control message", "type", m.Type().String())
			ss.sendFinal(protocol.Err(protocol.CodeBadRequest, true, "unexpected %s message from a client", m.Type()))
			return
		}
	}
}

// rateError is what countControl stops the reader with.
type rateError struct{ wait time.Duration }

func (e *rateError) Error() string { return "control message rate exceeded" }

// countControl takes one control-rate token for a frame of type t.
func (ss *session) countControl(t protocol.MsgType) error {
	if ok, wait := ss.ctrlRate.Allow(); !ok {
		return &rateError{wait: wait}
	}
	return nil
}

// controlFlood ends a session that sent control frames faster than its
// limit: it is told to slow down and disconnected, and reconnects after
// its backoff.
func (ss *session) controlFlood(re *rateError) {
	ss.srv.hits.Hit(limits.ControlRate, "session", ss.id, "user", ss.ident.User)
	e := protocol.Err(protocol.CodeRateLimited, false, "too many control messages (limit %g/s); slow down", ss.lim.ControlMessagesPerSecond)
	e.RetryAfterMillis = max(re.wait, time.Second).Milliseconds()
	ss.sendFinal(e)
}

// refuseStreams closes every stream the client opens after the control
// stream: clients open no others, and each one left unaccepted would hold
// a receive window of buffered data. It ends with the session.
func (ss *session) refuseStreams() {
	for {
		st, err := ss.mux.AcceptStream()
		if err != nil {
			return
		}
		st.Close()
	}
}

func (ss *session) ping() {
	if ss.mux.IsClosed() {
		return
	}
	if err := ss.w.Write(&protocol.Ping{Seq: ss.pingSeq.Add(1), UnixNano: time.Now().UnixNano()}); err != nil {
		return
	}
	ss.mu.Lock()
	ss.pinger.Reset(ss.srv.cfg.Tunnel.Heartbeat.D())
	ss.mu.Unlock()
}

// sendFinal reports err to the client and ends the session.
func (ss *session) sendFinal(e *protocol.Error) {
	if ss.w != nil {
		ss.ctrlc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		ss.w.Write(e)
		// Give the error a moment to reach the client before the
		// connection goes, so it can print the reason.
		time.Sleep(50 * time.Millisecond)
	}
}

// notifyAndClose tells the client why its session ends, then ends it.
func (ss *session) notifyAndClose(n *protocol.Notice) {
	ss.waitGoAway()
	ss.mu.Lock()
	if n.Final {
		ss.final = true
	}
	ctrl, w := ss.ctrlc, ss.w
	ss.mu.Unlock()
	if w == nil {
		// Still in its handshake: nobody to tell, and it must not go on
		// to bind names.
		ss.mux.Close()
		return
	}
	ctrl.SetWriteDeadline(time.Now().Add(2 * time.Second))
	w.Write(n)
	ctrl.Close()
	// Closing the control stream lets the notice drain; the multiplexer
	// goes after a short delay or when the client hangs up.
	time.AfterFunc(500*time.Millisecond, func() { ss.mux.Close() })
}

// revoke cuts the session off because its credential is no longer valid.
func (ss *session) revoke(reason string) { ss.end(protocol.NoticeRevoked, reason) }

// end closes the session for good (revoked, kicked): its names are freed
// before the client hears why, and the client does not come back.
func (ss *session) end(kind, reason string) {
	ss.log.Info("session ended", "kind", kind, "reason", reason)
	ss.mu.Lock()
	ss.final = true
	tunnels := make([]*tunnel, 0, len(ss.tunnels))
	for id, t := range ss.tunnels {
		tunnels = append(tunnels, t)
		delete(ss.tunnels, id) // released here, so not again by cleanup
	}
	ss.mu.Unlock()
	// Stop serving first: the names go now, not after the notice.
	for _, t := range tunnels {
		ss.srv.releaseTunnel(t, 0)
	}
	ss.notifyAndClose(&protocol.Notice{Kind: kind, Message: reason, Final: true})
}

func (ss *session) wait(d time.Duration) {
	select {
	case <-ss.done:
	case <-time.After(d):
	}
}

func (ss *session) cleanup() {
	ss.mu.Lock()
	if ss.pinger != nil {
		ss.pinger.Stop()
	}
	if ss.expiry != nil {
		ss.expiry.Stop()
	}
	grace := ss.srv.cfg.Tunnel.GracePeriod.D()
	if ss.final {
		grace = 0
	}
	tunnels := ss.tunnels
	ss.tunnels = nil
	ss.mu.Unlock()
	for _, t := range tunnels {
		ss.srv.releaseTunnel(t, grace)
	}
	ss.mux.Close()
	ss.srv.leaveUser(ss)
	ss.srv.removeSession(ss)
	ss.srv.stats.sessionsOpen.Add(-1)
	ss.log.Info("client disconnected", "tunnels", len(tunnels), "held_for", grace.String(), "duration", time.Since(ss.since).Round(time.Millisecond).String())
}

func (ss *session) handleUnbind(m *protocol.Unbind) {
	ss.mu.Lock()
	t := ss.tunnels[m.TunnelID]
	delete(ss.tunnels, m.TunnelID)
	ss.mu.Unlock()
	if t != nil {
		ss.srv.releaseTunnel(t, 0)
		ss.log.Info("tunnel closed by client", "tunnel", t.key)
	}
}

func (ss *session) tunnelCount() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.tunnels)
}

func (ss *session) addTunnel(t *tunnel) {
	ss.mu.Lock()
	ss.tunnels[t.id] = t
	ss.mu.Unlock()
}

func (ss *session) String() string { return fmt.Sprintf("session %s", ss.id) }

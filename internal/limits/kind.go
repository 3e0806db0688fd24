package limits

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Kind names a limit. It is the "limit" field of log lines and the "kind"
// label of porthole_limit_hits_total.
type Kind string

// The limits, each with where it applies.
const (
	TunnelRequestRate  Kind = "tunnel_requests_per_second"  // visitor gets 429
	TunnelConnections  Kind = "tunnel_connections"          // visitor gets 429
	UserBandwidth      Kind = "user_bandwidth"              // shaped; counted when a transfer had to wait
	SessionStreams     Kind = "session_streams"             // visitor gets 503
	UserTunnels        Kind = "user_tunnels"                // client: final error
	UserSessions       Kind = "user_sessions"               // client: final error
	ServerTunnels      Kind = "server_tunnels"              // client: retryable error
	VisitorConnections Kind = "visitor_connections_per_ip"  // connection refused with 429
	VisitorRequestRate Kind = "visitor_requests_per_second" // visitor gets 429
	HandshakeRate      Kind = "handshakes_per_second_per_ip"
	AuthFailures       Kind = "auth_failures_per_ip"
	ControlRate        Kind = "control_messages_per_second"
	AccessFailures     Kind = "visitor_access_failures_per_ip" // wrong basic-auth passwords: 429
	// VisitorConnectionsTotal: max_visitor_connections; the connection or
	// HTTP/2 request is refused with 503.
	VisitorConnectionsTotal Kind = "visitor_connections"
	// VisitorWriteTimeout: a visitor read nothing of a response for
	// http.write_timeout; its connection is closed.
	VisitorWriteTimeout Kind = "visitor_write_timeout"
	// ClientFrames: a client sent multiplexer frames past the guard's
	// bounds (pings, window updates, stray frames, stream opens); its
	// session is cut off.
	ClientFrames Kind = "client_frames"
	// BufferBudget: tunnel.buffer_budget was full, and a session's data
	// waited for room.
	BufferBudget Kind = "buffer_budget"
)

// AllKinds lists every kind, for metrics that should show zero counts.
var AllKinds = []Kind{
	TunnelRequestRate, TunnelConnections, UserBandwidth, SessionStreams,
	UserTunnels, UserSessions, ServerTunnels, VisitorConnections,
	VisitorRequestRate, HandshakeRate, AuthFailures, ControlRate, AccessFailures,
	VisitorConnectionsTotal, VisitorWriteTimeout, ClientFrames, BufferBudget,
}

// Hits counts limit hits by kind and logs them without flooding: the first
// hit of a kind is logged at once, later ones at most once per interval,
// with the number suppressed meanwhile.
type Hits struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	counts sync.Map // Kind -> *kindState
}

type kindState struct {
	n          atomic.Int64
	mu         sync.Mutex
	lastLog    time.Time
	suppressed int64
}

// NewHits returns a counter that logs to log at most once per interval per
// kind.
func NewHits(log *slog.Logger, interval time.Duration, now func() time.Time) *Hits {
	if now == nil {
		now = time.Now
	}
	h := &Hits{log: log, interval: interval, now: now}
	for _, k := range AllKinds {
		h.counts.Store(k, &kindState{})
	}
	return h
}

// Hit records one hit of kind with log attributes describing it.
func (h *Hits) Hit(kind Kind, attrs ...any) {
	v, ok := h.counts.Load(kind)
	if !ok {
		// Every kind is stored up front; this is only for a new one.
		v, _ = h.counts.LoadOrStore(kind, &kindState{})
	}
	st := v.(*kindState)
	st.n.Add(1)
	now := h.now()
	st.mu.Lock()
	if !st.lastLog.IsZero() && now.Sub(st.lastLog) < h.interval {
		st.suppressed++
		st.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.suppressed = 0
	st.lastLog = now
	st.mu.Unlock()
	args := append([]any{"limit", string(kind)}, attrs...)
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	h.log.Warn("limit hit", args...)
}

// Count returns the hits of kind so far.
func (h *Hits) Count(kind Kind) int64 {
	v, ok := h.counts.Load(kind)
	if !ok {
		return 0
	}
	return v.(*kindState).n.Load()
}

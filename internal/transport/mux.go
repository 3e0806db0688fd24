package transport

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"time"

	"github.com/porthole/porthole/internal/yamux"
)

// Session is a multiplexed connection: streams are opened and accepted on it.
type Session = yamux.Session

// Budget bounds the bytes that slow readers can make sessions buffer,
// shared by all the sessions given it (internal/yamux/budget.go).
type Budget = yamux.Budget

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget { return yamux.NewBudget(limit) }

// ErrSessionShutdown is returned by a session's operations once it ended.
var ErrSessionShutdown = yamux.ErrSessionShutdown

// ErrStreamClosed is returned by a stream's operations once this side
// closed it.
var ErrStreamClosed = yamux.ErrStreamClosed

// FloodError ends a session whose peer sent frames past its guard's bounds.
type FloodError = yamux.FloodError

// Options tunes a session. The zero value takes the defaults.
type Options struct {
	// StreamWindow is the most data a stream may have in flight, unread by
	// the receiver. It bounds both a single stream's throughput (window /
	// round-trip time) and the memory a slow reader can pin. yamux's
	// protocol starts at 256 KiB; we let windows grow to this value.
	StreamWindow uint32
	// AcceptBacklog bounds streams the peer opened that are not yet
	// accepted here and, in yamux, also streams opened here that the peer
	// has not yet acknowledged (accepted).
	AcceptBacklog int
	// WriteTimeout bounds how long a write may wait for the connection.
	WriteTimeout time.Duration
	// Logger receives the multiplexer's own messages at debug level.
	Logger *slog.Logger
	// AllowCompression lets Accept agree when a client asks for a
	// compressed session (compress.go). Dial asks with DialOptions.Compress
	// and ignores this field.
	AllowCompression bool
	// Budget, when set, bounds what slow readers on this side can make
	// its sessions buffer (shared by the sessions it is given to).
	Budget *Budget
	// Guard bounds the frames the peer may send; ServerGuard is the
	// server's. Nil guards nothing.
	Guard *yamux.GuardConfig
}

// ServerGuard returns the bounds a server puts on a client's frames;
// onFlood is told the kind of frame when a client is cut off. Clients
// send no multiplexer pings (liveness is the control protocol's
// heartbeat), open one stream (the control stream), and send window
// updates in step with the data they receive: the rates leave wide room
// for all of that and none for a loop.
func ServerGuard(onFlood func(kind string)) *yamux.GuardConfig {
	return &yamux.GuardConfig{
		PingsPerSecond:    5,
		PingBurst:         20,
		ControlPerSecond:  10000,
		ControlBurst:      20000,
		StrayPerSecond:    1000,
		StrayBurst:        5000,
		MaxInboundStreams: 4,
		RefusedPerSecond:  2,
		RefusedBurst:      10,
		OnFlood:           onFlood,
	}
}

// DefaultStreamWindow is chosen by measurement (docs/benchmarks.md). A
// stream moves at most window/RTT: 1 MiB capped one download at 16.5 MB/s
// over a 40 ms round trip, 4 MiB reached 77 MB/s. The window is also how
// much a slow reader can make the other side buffer per stream; the
// limits on streams per session bound the total.
const DefaultStreamWindow = 4 << 20

func (o Options) yamuxConfig() (*yamux.Config, error) {
	cfg := yamux.DefaultConfig()
	cfg.MaxStreamWindowSize = DefaultStreamWindow
	if o.StreamWindow != 0 {
		cfg.MaxStreamWindowSize = o.StreamWindow
	}
	if o.AcceptBacklog > 0 {
		cfg.AcceptBacklog = o.AcceptBacklog
	}
	if o.WriteTimeout > 0 {
		cfg.ConnectionWriteTimeout = o.WriteTimeout
	}
	// Liveness is checked by the control protocol's heartbeat, which also
	// measures latency; yamux's own keepalive would only duplicate it.
	cfg.EnableKeepAlive = false
	cfg.StreamOpenTimeout = 15 * time.Second
	cfg.StreamCloseTimeout = 30 * time.Second
	cfg.LogOutput = nil
	cfg.RecvBudget = o.Budget
	cfg.Guard = o.Guard
	if o.Logger != nil {
		cfg.Logger = log.New(slogWriter{o.Logger}, "", 0)
	} else {
		cfg.Logger = log.New(io.Discard, "", 0)
	}
	if err := yamux.VerifyConfig(cfg); err != nil {
		return nil, fmt.Errorf("multiplexer config: %w", err)
	}
	return cfg, nil
}

// NewServerSession wraps conn (the accepted WebSocket) as the server side.
func NewServerSession(conn net.Conn, o Options) (*Session, error) {
	cfg, err := o.yamuxConfig()
	if err != nil {
		return nil, err
	}
	return yamux.Server(&coalescingConn{Conn: conn}, cfg)
}

// NewClientSession wraps conn (the dialed WebSocket) as the client side.
func NewClientSession(conn net.Conn, o Options) (*Session, error) {
	cfg, err := o.yamuxConfig()
	if err != nil {
		return nil, err
	}
	return yamux.Client(&coalescingConn{Conn: conn}, cfg)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	if n := len(msg); n > 0 && msg[n-1] == '\n' {
		msg = msg[:n-1]
	}
	w.l.Debug(msg, "component", "mux")
	return len(p), nil
}

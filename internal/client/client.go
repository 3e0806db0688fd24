package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porthole/porthole/internal/inspect"
	"github.com/porthole/porthole/internal/transport"
)

// Spec is one tunnel to open.
type Spec struct {
	Name   string
	Config TunnelConfig
}

// Event is something the person running the client should see.
type Event struct {
	Kind   EventKind
	Tunnel *TunnelStatus // for EventForwarding
	Err    error         // for EventDisconnected / EventRetrying
	Server string
	// RetryIn is the wait before the next attempt (EventRetrying).
	RetryIn time.Duration
	// Attempt counts the attempts since the last session that lasted
	// (EventRetrying): 1 for the first retry.
	Attempt int
}

// EventKind names an Event.
type EventKind int

const (
	EventConnected    EventKind = iota // session up
	EventForwarding                    // a tunnel is live at a (new) URL
	EventDisconnected                  // session lost
	EventRetrying                      // waiting before the next attempt
)

// Deps are a client's collaborators.
type Deps struct {
	Logger *slog.Logger
	// OnEvent receives events in order; it must not block for long.
	OnEvent func(Event)
	// TLS is the configuration for wss:// servers (roots, client cert).
	TLS *tls.Config
	// Version is sent to the server.
	Version string
	// Inspector, when set, records every HTTP exchange for the request
	// inspector and the dashboard.
	Inspector *inspect.Store
}

// FinalError is an error the server reported as final, or one retrying
// cannot fix (a certificate that fails verification). The client stops.
type FinalError struct{ Err error }

func (e *FinalError) Error() string { return e.Err.Error() }
func (e *FinalError) Unwrap() error { return e.Err }

// Client runs tunnels against a server. Create with New, then Run.
type Client struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	tunnels []*tunnel
	byID    sync.Map // server tunnel id -> *tunnel
	// resume is the resume token every link sends, so that servers know
	// the links for one client.
	resumeMu sync.Mutex
	resume   string

	state      atomic.Value // string
	server     atomic.Value // string
	rttNanos   atomic.Int64
	reconnects atomic.Int64
	connected  atomic.Bool // a session was up at least once
	started    time.Time
	since      atomic.Int64 // unix nanos of the current session's start
	lastErr    atomic.Value // string
	nextRetry  atomic.Int64 // unix nanos of the next reconnect attempt, while reconnecting
	attempt    atomic.Int64 // reconnect attempts since the last lasting session
	// budget bounds what the server can make this client buffer for local
	// apps that read request bodies slowly, across its sessions.
	budget *transport.Budget

	links []*link // one per --links, each keeping its own session
	// firstBound is closed when every tunnel was bound once, by any link.
	firstBound chan struct{}
	boundOnce  sync.Once
}

// clientBufferBudget is the client's receive budget (see
// internal/yamux/budget.go): a local app that stops reading uploads
// holds at most this much of the client's memory.
const clientBufferBudget = 64 << 20

// Connection states reported by Status.
const (
	StateConnecting   = "connecting"
	StateOnline       = "online"
	StateReconnecting = "reconnecting"
	StateStopped      = "stopped"
)

// New builds a client for specs.
func New(cfg Config, specs []Spec, deps Deps) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(specs) == 0 {
		return nil, errors.New("no tunnels to open")
	}
	if deps.Logger == nil {
		return nil, errors.New("client: Deps.Logger is required")
	}
	if deps.OnEvent == nil {
		deps.OnEvent = func(Event) {}
	}
	var b [24]byte
	rand.Read(b[:])
	c := &Client{cfg: cfg, deps: deps, log: deps.Logger, resume: hex.EncodeToString(b[:]), started: time.Now(),
		budget: transport.NewBudget(clientBufferBudget)}
	c.state.Store(StateConnecting)
	c.server.Store("")
	c.lastErr.Store("")
	c.firstBound = make(chan struct{})
	for i := range max(cfg.Links, 1) {
		l := &link{i: i}
		l.server.Store("")
		l.state.Store(StateConnecting)
		c.links = append(c.links, l)
	}
	for i, s := range specs {
		if err := s.Config.validate(); err != nil {
			return nil, fmt.Errorf("tunnel %s: %w", s.Name, err)
		}
		target, _ := ParseTarget(s.Config.Proto, s.Config.Addr)
		t := &tunnel{bindID: uint32(i + 1), name: s.Name, cfg: s.Config, target: target}
		t.log = c.log.With("tunnel", s.Name)
		if s.Config.Proto == "http" {
			t.http = newHTTPForwarder(t, t.log)
			t.http.ins = deps.Inspector
		}
		c.tunnels = append(c.tunnels, t)
	}
	return c, nil
}

func (c *Client) dial(ctx context.Context, url string) (*transport.Session, error) {
	h := http.Header{}
	switch {
	case c.cfg.APIKey != "":
		h.Set("Authorization", "Bearer "+c.cfg.APIKey)
	case c.cfg.Token != "":
		h.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	h.Set("User-Agent", "porthole/"+c.deps.Version)
	mux, err := transport.Dial(ctx, url, transport.DialOptions{
		Header:    h,
		TLSConfig: c.deps.TLS,
		Timeout:   c.cfg.HandshakeTimeout.D(),
		Mux:       transport.Options{AcceptBacklog: 1024, Logger: c.log, StreamWindow: uint32(c.cfg.StreamWindow), Budget: c.budget},
		Compress:  c.cfg.Compress,
	})
	if err != nil {
		if he, ok := transport.IsHandshakeError(err); ok {
			if he.Reason.Final {
				return nil, &FinalError{Err: he.Reason}
			}
			return nil, he
		}
		if isFinalTLSError(err) {
			return nil, &FinalError{Err: explainTLSError(url, err)}
		}
		return nil, err
	}
	return mux, nil
}

func (c *Client) close() {
	for _, t := range c.tunnels {
		if t.http != nil {
			t.http.close()
		}
	}
}

func (c *Client) find(tunnelID string) *tunnel {
	v, ok := c.byID.Load(tunnelID)
	if !ok {
		return nil
	}
	return v.(*tunnel)
}

// findSoon is find for a visitor's stream, which can arrive just before
// the Bound message of its tunnel is read (the server routes visitors
// as soon as it has sent it, and the two travel on different streams):
// it waits for the tunnel up to a second.
func (c *Client) findSoon(tunnelID string) *tunnel {
	wait := time.Millisecond
	for deadline := time.Now().Add(time.Second); ; {
		if t := c.find(tunnelID); t != nil || time.Now().After(deadline) {
			return t
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

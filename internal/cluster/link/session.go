package link

import (
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/porthole/porthole/internal/transport"
	"github.com/porthole/porthole/internal/yamux"
)

// Defaults of the limits; each has a field on Server or Dialer.
const (
	// DefaultHandshakeTimeout bounds a TLS handshake on the link: a peer
	// that has not proved the secret by then is cut off.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultMaxHandshakes bounds connections in their handshake at once,
	// from all addresses; more are closed on arrival.
	DefaultMaxHandshakes = 64
	// DefaultMaxHandshakesPerIP bounds them per remote address.
	DefaultMaxHandshakesPerIP = 4
	// DefaultMaxStreams bounds a peer's open streams (forwarded requests
	// in flight, kept-alive idle ones, TCP connections) on one session.
	// The dialer keeps below the holder's bound by default.
	DefaultMaxStreams = 1024
	// DefaultDialerMaxStreams is the dialer's bound per peer; a request
	// past it waits for a stream to end (up to its context).
	DefaultDialerMaxStreams = 1000
	// DefaultIdleTimeout closes a kept-alive stream idle this long, and a
	// session with no stream at all for this long.
	DefaultIdleTimeout = 90 * time.Second
	// DefaultMaxHeaderBytes bounds a forwarded request's header block at
	// the holder: the visitor's limit plus room for the link headers.
	DefaultMaxHeaderBytes = 64<<10 + 4<<10
	// keepAliveInterval is how often each end pings the other; a ping
	// unanswered within the write timeout ends the session.
	keepAliveInterval = 10 * time.Second
	writeTimeout      = 10 * time.Second
	// preambleTimeout bounds reading a stream's first bytes.
	preambleTimeout = 10 * time.Second
)

// guard bounds an authenticated peer's frames: wide, since it holds the
// secret, but not infinite, so a bug on one node cannot take another
// down.
func guard(maxStreams int, onFlood func(string)) *yamux.GuardConfig {
	return &yamux.GuardConfig{
		PingsPerSecond:    5,
		PingBurst:         20,
		ControlPerSecond:  100000,
		ControlBurst:      200000,
		StrayPerSecond:    10000,
		StrayBurst:        20000,
		MaxInboundStreams: maxStreams,
		RefusedPerSecond:  1000,
		RefusedBurst:      2000,
		OnFlood:           onFlood,
	}
}

func sessionOptions(maxInbound int, budget *transport.Budget, log *zap.Logger) transport.Options {
	return transport.Options{
		AcceptBacklog: 256,
		WriteTimeout:  writeTimeout,
		Budget:        budget,
		Guard: guard(maxInbound, func(kind string) {
			log.Warn("cluster link peer cut off", zap.String("flood", kind))
		}),
	}
}

// keepAlive pings s until it ends, and closes it when a ping fails (the
// peer vanished without closing its connection) or, with idle > 0, when
// it has had no stream for that long.
func keepAlive(s *transport.Session, idle time.Duration, log *zap.Logger) {
	t := time.NewTicker(keepAliveInterval)
	defer t.Stop()
	var idleSince time.Time
	for {
		select {
		case <-s.CloseChan():
			return
		case now := <-t.C:
			if _, err := s.Ping(); err != nil {
				log.Info("cluster link session lost", zap.Error(err))
				s.Close()
				return
			}
			if idle <= 0 {
				continue
			}
			if s.NumStreams() > 0 {
				idleSince = time.Time{}
			} else if idleSince.IsZero() {
				idleSince = now
			} else if now.Sub(idleSince) >= idle {
				s.Close()
				return
			}
		}
	}
}

// stream is a dialed stream holding one of its peer's stream slots until
// closed.
type stream struct {
	net.Conn
	once    sync.Once
	release func()
}

func (s *stream) Close() error {
	err := s.Conn.Close()
	s.once.Do(s.release)
	return err
}

// CloseWrite half-closes: the peer reads EOF, and can still write.
func (s *stream) CloseWrite() error {
	return s.Conn.(interface{ CloseWrite() error }).CloseWrite()
}

// Shrink lets pooled idle streams drop their receive buffers.
func (s *stream) Shrink() {
	if sh, ok := s.Conn.(interface{ Shrink() }); ok {
		sh.Shrink()
	}
}

// errRemoteGoAway is OpenStream's error on a session the peer is closing.
var errRemoteGoAway = yamux.ErrRemoteGoAway

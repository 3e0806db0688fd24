package link

import (
	"sync"
	"sync/atomic"
)

// Refusal names why the server closed a connection before or during its
// handshake: a log field and a metric label.
type Refusal string

const (
	// RefusedHandshakes: MaxHandshakes connections were in their handshake.
	RefusedHandshakes Refusal = "handshakes"
	// RefusedHandshakesPerIP: MaxHandshakesPerIP were, from that address.
	RefusedHandshakesPerIP Refusal = "handshakes_per_ip"
	// RefusedHandshakeFailed: the peer did not prove the secret in time
	// (wrong or no certificate, not TLS, too slow).
	RefusedHandshakeFailed Refusal = "handshake_failed"
	// RefusedClosing: the server is shutting down.
	RefusedClosing Refusal = "closing"
)

// ServerStats are a server's counters since it started.
type ServerStats struct {
	// Sessions is the number of authenticated peer sessions open now.
	Sessions int64
	// HTTPIn and TCPIn count forwarded requests and connections served.
	HTTPIn, TCPIn int64
	// StaleIn counts those answered stale.
	StaleIn int64
	// Refused counts connections closed unauthenticated, by reason.
	Refused map[Refusal]int64
}

type serverStats struct {
	sessions, httpIn, tcpIn, staleIn atomic.Int64
	mu                               sync.Mutex
	refused                          map[Refusal]int64
}

func (s *serverStats) refuse(r Refusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused == nil {
		s.refused = map[Refusal]int64{}
	}
	s.refused[r]++
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	st := ServerStats{
		Sessions: s.stats.sessions.Load(),
		HTTPIn:   s.stats.httpIn.Load(),
		TCPIn:    s.stats.tcpIn.Load(),
		StaleIn:  s.stats.staleIn.Load(),
		Refused:  map[Refusal]int64{},
	}
	s.stats.mu.Lock()
	for k, v := range s.stats.refused {
		st.Refused[k] = v
	}
	s.stats.mu.Unlock()
	return st
}

// DialerStats are a dialer's counters since it started.
type DialerStats struct {
	// Sessions is the number of peer sessions open now.
	Sessions int64
	// HTTPOut and TCPOut count requests and connections forwarded.
	HTTPOut, TCPOut int64
	// StaleOut counts those the holder answered stale.
	StaleOut int64
	// Failed counts those that failed for want of the peer.
	Failed int64
}

type dialerStats struct {
	sessions, httpOut, tcpOut, staleOut, failed atomic.Int64
}

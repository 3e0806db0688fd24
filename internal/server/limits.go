package server

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/registry"
)

// userState is shared by all sessions of one user: the bandwidth shapers
// and the session count. Anonymous sessions each get their own.
type userState struct {
	key      string
	sessions int
	clients  map[string]int    // sessions per client (resume token hash)
	up, down *limits.Bandwidth // visitor->client, client->visitor
}

// limitsFor returns the effective limits of id: the server's [limits]
// with the user's own overrides applied.
func (s *Server) limitsFor(ctx context.Context, id *auth.Identity) limits.Config {
	return s.cfg.Limits.For(s.deps.Policy.UserLimits(ctx, id))
}

// joinUser attaches ss to its user's shared state, unless the user has
// max_sessions_per_user sessions of other clients already (a reconnecting
// client's stale session does not count against it). Check and join are
// one step, so two clients connecting at once cannot both pass or both fail.
func (s *Server) joinUser(ss *session) error {
	key := "user:" + ss.ident.User
	if ss.ident.User == "" {
		key = "session:" + ss.id
	}
	// On a cluster the user's clients at other nodes count too (one
	// session each), read before the lock: the database is not asked
	// while every session waits.
	remote := 0
	max := ss.lim.MaxSessionsPerUser
	if sh, ok := s.reg.(registry.Shared); ok && max > 0 && !ss.ident.Anonymous() {
		n, err := sh.OtherClients(ss.ident.User, ss.owner)
		if err != nil {
			return unavailableErr()
		}
		remote = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[key]
	if max > 0 && !ss.ident.Anonymous() && (u != nil || remote > 0) {
		n := remote
		if u != nil {
			n += u.sessions - u.clients[ss.owner.Client]
		}
		if n >= max {
			s.hits.Hit(limits.UserSessions, "user", ss.ident.User)
			return protocol.Err(protocol.CodeLimitExceeded, true, "session limit reached: user %s has %d of %d sessions open", ss.ident.User, n, max)
		}
	}
	if u == nil {
		bw := ss.lim.BandwidthBytesPerSecond
		u = &userState{key: key, clients: make(map[string]int), up: limits.NewBandwidth(bw), down: limits.NewBandwidth(bw)}
		user := ss.ident.User
		for _, b := range []*limits.Bandwidth{u.up, u.down} {
			if b != nil {
				b.OnWait = func() { s.hits.Hit(limits.UserBandwidth, "user", user, "bytes_per_second", bw) }
			}
		}
		s.users[key] = u
	}
	u.sessions++
	u.clients[ss.owner.Client]++
	ss.user = u
	return nil
}

func (s *Server) leaveUser(ss *session) {
	if ss.user == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss.user.sessions--
	if ss.user.clients[ss.owner.Client]--; ss.user.clients[ss.owner.Client] <= 0 {
		delete(ss.user.clients, ss.owner.Client)
	}
	if ss.user.sessions <= 0 {
		delete(s.users, ss.user.key)
	}
}

// closeStale ends older sessions of ss's client. A client has one session
// at a time, so an older one is a connection that died without either side
// noticing yet; requests sent on it would hang until the heartbeat gives
// up, so they fail at once instead and the new session takes the names.
// A client with several links has one session per link (goaway.go).
func (s *Server) closeStale(ss *session) {
	for _, o := range s.sessionsWhere(func(o *session) bool { return o != ss && o.owner == ss.owner && o.link == ss.link }) {
		o.log.Info("replaced by a newer session of the same client")
		o.mux.Close()
	}
}

// tooMany answers a visitor refused by a limit: 429 with Retry-After.
func (s *Server) tooMany(w http.ResponseWriter, r *http.Request, kind limits.Kind, wait time.Duration, what string) {
	w.Header().Set("Retry-After", strconv.Itoa(limits.RetryAfterSeconds(wait)))
	s.stats.countRequest(http.StatusTooManyRequests)
	s.page(w, r, http.StatusTooManyRequests, "Too many requests", what, "Slow down and try again shortly.", string(kind))
}

func remoteIP(addr string) netip.Addr {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

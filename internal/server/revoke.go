package server

import (
	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/protocol"
)

// maxRecentRevocations bounds the revocations remembered for handshakes
// and binds still in flight; one older than all of them is refused to be
// safe.
const maxRecentRevocations = 4096

// revocationLog remembers recent revocations, each with a generation
// number, under the server's lock. A handshake notes the generation
// before it checks the credential and, when it registers the session
// (under the same lock), looks for a revocation since then that matches:
// a credential revoked while its check was in flight is caught there,
// since the revocation found no session to cut.
type revocationLog struct {
	gen    uint64
	recent []revocation
}

type revocation struct {
	gen uint64
	// match selects the identities it revokes (sessions); host, when
	// set, is a custom hostname whose users keep does not accept may no
	// longer serve it (binds).
	match func(*auth.Identity) bool
	host  string
	keep  func(user string) bool
}

func (l *revocationLog) add(r revocation) {
	l.gen++
	r.gen = l.gen
	if len(l.recent) >= maxRecentRevocations {
		l.recent = append(l.recent[:0], l.recent[len(l.recent)-maxRecentRevocations/2:]...)
	}
	l.recent = append(l.recent, r)
}

// since reports whether a revocation after generation gen applies to a
// session of id or, when host is set, to id's bind of that custom
// hostname. Revocations forgotten since gen count as applying.
func (l *revocationLog) since(gen uint64, id *auth.Identity, host string) bool {
	if len(l.recent) > 0 && l.recent[0].gen > gen+1 {
		return true
	}
	for i := len(l.recent) - 1; i >= 0 && l.recent[i].gen > gen; i-- {
		r := l.recent[i]
		switch {
		case host == "":
			if r.match != nil && r.match(id) {
				return true
			}
		case r.host == host:
			if r.keep == nil || !r.keep(id.User) {
				return true
			}
		}
	}
	return false
}

// revocationGen is the current generation, noted before a credential or
// a hostname is checked.
func (s *Server) revocationGen() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revs.gen
}

// RevokeMatching ends every session whose identity match accepts,
// freeing its names at once, and returns how many it ended. Sessions
// still in their handshake whose identity match accepts are refused when
// they register.
func (s *Server) RevokeMatching(match func(*auth.Identity) bool, reason string) int {
	s.mu.Lock()
	s.revs.add(revocation{match: match})
	var hit []*session
	for _, ss := range s.sessions {
		if ss.ident != nil && match(ss.ident) {
			hit = append(hit, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range hit {
		ss.end(protocol.NoticeRevoked, reason)
	}
	return len(hit)
}

// ReleaseHostname ends the sessions serving the custom hostname host
// whose user keep does not accept (nil keep: any user), e.g. when the
// domain is removed or given to another user, and returns how many it
// ended. A bind of host in flight is refused the same way.
func (s *Server) ReleaseHostname(host, reason string, keep func(user string) bool) int {
	s.mu.Lock()
	s.revs.add(revocation{host: host, keep: keep})
	list := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		list = append(list, ss)
	}
	s.mu.Unlock()
	n := 0
	for _, ss := range list {
		if keep != nil && ss.ident != nil && keep(ss.ident.User) {
			continue
		}
		if ss.servesHost(host) {
			ss.end(protocol.NoticeRevoked, reason)
			n++
		}
	}
	return n
}

func (ss *session) servesHost(host string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, t := range ss.tunnels {
		if t.kind == protocol.KindHTTP && t.hostname == host {
			return true
		}
	}
	return false
}

// hostReleasedSince reports whether host was released for ident's user
// after generation gen: a bind that checked the hostname before then
// must not keep it.
func (s *Server) hostReleasedSince(gen uint64, ident *auth.Identity, host string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revs.since(gen, ident, host)
}

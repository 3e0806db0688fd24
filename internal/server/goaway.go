package server

import (
	"time"

	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/registry"
)

// goAway tells every connected client that the server is stopping, so a
// client with another server opens a session there while this one drains
// (spec.md, "Going away"). Clients that do not know the message skip it
// and get the shutdown notice at the end, as before.
func (s *Server) goAway(deadline time.Duration) {
	m := &protocol.GoAway{Reason: "server is shutting down", DeadlineMillis: deadline.Milliseconds()}
	n := 0
	for _, ss := range s.sessionsWhere(func(*session) bool { return true }) {
		if ss.sendGoAway(m) {
			n++
		}
	}
	s.log.Info("told clients to move to another server", "clients", n, "deadline", deadline.String())
}

// sendGoAway writes m on the session's control stream, once. The write
// runs on its own goroutine: a client that stopped reading must not hold
// up the shutdown; the goroutine ends when the session closes.
func (ss *session) sendGoAway(m *protocol.GoAway) bool {
	ss.mu.Lock()
	w := ss.w
	if w == nil || ss.wentAway != nil {
		// Still in its handshake (its binds are refused from now on, and
		// the shutdown notice ends it), or told already.
		ss.mu.Unlock()
		return false
	}
	done := make(chan struct{})
	ss.wentAway = done
	ss.mu.Unlock()
	go func() {
		defer close(done)
		w.Write(m)
	}()
	return true
}

// waitGoAway lets a go_away being written go out before the session's
// last message, so the client reads them in order; bounded, as a client
// that does not read would hold it.
func (ss *session) waitGoAway() {
	ss.mu.Lock()
	done := ss.wentAway
	ss.mu.Unlock()
	if done == nil {
		return
	}
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// MaxLinks bounds Hello.Link: one client's sessions with different links
// are not replaced by each other, so the range bounds how many sessions
// one client can hold open.
const MaxLinks = 16

func checkLink(link int) *protocol.Error {
	if link < 0 || link >= MaxLinks {
		return protocol.Err(protocol.CodeBadRequest, true, "hello: link %d is out of range: a client has links 0 to %d", link, MaxLinks-1)
	}
	return nil
}

// joinLink adds t to r when r serves the name for another link of the
// same client (same owner, different Hello.Link): the client keeps
// sessions to several servers, or to one under several addresses, and
// each serves the name (spec.md, "Links"). Tunnels of t's own link in
// other sessions are a reconnect that was not noticed yet: t takes them
// over, the other links stay. It reports false when the rule does not
// apply, for the caller's usual claim.
func (s *Server) joinLink(ss *session, t *tunnel, owner registry.Owner, r *route) (bool, error) {
	if r == nil || r.pool || owner != ss.owner {
		return false, nil
	}
	ms := r.list()
	other := false
	for _, m := range ms {
		if m.sess == ss {
			return true, protocol.Err(takenCode(r.key), true, "%s is already bound by this client (tunnel %q)", displayKey(r.key), m.name)
		}
		if m.sess.link != ss.link {
			other = true
		}
	}
	if !other {
		return false, nil
	}
	if !r.access.sameAs(t.access) {
		return true, badOption("%s: every link of a client must bind it with the same access rules", displayKey(r.key))
	}
	r.add(t)
	r.linked.Store(true)
	for _, m := range ms {
		if m.sess.link == ss.link {
			r.remove(m)
			m.sess.dropTunnel(m)
			s.stats.reconnects.Add(1)
		}
	}
	return true, nil
}

// spread reports whether visitors are spread over several members: a
// pool, or a name served by several links of one client. Such a route
// passes over a failed member and retries idempotent requests on another.
func (r *route) spread() bool { return r.pool || r.linked.Load() }

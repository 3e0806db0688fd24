package server

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/registry"
)

// route is what the registry maps a name to: the tunnels serving it. A
// plain tunnel is a route of one; a pool is a route whose members are
// tunnels of one user's clients that bound the name with a pool, and
// visitors are spread across them.
type route struct {
	key      string
	pool     bool
	strategy string
	access   *access // shared by all members

	mu      sync.Mutex // serializes membership changes
	members atomic.Pointer[[]*tunnel]
	next    atomic.Uint64
	// linked is set once a second link of the owner joined (goaway.go).
	linked atomic.Bool
}

func newRoute(key string, pool *protocol.Pool, acc *access) *route {
	r := &route{key: key, access: acc}
	if pool != nil {
		r.pool = true
		r.strategy = pool.Strategy
	}
	r.members.Store(&[]*tunnel{})
	return r
}

func (r *route) list() []*tunnel { return *r.members.Load() }

func (r *route) add(t *tunnel) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.list()
	ms := make([]*tunnel, len(old), len(old)+1)
	copy(ms, old)
	ms = append(ms, t)
	// Set before publishing: a visitor may pick t as soon as it is stored.
	t.route = r
	r.members.Store(&ms)
}

// remove drops t and returns how many members are left.
func (r *route) remove(t *tunnel) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.list()
	ms := make([]*tunnel, 0, len(old))
	for _, m := range old {
		if m != t {
			ms = append(ms, m)
		}
	}
	r.members.Store(&ms)
	return len(ms)
}

// memberDownFor is how long a pool member whose local app refused a
// connection, or whose session could not open a stream, gets no visitors
// before it is tried again.
const memberDownFor = 5 * time.Second

// pick chooses the member for the next visitor, never skip. Members that
// are unhealthy or recently failed are passed over while any other is
// usable; with none usable it still returns one (other than skip), so the
// visitor sees that member's own error rather than a generic one.
func (r *route) pick(skip *tunnel) *tunnel {
	ms := r.list()
	if len(ms) == 1 && skip == nil {
		return ms[0]
	}
	now := time.Now().UnixNano()
	var best, fallback *tunnel
	usable, ties := 0, 0
	for _, m := range ms {
		if m == skip {
			continue
		}
		fallback = m
		if !m.usable(now) {
			continue
		}
		usable++
		switch a := m.active.Load(); {
		case best == nil || a < best.active.Load():
			best, ties = m, 1
		case a == best.active.Load():
			ties++
		}
	}
	if usable == 0 {
		return fallback
	}
	// Round robin over the usable members only, so a member's share is
	// spread evenly over the others while it is out; least-streams takes
	// turns the same way among the least busy.
	least := r.strategy == protocol.PoolLeastStreams
	n := usable
	if least {
		n = ties
	}
	k := int(r.next.Add(1) % uint64(n))
	for _, m := range ms {
		if m == skip || !m.usable(now) || (least && m.active.Load() != best.active.Load()) {
			continue
		}
		if k == 0 {
			return m
		}
		k--
	}
	return best
}

// usable reports whether t should get visitors now.
func (t *tunnel) usable(now int64) bool {
	return !t.unhealthy.Load() && now >= t.downUntil.Load()
}

// markDown takes t out of its pool's rotation for a while.
func (t *tunnel) markDown() {
	if t.route != nil && t.route.spread() {
		t.downUntil.Store(time.Now().Add(memberDownFor).UnixNano())
	}
}

// claim binds key to t: alone, or joining (or starting) the user's pool.
func (s *Server) claim(ss *session, t *tunnel, key string, pool *protocol.Pool) error {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	old, had := s.reg.Lookup(key)
	var oldRoute *route
	if had {
		oldRoute = old.Endpoint
	}
	if pool != nil {
		if pool.Strategy != "" && pool.Strategy != protocol.PoolRoundRobin && pool.Strategy != protocol.PoolLeastStreams {
			return badOption("pool strategy %q: want %s or %s", pool.Strategy, protocol.PoolRoundRobin, protocol.PoolLeastStreams)
		}
		owner := registry.Owner{User: ss.ident.User, Client: "pool"}
		if oldRoute != nil && oldRoute.pool && old.Owner == owner {
			if !oldRoute.access.sameAs(t.access) {
				return badOption("%s: pool members must use the same access rules", key)
			}
			oldRoute.add(t)
			return nil
		}
		if oldRoute != nil && !oldRoute.pool {
			return protocol.Err(takenCode(key), true, "%s is bound by a client without --pool", displayKey(key))
		}
		r := newRoute(key, pool, t.access)
		r.add(t)
		if _, err := s.reg.Bind(key, owner, r); err != nil {
			return takenErr(key, err, "another user's pool")
		}
		return nil
	}
	if oldRoute != nil && oldRoute.pool {
		if old.Owner.User != ss.ident.User {
			return protocol.Err(takenCode(key), true, "%s is in use by another user's pool", displayKey(key))
		}
		return protocol.Err(takenCode(key), true, "%s is served by a pool; bind it with --pool", displayKey(key))
	}
	if had {
		if ok, err := s.joinLink(ss, t, old.Owner, oldRoute); ok {
			return err
		}
	}
	var prev *tunnel
	if oldRoute != nil {
		if ms := oldRoute.list(); len(ms) > 0 {
			prev = ms[0]
		}
	}
	if prev != nil && prev.sess == ss {
		// The registry lets an owner take a name over from its own stale
		// session; within one session that would silently drop the
		// tunnel that holds it.
		return protocol.Err(takenCode(key), true, "%s is already bound by this client (tunnel %q)", displayKey(key), prev.name)
	}
	r := newRoute(key, nil, t.access)
	r.add(t)
	if _, err := s.reg.Bind(key, ss.owner, r); err != nil {
		return takenErr(key, err, "another client")
	}
	if prev != nil {
		// The same client reconnected before its old session was found
		// dead: the new session wins, the old one loses the name.
		prev.sess.dropTunnel(prev)
	}
	if had {
		s.stats.reconnects.Add(1)
	}
	return nil
}

// unclaim takes t out of its route; the last member out releases the
// name, or holds it for grace.
func (s *Server) unclaim(t *tunnel, grace time.Duration) {
	r := t.route
	if r == nil {
		return
	}
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	if r.remove(t) == 0 {
		s.reg.Release(r.key, r, grace)
	}
}

func takenErr(key string, err error, by string) error {
	if errors.Is(err, registry.ErrUnavailable) {
		return unavailableErr()
	}
	if errors.Is(err, registry.ErrTaken) {
		if port, ok := tcpPort(key); ok {
			return protocol.Err(protocol.CodePortUnavailable, true, "port %d is in use by %s", port, by)
		}
		return protocol.Err(protocol.CodeNameTaken, true, "%s is in use by %s", key, by)
	}
	return err
}

// unavailableErr is the client's error while the cluster's database
// cannot be reached: retryable, as binds work again once it is back.
func unavailableErr() error {
	e := protocol.Err(protocol.CodeInternal, false, "%v; names already bound keep serving; retrying", registry.ErrUnavailable)
	e.RetryAfterMillis = 2_000
	return e
}

func displayKey(key string) string {
	if port, ok := tcpPort(key); ok {
		return "port " + strconv.Itoa(port)
	}
	return key
}

// takenCode is the error code for a name in use: ports have their own.
func takenCode(key string) protocol.Code {
	if _, ok := tcpPort(key); ok {
		return protocol.CodePortUnavailable
	}
	return protocol.CodeNameTaken
}

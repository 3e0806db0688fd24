package cluster

import (
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/porthole/porthole/internal/registry"
)

// Registry is the cluster's registry.Registry: the claims this node
// serves, with endpoints, over the node's route map of the others'.
// Lookups read memory only.
type Registry[E comparable] struct {
	n     *Node
	mu    sync.Mutex // serializes writes
	local sync.Map   // key -> *registry.Claim[E], the claims served here
	// standby holds the claims this node lost to the same owner at
	// another node: a client with links to several nodes binds its names
	// at each, and the last bind holds them. The tunnel here stays up;
	// when the holder stops, is lost or cannot be reached, this node
	// serves the name again and takes it back (TakeOver).
	standby sync.Map // key -> *registry.Claim[E]
	retakes sync.Map // key -> struct{}: a take-back under way
	// refreshes bounds Refresh's queries (50 a second, bursts of 50).
	refreshes *rate.Limiter
}

var (
	_ registry.Registry[*int] = (*Registry[*int])(nil)
	_ registry.Shared         = (*Registry[*int])(nil)
)

// NewRegistry returns the registry of node n. A node has one.
func NewRegistry[E comparable](n *Node) *Registry[E] {
	r := &Registry[E]{n: n, refreshes: rate.NewLimiter(50, 50)}
	n.localMu.Lock()
	n.local = r
	n.localMu.Unlock()
	return r
}

// Lookup implements registry.Registry. A name this node holds answers
// with its endpoint while the node may serve it; a name held at another
// node answers with that node (and its address while its lease is
// current) and no endpoint; so does a name held for a client that is away.
func (r *Registry[E]) Lookup(key string) (*registry.Claim[E], bool) {
	if v, ok := r.local.Load(key); ok {
		c := v.(*registry.Claim[E])
		if r.n.serving() {
			return c, true
		}
		// Fenced past the point where others may take the name: refuse
		// (503) rather than serve what may be someone else's by now.
		return &registry.Claim[E]{Key: key, Owner: c.Owner, Generation: c.Generation, HeldUntil: time.Now().Add(r.n.cfg.Grace)}, true
	}
	rt, ok := r.n.route(key)
	if !ok {
		return nil, false
	}
	c, ok := r.remote(key, rt)
	if s := r.standbyFor(key, rt, c, ok); s != nil {
		// The holder is gone or going: serve the owner's other link here
		// while this node takes the name back.
		r.retake(key)
		return s, true
	}
	return c, ok
}

// standbyFor returns key's standby claim when the holder (rt, looked up
// as c, ok) no longer serves it: the name is held for its owner, its
// node is lost, unknown or stopping.
func (r *Registry[E]) standbyFor(key string, rt *Route, c *registry.Claim[E], ok bool) *registry.Claim[E] {
	sb, has := r.standby.Load(key)
	if !has || (ok && c.NodeAddr != "" && !r.n.draining(rt.Node)) {
		return nil
	}
	s := sb.(*registry.Claim[E])
	if s.Owner.User != rt.User || s.Owner.Client != rt.Client {
		return nil
	}
	if _, known := (*r.n.nodes.Load())[rt.Node]; !known && rt.HeldUntil.IsZero() {
		// A node that joined since the node map was read holds it: it
		// is serving, this node just has not heard of it yet.
		return nil
	}
	return s
}

// checkStandby takes back the names (key, or every one when key is
// empty) whose holder no longer serves them and that a link stands by
// for here; the node calls it when a route changes and when it reads
// the node map, so that a name moves back without waiting for a visitor.
func (r *Registry[E]) checkStandby(key string) {
	check := func(k string) {
		rt, ok := r.n.route(k)
		if !ok || rt.Node == r.n.cfg.Name {
			return
		}
		c, ok := r.remote(k, rt)
		if r.standbyFor(k, rt, c, ok) != nil {
			r.retake(k)
		}
	}
	if key != "" {
		if _, has := r.standby.Load(key); has {
			check(key)
		}
		return
	}
	r.standby.Range(func(k, _ any) bool {
		check(k.(string))
		return true
	})
}

// remote is Lookup for a name this node does not serve.
func (r *Registry[E]) remote(key string, rt *Route) (*registry.Claim[E], bool) {
	now := time.Now()
	c := &registry.Claim[E]{Key: key, Owner: registry.Owner{User: rt.User, Client: rt.Client}, Generation: rt.Generation}
	switch {
	case !rt.HeldUntil.IsZero():
		if !now.Before(rt.HeldUntil) {
			return nil, false
		}
		c.HeldUntil = rt.HeldUntil
	case rt.Node == r.n.cfg.Name:
		// Ours in the database but served by no tunnel here (a release
		// that has not reached the database): held.
		c.HeldUntil = now.Add(r.n.cfg.Grace)
	default:
		c.Node = rt.Node
		ni, ok := r.n.node(rt.Node)
		switch {
		case ok && ni.Alive && ni.State != StateLeft:
			c.NodeAddr = ni.Addr
		case ok:
			// The node is lost: its clients have the grace period to
			// come back at another node.
			c.HeldUntil = ni.LeaseUntil.Add(r.n.cfg.Grace)
			if !now.Before(c.HeldUntil) {
				return nil, false
			}
		default:
			// A node this one has not heard of yet: it just joined.
			c.HeldUntil = now.Add(r.n.cfg.Grace)
		}
	}
	return c, true
}

// Bind implements registry.Registry. It refuses with
// registry.ErrUnavailable (retryable) when the database cannot be
// reached or the node is fenced.
func (r *Registry[E]) Bind(key string, owner registry.Owner, e E) (*registry.Claim[E], error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	gen, err := r.n.take(key, owner)
	if err != nil {
		return nil, err
	}
	c := &registry.Claim[E]{Key: key, Owner: owner, Generation: gen, Endpoint: e}
	r.local.Store(key, c)
	r.standby.Delete(key)
	r.n.storeRoute(&Route{Key: key, User: owner.User, Client: owner.Client, Node: r.n.cfg.Name, Generation: gen})
	r.n.metrics.binds.Inc()
	return c, nil
}

// Release implements registry.Registry. A release the database does not
// take (it is down) is made good by the periodic reconcile.
func (r *Registry[E]) Release(key string, e E, grace time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.local.Load(key)
	if !ok {
		if sb, has := r.standby.Load(key); has && sb.(*registry.Claim[E]).Endpoint == e {
			// The other link holds the name: nothing to give up.
			r.standby.Delete(key)
		}
		return
	}
	c := v.(*registry.Claim[E])
	if c.Endpoint != e {
		return
	}
	r.local.Delete(key)
	newGen, err := r.n.release(key, c.Generation, grace)
	if err != nil {
		r.n.log.Warn("releasing a name failed; the reconcile retries", "key", key, "err", err)
		return
	}
	if newGen != 0 {
		r.n.storeRoute(&Route{Key: key, User: c.Owner.User, Client: c.Owner.Client, Node: r.n.cfg.Name, Generation: newGen,
			HeldUntil: time.Now().Add(grace)})
	} else {
		r.n.deleteRoute(key, c.Generation)
	}
}

// Len implements registry.Registry: the names this node holds, for
// connected clients or held for them.
func (r *Registry[E]) Len() int {
	c := 0
	r.n.routes.Range(func(_, v any) bool {
		if v.(*Route).Node == r.n.cfg.Name {
			c++
		}
		return true
	})
	return c
}

// Serving returns the number of names this node serves to connected
// clients.
func (r *Registry[E]) Serving() int {
	c := 0
	r.local.Range(func(_, _ any) bool {
		c++
		return true
	})
	return c
}

// Sweep implements registry.Registry.
func (r *Registry[E]) Sweep() int { return r.n.sweep() }

// OtherClients implements registry.Shared.
func (r *Registry[E]) OtherClients(user string, except registry.Owner) (int, error) {
	return r.n.otherClients(user, except)
}

// OtherClaims implements registry.Shared.
func (r *Registry[E]) OtherClaims(user string, except registry.Owner) (int, error) {
	return r.n.otherClaims(user, except)
}

// Remote returns the keys starting with prefix that live clients hold
// at other nodes, as the route map knows them.
func (r *Registry[E]) Remote(prefix string) []string {
	var keys []string
	r.n.routes.Range(func(k, v any) bool {
		rt := v.(*Route)
		if rt.Node != r.n.cfg.Name && rt.HeldUntil.IsZero() && strings.HasPrefix(rt.Key, prefix) {
			keys = append(keys, rt.Key)
		}
		return true
	})
	return keys
}

// HoldsAt reports whether this node serves key at generation gen, for a
// request forwarded by another node (a stale generation gets 421).
func (r *Registry[E]) HoldsAt(key string, gen uint64) (*registry.Claim[E], bool) {
	v, ok := r.local.Load(key)
	if !ok || !r.n.serving() {
		return nil, false
	}
	c := v.(*registry.Claim[E])
	return c, c.Generation == gen
}

// Refresh reads key's claim from the database into the route map, for a
// forwarding node told that its generation is stale.
//
// Refreshes are rate limited for the whole node: visitors of a name whose
// node cannot be reached could otherwise make one database query each.
// Past the limit the route map stays as it is, fed by notifications.
func (r *Registry[E]) Refresh(key string) error {
	if !r.refreshes.Allow() {
		return nil
	}
	ctx, cancel := r.n.opCtx()
	defer cancel()
	rt, err := scanRoute(r.n.pool.QueryRow(ctx, `SELECT `+claimCols+` FROM cluster_claims WHERE key = $1`, key))
	if err != nil {
		if isNoRows(err) {
			r.n.deleteRoute(key, ^uint64(0)>>1)
			return nil
		}
		return err
	}
	r.n.storeRoute(rt)
	return nil
}

func (r *Registry[E]) gens() map[string]uint64 {
	m := make(map[string]uint64)
	r.local.Range(func(k, v any) bool {
		m[k.(string)] = v.(*registry.Claim[E]).Generation
		return true
	})
	return m
}

// lost drops key's local claim if another node holds a newer generation.
// It takes no lock: the listener calls it while binds wait on the map.
func (r *Registry[E]) lost(key string, gen uint64) {
	v, ok := r.local.Load(key)
	if !ok {
		return
	}
	c := v.(*registry.Claim[E])
	if c.Generation < gen && r.local.CompareAndDelete(key, v) {
		if rt, ok := r.n.route(key); ok && rt.Generation == gen && rt.User == c.Owner.User && rt.Client == c.Owner.Client {
			r.standby.Store(key, c)
			r.n.log.Info("name taken by another link of its client; standing by", "key", key, "generation", gen, "at", rt.Node)
			return
		}
		r.n.log.Info("name taken over by another node", "key", key, "generation", gen)
	}
}

// TakeOver serves key here again from the standby tunnel of its owner's
// other link, if this node has one, when the holding node cannot be
// reached: it returns that claim at once and takes the name back in the
// database meanwhile.
func (r *Registry[E]) TakeOver(key string) (*registry.Claim[E], bool) {
	sb, ok := r.standby.Load(key)
	if !ok {
		return nil, false
	}
	r.retake(key)
	return sb.(*registry.Claim[E]), true
}

// retake binds key again for its standby claim, once at a time.
func (r *Registry[E]) retake(key string) {
	if _, busy := r.retakes.LoadOrStore(key, struct{}{}); busy {
		return
	}
	go func() {
		defer r.retakes.Delete(key)
		sb, ok := r.standby.Load(key)
		if !ok {
			return
		}
		c := sb.(*registry.Claim[E])
		if _, err := r.Bind(key, c.Owner, c.Endpoint); err != nil {
			r.n.log.Warn("taking a name back for a standing-by link failed", "key", key, "err", err)
			return
		}
		r.n.log.Info("name taken back for a standing-by link", "key", key)
	}()
}

func (r *Registry[E]) lockWrites() func() {
	r.mu.Lock()
	return r.mu.Unlock
}

package cluster

import (
	"strings"
	"sync"
	"time"

	"github.com/porthole/porthole/internal/registry"
)

// Registry is the cluster's registry.Registry: the claims this node
// serves, with endpoints, over the node's route map of the others'.
// Lookups read memory only.
type Registry[E comparable] struct {
	n     *Node
	mu    sync.Mutex // serializes writes
	local sync.Map   // key -> *registry.Claim[E], the claims served here
}

var (
	_ registry.Registry[*int] = (*Registry[*int])(nil)
	_ registry.Shared         = (*Registry[*int])(nil)
)

// NewRegistry returns the registry of node n. A node has one.
func NewRegistry[E comparable](n *Node) *Registry[E] {
	r := &Registry[E]{n: n}
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
func (r *Registry[E]) Refresh(key string) error {
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
		r.n.log.Info("name taken over by another node", "key", key, "generation", gen)
	}
}

func (r *Registry[E]) lockWrites() func() {
	r.mu.Lock()
	return r.mu.Unlock
}

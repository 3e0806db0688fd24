package cluster

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// announce appends key's change to the route log and notifies the other
// nodes with the entry's id (ids only: a payload is capped at 8000 bytes
// and the listener reads the claim itself).
func (n *Node) announce(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, key string, gen uint64) {
	var id int64
	err := q.QueryRow(ctx, `WITH l AS (INSERT INTO cluster_route_log (key, generation, at) VALUES ($1, $2, `+nowMS+`) RETURNING id)
		SELECT l.id FROM l, pg_notify($3, l.id::text) AS x`, key, int64(gen), n.channel).Scan(&id)
	if err != nil {
		// The periodic reload brings the other nodes up to date.
		n.log.Debug("route log append failed", "key", key, "err", err)
	}
}

// storeRoute records a claim in the route map unless the map already
// knows a newer generation of it.
func (n *Node) storeRoute(rt *Route) {
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	n.storeRouteLocked(rt)
}

func (n *Node) storeRouteLocked(rt *Route) {
	if v, ok := n.routes.Load(rt.Key); ok && v.(*Route).Generation > rt.Generation {
		return
	}
	n.routes.Store(rt.Key, rt)
	if rt.Node != n.cfg.Name {
		n.lostLocal(rt.Key, rt.Generation)
		if l := n.localSet(); l != nil && !rt.HeldUntil.IsZero() {
			// Released by its node (stopping, or its link ended): a link
			// standing by here takes it back.
			l.checkStandby(rt.Key)
		}
	}
}

// deleteRoute forgets key unless the map knows a generation above gen.
func (n *Node) deleteRoute(key string, gen uint64) {
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	if v, ok := n.routes.Load(key); ok && v.(*Route).Generation > gen {
		return
	}
	n.routes.Delete(key)
}

func (n *Node) lostLocal(key string, gen uint64) {
	if l := n.localSet(); l != nil {
		l.lost(key, gen)
	}
}

// route returns the route map's entry for key.
func (n *Node) route(key string) (*Route, bool) {
	v, ok := n.routes.Load(key)
	if !ok {
		return nil, false
	}
	return v.(*Route), true
}

func (n *Node) routeCount() int {
	c := 0
	n.routes.Range(func(any, any) bool { c++; return true })
	return c
}

const claimCols = `key, owner_user, owner_client, node, generation, held_until`

func scanRoute(row pgx.Row) (*Route, error) {
	var rt Route
	var gen int64
	var held *int64
	if err := row.Scan(&rt.Key, &rt.User, &rt.Client, &rt.Node, &gen, &held); err != nil {
		return nil, err
	}
	rt.Generation = uint64(gen)
	if held != nil {
		rt.HeldUntil = time.UnixMilli(*held)
	}
	return &rt, nil
}

// reload replaces the route map with the claims table. Entries newer than
// anything the snapshot saw (a bind of this node that committed while it
// was read) are kept.
func (n *Node) reload(ctx context.Context) error {
	rows, err := n.pool.Query(ctx, `SELECT `+claimCols+` FROM cluster_claims`)
	if err != nil {
		return err
	}
	fresh := make(map[string]*Route)
	var maxGen uint64
	for rows.Next() {
		rt, err := scanRoute(rows)
		if err != nil {
			rows.Close()
			return err
		}
		fresh[rt.Key] = rt
		maxGen = max(maxGen, rt.Generation)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	n.routes.Range(func(k, v any) bool {
		if _, ok := fresh[k.(string)]; !ok && v.(*Route).Generation <= maxGen {
			n.routes.Delete(k)
		}
		return true
	})
	for _, rt := range fresh {
		n.storeRouteLocked(rt)
	}
	n.metrics.reloads.Inc()
	return nil
}

// listenLoop keeps a connection LISTENing on the route channel, reloads
// the map each time it (re)connects, since notifications sent while it
// was away are lost, and applies each notified change.
func (n *Node) listenLoop(ctx context.Context) {
	defer n.wg.Done()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := n.listen(ctx, func() { backoff = 200 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		n.metrics.listenerReconnects.Inc()
		n.log.Warn("cluster change listener lost; reconnecting", "err", err, "in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (n *Node) listen(ctx context.Context, connected func()) error {
	cctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	conn, err := pgx.ConnectConfig(cctx, n.connCfg)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{n.channel}.Sanitize()); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 2*n.cfg.OpTimeout)
	err = n.reload(rctx)
	cancel()
	if err != nil {
		return err
	}
	connected()
	for {
		note, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		id, err := strconv.ParseInt(note.Payload, 10, 64)
		if err != nil {
			continue
		}
		if err := n.applyLogEntry(ctx, conn, id); err != nil {
			return err
		}
	}
}

// applyLogEntry reads the claim a route log entry names, as it is now,
// and puts it in the map. Entries are applied one at a time in the order
// they are heard; each reads the current row, so an entry heard late can
// only bring the map up to date, never back.
func (n *Node) applyLogEntry(ctx context.Context, conn *pgx.Conn, id int64) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	var key string
	var logGen, lagMS int64
	var user, client, node *string
	var gen, held *int64
	err := conn.QueryRow(ctx, `SELECT l.key, l.generation, `+nowMS+` - l.at,
			c.owner_user, c.owner_client, c.node, c.generation, c.held_until
		FROM cluster_route_log l LEFT JOIN cluster_claims c ON c.key = l.key WHERE l.id = $1`, id).
		Scan(&key, &logGen, &lagMS, &user, &client, &node, &gen, &held)
	if err == pgx.ErrNoRows {
		return nil // pruned already; the reload covers it
	}
	if err != nil {
		return err
	}
	n.metrics.notifyLag.Observe(float64(max(lagMS, 0)) / 1000)
	if gen == nil {
		n.deleteRoute(key, uint64(logGen))
		return nil
	}
	rt := &Route{Key: key, User: *user, Client: *client, Node: *node, Generation: uint64(*gen)}
	if held != nil {
		rt.HeldUntil = time.UnixMilli(*held)
	}
	n.storeRoute(rt)
	return nil
}

// reconcileLoop reloads the map and checks this node's own claims
// periodically, making up for notifications and releases lost while the
// database was away.
func (n *Node) reconcileLoop(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ReconcileEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 2*n.cfg.OpTimeout)
		if err := n.reload(rctx); err != nil {
			n.log.Debug("cluster reload failed", "err", err)
		} else if err := n.reconcileOwn(rctx); err != nil {
			n.log.Debug("cluster reconcile failed", "err", err)
		}
		cancel()
	}
}

// reconcileOwn makes the database agree with what this node serves: a
// claim the database gives this node but that no local tunnel serves (its
// release failed while the database was down) becomes held for its owner;
// a local claim the database gives elsewhere is dropped.
func (n *Node) reconcileOwn(ctx context.Context) error {
	n.localMu.Lock()
	l := n.local
	n.localMu.Unlock()
	if l == nil {
		return nil
	}
	unlock := l.lockWrites()
	defer unlock()
	gens := l.gens()
	var stale []keyGen
	n.routes.Range(func(k, v any) bool {
		rt := v.(*Route)
		if rt.Node == n.cfg.Name && rt.HeldUntil.IsZero() && gens[rt.Key] != rt.Generation {
			stale = append(stale, keyGen{rt.Key, rt.Generation})
		}
		return true
	})
	for key, gen := range gens {
		if rt, ok := n.route(key); ok && rt.Generation > gen && rt.Node != n.cfg.Name {
			l.lost(key, rt.Generation)
		}
	}
	for _, kg := range stale {
		if err := n.hold(ctx, kg.key, kg.gen); err != nil {
			return err
		}
	}
	return nil
}

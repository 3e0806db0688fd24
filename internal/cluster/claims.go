package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/porthole/porthole/internal/registry"
)

// takeSQL gives key to an owner at this node in one statement: a new
// row, or the row of a name that is the same owner's (a reconnect, at
// this node or another), whose grace period is over, or whose node's
// lease ended more than a grace period ago (its clients had that long to
// come back elsewhere). ON CONFLICT locks the row, so of two nodes racing
// for a name exactly one gets a row back.
const takeSQL = `INSERT INTO cluster_claims AS c (key, owner_user, owner_client, node, generation, held_until, updated_at)
	VALUES ($1, $2, $3, $4, nextval('cluster_generation'), NULL, ` + nowMS + `)
	ON CONFLICT (key) DO UPDATE SET owner_user = EXCLUDED.owner_user, owner_client = EXCLUDED.owner_client,
		node = EXCLUDED.node, generation = EXCLUDED.generation, held_until = NULL, updated_at = EXCLUDED.updated_at
	WHERE (c.owner_user = EXCLUDED.owner_user AND c.owner_client = EXCLUDED.owner_client)
		OR (c.held_until IS NOT NULL AND c.held_until <= EXCLUDED.updated_at)
		OR (c.held_until IS NULL AND NOT EXISTS (SELECT 1 FROM cluster_nodes n
			WHERE n.name = c.node AND n.lease_until + $5 > EXCLUDED.updated_at))
	RETURNING generation`

var errTaken = registry.ErrTaken

func (n *Node) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), n.cfg.OpTimeout)
}

// take claims key for owner at this node and returns its generation.
func (n *Node) take(key string, owner registry.Owner) (uint64, error) {
	if n.Fenced() {
		n.metrics.bindsUnavailable.Inc()
		return 0, registry.ErrUnavailable
	}
	ctx, cancel := n.opCtx()
	defer cancel()
	tx, err := n.pool.Begin(ctx)
	if err != nil {
		n.metrics.bindsUnavailable.Inc()
		return 0, errors.Join(registry.ErrUnavailable, err)
	}
	defer tx.Rollback(context.Background())
	var gen int64
	err = tx.QueryRow(ctx, takeSQL, key, owner.User, owner.Client, n.cfg.Name, n.cfg.Grace.Milliseconds()).Scan(&gen)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, errTaken
	}
	if err != nil {
		n.metrics.bindsUnavailable.Inc()
		return 0, errors.Join(registry.ErrUnavailable, err)
	}
	n.announce(ctx, tx, key, uint64(gen))
	if err := tx.Commit(ctx); err != nil {
		n.metrics.bindsUnavailable.Inc()
		return 0, errors.Join(registry.ErrUnavailable, err)
	}
	return uint64(gen), nil
}

// release gives up this node's claim on key at gen: held for its owner
// until grace runs out, or deleted. It returns the held claim's
// generation (0 when deleted).
func (n *Node) release(key string, gen uint64, grace time.Duration) (uint64, error) {
	ctx, cancel := n.opCtx()
	defer cancel()
	if grace > 0 {
		var newGen int64
		var held int64
		err := n.pool.QueryRow(ctx, `UPDATE cluster_claims SET held_until = `+nowMS+` + $4, generation = nextval('cluster_generation'), updated_at = `+nowMS+`
			WHERE key = $1 AND node = $2 AND generation = $3 RETURNING generation, held_until`,
			key, n.cfg.Name, int64(gen), grace.Milliseconds()).Scan(&newGen, &held)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, nil // someone else holds it now
		}
		if err != nil {
			return 0, err
		}
		n.announce(ctx, n.pool, key, uint64(newGen))
		return uint64(newGen), nil
	}
	tag, err := n.pool.Exec(ctx, `DELETE FROM cluster_claims WHERE key = $1 AND node = $2 AND generation = $3`, key, n.cfg.Name, int64(gen))
	if err != nil {
		return 0, err
	}
	if tag.RowsAffected() > 0 {
		n.announce(ctx, n.pool, key, gen)
	}
	return 0, nil
}

// hold turns a live claim of this node that nothing serves into a held
// one, and updates the route map.
func (n *Node) hold(ctx context.Context, key string, gen uint64) error {
	var newGen, held int64
	var user, client string
	err := n.pool.QueryRow(ctx, `UPDATE cluster_claims SET held_until = `+nowMS+` + $4, generation = nextval('cluster_generation'), updated_at = `+nowMS+`
		WHERE key = $1 AND node = $2 AND generation = $3 AND held_until IS NULL RETURNING generation, held_until, owner_user, owner_client`,
		key, n.cfg.Name, int64(gen), n.cfg.Grace.Milliseconds()).Scan(&newGen, &held, &user, &client)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	n.announce(ctx, n.pool, key, uint64(newGen))
	n.storeRoute(&Route{Key: key, User: user, Client: client, Node: n.cfg.Name, Generation: uint64(newGen), HeldUntil: time.UnixMilli(held)})
	return nil
}

// sweep deletes claims whose grace period is over and those of nodes
// lost for longer than the grace period, prunes the route log, and
// returns how many claims it deleted.
func (n *Node) sweep() int {
	ctx, cancel := n.opCtx()
	defer cancel()
	rows, err := n.pool.Query(ctx, `DELETE FROM cluster_claims c
		WHERE (c.held_until IS NOT NULL AND c.held_until <= `+nowMS+`)
		   OR (c.held_until IS NULL AND NOT EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.name = c.node AND n.lease_until + $1 > `+nowMS+`))
		RETURNING key, generation`, n.cfg.Grace.Milliseconds())
	if err != nil {
		return 0
	}
	gone, err := collectKeyGens(rows)
	if err != nil {
		return 0
	}
	for _, kg := range gone {
		n.announce(ctx, n.pool, kg.key, kg.gen)
		n.deleteRoute(kg.key, kg.gen)
	}
	// Entries older than any reconcile period are of no use to anyone.
	_, _ = n.pool.Exec(ctx, `DELETE FROM cluster_route_log WHERE at < `+nowMS+` - $1`, (10 * time.Minute).Milliseconds())
	// And the map forgets held names whose time is up, also when the
	// database is away.
	now := time.Now()
	n.routes.Range(func(k, v any) bool {
		rt := v.(*Route)
		if !rt.HeldUntil.IsZero() && !now.Before(rt.HeldUntil) {
			n.deleteRoute(rt.Key, rt.Generation)
		}
		return true
	})
	return len(gone)
}

// otherClaims counts user's live claims at other nodes that are alive,
// held by clients other than except.
func (n *Node) otherClaims(user string, except registry.Owner) (int, error) {
	ctx, cancel := n.opCtx()
	defer cancel()
	var c int64
	err := n.pool.QueryRow(ctx, `SELECT count(*) FROM cluster_claims c JOIN cluster_nodes n ON n.name = c.node
		WHERE c.owner_user = $1 AND c.owner_client <> $2 AND c.node <> $3 AND c.held_until IS NULL AND n.lease_until > `+nowMS,
		user, except.Client, n.cfg.Name).Scan(&c)
	if err != nil {
		return 0, errors.Join(registry.ErrUnavailable, err)
	}
	return int(c), nil
}

// otherClients counts the clients other than except that hold live
// claims of user at other nodes that are alive: each counts as a session
// against the per-user session limit.
func (n *Node) otherClients(user string, except registry.Owner) (int, error) {
	ctx, cancel := n.opCtx()
	defer cancel()
	var c int64
	err := n.pool.QueryRow(ctx, `SELECT count(DISTINCT c.owner_client) FROM cluster_claims c JOIN cluster_nodes n ON n.name = c.node
		WHERE c.owner_user = $1 AND c.owner_client <> $2 AND c.node <> $3 AND c.held_until IS NULL AND n.lease_until > `+nowMS,
		user, except.Client, n.cfg.Name).Scan(&c)
	if err != nil {
		return 0, errors.Join(registry.ErrUnavailable, err)
	}
	return int(c), nil
}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

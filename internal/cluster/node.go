package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/porthole/porthole/internal/store"
)

// nowMS is the database's clock in unix milliseconds: leases are
// compared on one clock, whatever the nodes' clocks say.
const nowMS = `(extract(epoch from statement_timestamp())*1000)::bigint`

// Node states in cluster_nodes.
const (
	StateUp       = "up"
	StateDraining = "draining"
	StateLeft     = "left"
)

// Node is this server's membership of the cluster. Create it with Join.
type Node struct {
	cfg         Config
	log         *slog.Logger
	pool        *pgxpool.Pool
	connCfg     *pgx.ConnConfig
	channel     string
	incarnation string

	// lastRenew is the local time (unix ns) at which the last successful
	// lease renewal was sent.
	lastRenew atomic.Int64
	state     atomic.Value // string

	routes  sync.Map // key -> *Route
	applyMu sync.Mutex
	nodes   atomic.Pointer[map[string]NodeInfo]

	localMu sync.Mutex
	local   localSet

	// pollNow asks the renew loop for the node map at once: a route
	// names a node that joined after the map was read. polled is closed
	// (and replaced) each time the map is stored.
	pollNow chan struct{}
	pollMu  sync.Mutex
	polled  chan struct{}

	metrics *Metrics

	cancel context.CancelFunc
	wg     sync.WaitGroup
	left   atomic.Bool
}

// Route is a claim as the route map knows it.
type Route struct {
	Key        string
	User       string
	Client     string
	Node       string
	Generation uint64
	HeldUntil  time.Time // zero while the owner is connected
}

// NodeInfo is a row of cluster_nodes.
type NodeInfo struct {
	Name       string    `json:"name"`
	Addr       string    `json:"addr"`
	State      string    `json:"state"`
	StartedAt  time.Time `json:"started_at"`
	LastSeen   time.Time `json:"last_seen"`
	LeaseUntil time.Time `json:"lease_until"`
	// Alive is whether the lease was current when the row was read.
	Alive bool `json:"alive"`
	// Tunnels counts the names the node holds for connected clients.
	Tunnels int `json:"tunnels"`
}

// localSet is the registry's side: the claims this node serves.
type localSet interface {
	// gens returns the generation of every claim served here.
	gens() map[string]uint64
	// lost drops key's local claim if its generation is below gen:
	// another node took the name over.
	lost(key string, gen uint64)
	// lockWrites holds off binds and releases until the returned func.
	lockWrites() func()
	// checkStandby takes back key (all when empty) for a link standing
	// by here, if its holder no longer serves it.
	checkStandby(key string)
}

// ErrNameInUse means another live process runs under this node name.
var ErrNameInUse = errors.New("cluster: another live node uses this name")

// Join registers the node, loads the route map and starts the lease
// heartbeat and the change listener. The schema must have been migrated
// (store.Open does it).
func Join(ctx context.Context, cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	connCfg, err := store.PostgresConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	pcfg.ConnConfig = connCfg.Copy()
	pcfg.ConnConfig.RuntimeParams["application_name"] = "porthole-cluster-" + cfg.Name
	pcfg.MaxConns = 4
	pcfg.MinConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("cluster database %s: %w", store.Redact(cfg.DatabaseURL), err)
	}
	var b [8]byte
	rand.Read(b[:])
	connCfg = connCfg.Copy()
	connCfg.RuntimeParams["application_name"] = "porthole-cluster-listen-" + cfg.Name
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.Name), pool: pool, connCfg: connCfg, incarnation: hex.EncodeToString(b[:])}
	n.metrics = newMetrics(n)
	n.state.Store(StateUp)
	n.nodes.Store(&map[string]NodeInfo{})
	n.pollNow = make(chan struct{}, 1)
	n.polled = make(chan struct{})
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.register(jctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := n.reload(jctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cluster: loading routes: %w", err)
	}
	_ = n.pollNodes(jctx)
	rctx, rcancel := context.WithCancel(context.Background())
	n.cancel = rcancel
	n.wg.Add(3)
	go n.renewLoop(rctx)
	go n.listenLoop(rctx)
	go n.reconcileLoop(rctx)
	n.log.Info("joined the cluster", "addr", cfg.Addr, "routes", n.routeCount())
	return n, nil
}

// register writes this node's row, refusing a name whose lease another
// process holds, and turns the claims a previous run of this node left
// live into held ones: their clients are gone with that process.
func (n *Node) register(ctx context.Context) error {
	var schema string
	if err := n.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("cluster database %s: %w", store.Redact(n.cfg.DatabaseURL), err)
	}
	// Channels are per database, schemas are not: nodes in other schemas
	// of one database must not hear each other.
	n.channel = "porthole_routes"
	if schema != "public" && schema != "" {
		n.channel += "_" + strings.ToLower(schema)
	}
	sent := time.Now()
	tag, err := n.pool.Exec(ctx, `INSERT INTO cluster_nodes (name, addr, incarnation, state, started_at, last_seen, lease_until)
		VALUES ($1, $2, $3, $4, `+nowMS+`, `+nowMS+`, `+nowMS+` + $5)
		ON CONFLICT (name) DO UPDATE SET addr = EXCLUDED.addr, incarnation = EXCLUDED.incarnation, state = EXCLUDED.state,
			started_at = EXCLUDED.started_at, last_seen = EXCLUDED.last_seen, lease_until = EXCLUDED.lease_until
		WHERE cluster_nodes.lease_until <= EXCLUDED.started_at OR cluster_nodes.state = 'left'`,
		n.cfg.Name, n.cfg.Addr, n.incarnation, StateUp, n.cfg.LeaseTTL.Milliseconds())
	if err != nil {
		return fmt.Errorf("cluster: registering node %q: %w", n.cfg.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q holds a lease; wait %v or choose another --node-name", ErrNameInUse, n.cfg.Name, n.cfg.LeaseTTL)
	}
	n.lastRenew.Store(sent.UnixNano())
	rows, err := n.pool.Query(ctx, `UPDATE cluster_claims SET held_until = `+nowMS+` + $2, generation = nextval('cluster_generation'), updated_at = `+nowMS+`
		WHERE node = $1 AND held_until IS NULL RETURNING key, generation`, n.cfg.Name, n.cfg.Grace.Milliseconds())
	if err != nil {
		return fmt.Errorf("cluster: releasing a previous run's claims: %w", err)
	}
	changed, err := collectKeyGens(rows)
	if err != nil {
		return err
	}
	for _, kg := range changed {
		n.announce(ctx, n.pool, kg.key, kg.gen)
	}
	return nil
}

type keyGen struct {
	key string
	gen uint64
}

func collectKeyGens(rows pgx.Rows) ([]keyGen, error) {
	var out []keyGen
	for rows.Next() {
		var kg keyGen
		var g int64
		if err := rows.Scan(&kg.key, &g); err != nil {
			rows.Close()
			return nil, err
		}
		kg.gen = uint64(g)
		out = append(out, kg)
	}
	return out, rows.Err()
}

func (n *Node) listenAppName() string { return "porthole-cluster-listen-" + n.cfg.Name }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Addr returns the node's advertised cluster address.
func (n *Node) Addr() string { return n.cfg.Addr }

// Metrics returns the node's metrics.
func (n *Node) Metrics() *Metrics { return n.metrics }

// sinceRenew is how long ago the last successful renewal was sent.
func (n *Node) sinceRenew() time.Duration {
	return time.Since(time.Unix(0, n.lastRenew.Load()))
}

// Fenced reports whether the node has gone FenceAfter without renewing
// its lease: it takes no names until it renews again.
func (n *Node) Fenced() bool { return n.sinceRenew() > n.cfg.FenceAfter }

// serving reports whether the node may still serve the names it holds.
// Another node gives a name of a lapsed node to another owner only after
// the lease and then the grace period have run out (see takeSQL); this
// stops the FenceAfter margin before that.
func (n *Node) serving() bool { return n.sinceRenew() <= n.cfg.FenceAfter+n.cfg.Grace }

// SetState records a state (StateDraining before a shutdown) in the
// node's row at the next renewal.
func (n *Node) SetState(s string) { n.state.Store(s) }

func (n *Node) renewLoop(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.RenewEvery)
	defer t.Stop()
	var lastPoll time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.pollNow:
			// At most ten reads a second, however many lookups ask.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(lastPoll.Add(100 * time.Millisecond))):
			}
			lastPoll = time.Now()
			pctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
			_ = n.pollNodes(pctx)
			cancel()
			continue
		case <-t.C:
		}
		wasFenced := n.Fenced()
		if err := n.renew(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			n.metrics.renewFailures.Inc()
			if n.Fenced() {
				n.log.Warn("cannot renew the cluster lease; refusing binds", "since_renew", n.sinceRenew().Round(time.Millisecond).String(), "err", err)
			} else {
				n.log.Warn("cannot renew the cluster lease", "err", err)
			}
			continue
		}
		if wasFenced {
			n.log.Info("cluster lease renewed again; checking this node's claims")
			rctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
			if err := n.reload(rctx); err == nil {
				_ = n.reconcileOwn(rctx)
			}
			cancel()
		}
		pctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
		_ = n.pollNodes(pctx)
		cancel()
	}
}

func (n *Node) renew(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(n.cfg.RenewEvery, n.cfg.OpTimeout))
	defer cancel()
	sent := time.Now()
	tag, err := n.pool.Exec(ctx, `UPDATE cluster_nodes SET lease_until = `+nowMS+` + $3, last_seen = `+nowMS+`, state = $4
		WHERE name = $1 AND incarnation = $2`, n.cfg.Name, n.incarnation, n.cfg.LeaseTTL.Milliseconds(), n.state.Load().(string))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		// The row is gone or another process took the name after our
		// lease lapsed: take it back only if its lease is over.
		tag, err = n.pool.Exec(ctx, `UPDATE cluster_nodes SET incarnation = $2, lease_until = `+nowMS+` + $3, last_seen = `+nowMS+`, state = $4
			WHERE name = $1 AND lease_until <= `+nowMS, n.cfg.Name, n.incarnation, n.cfg.LeaseTTL.Milliseconds(), n.state.Load().(string))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNameInUse
		}
	}
	n.lastRenew.Store(sent.UnixNano())
	return nil
}

// pollNodes refreshes the node map the request path reads.
func (n *Node) pollNodes(ctx context.Context) error {
	list, err := n.queryNodes(ctx, false)
	if err != nil {
		return err
	}
	m := make(map[string]NodeInfo, len(list))
	for _, ni := range list {
		m[ni.Name] = ni
	}
	n.nodes.Store(&m)
	n.pollMu.Lock()
	close(n.polled)
	n.polled = make(chan struct{})
	n.pollMu.Unlock()
	if l := n.localSet(); l != nil {
		l.checkStandby("")
	}
	return nil
}

func (n *Node) localSet() localSet {
	n.localMu.Lock()
	defer n.localMu.Unlock()
	return n.local
}

// Drain marks the node as stopping in the database at once, so that the
// others move names to their links standing by here.
func (n *Node) Drain(ctx context.Context) error {
	n.SetState(StateDraining)
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	_, err := n.pool.Exec(ctx, `UPDATE cluster_nodes SET state = $3 WHERE name = $1 AND incarnation = $2`, n.cfg.Name, n.incarnation, StateDraining)
	return err
}

// draining reports whether the node map says name is stopping.
func (n *Node) draining(name string) bool {
	ni, ok := (*n.nodes.Load())[name]
	return ok && ni.State == StateDraining
}

// WaitNode waits, up to d or until ctx ends, for the node map to know
// name, and reports whether it does: a visitor's request for a name held
// at a node that has just joined waits for the map rather than failing.
// A node the map knows already returns at once.
func (n *Node) WaitNode(ctx context.Context, name string, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		n.pollMu.Lock()
		polled := n.polled
		n.pollMu.Unlock()
		if _, ok := n.node(name); ok {
			return true
		}
		select {
		case <-polled:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func (n *Node) queryNodes(ctx context.Context, withTunnels bool) ([]NodeInfo, error) {
	return queryNodes(ctx, n.pool, withTunnels)
}

// ListNodes reads the nodes of the cluster in the database at url, with
// the names each holds, without joining it (`porthole admin nodes`).
func ListNodes(ctx context.Context, url string) ([]NodeInfo, error) {
	cfg, err := store.PostgresConfig(url)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster database %s: %w", store.Redact(url), err)
	}
	defer conn.Close(context.Background())
	return queryNodes(ctx, conn, true)
}

func queryNodes(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, withTunnels bool) ([]NodeInfo, error) {
	q := `SELECT name, addr, state, started_at, last_seen, lease_until, lease_until > ` + nowMS + `, 0 FROM cluster_nodes ORDER BY name`
	if withTunnels {
		q = `SELECT n.name, n.addr, n.state, n.started_at, n.last_seen, n.lease_until, n.lease_until > ` + nowMS + `,
			(SELECT count(*) FROM cluster_claims c WHERE c.node = n.name AND c.held_until IS NULL)
			FROM cluster_nodes n ORDER BY n.name`
	}
	rows, err := db.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []NodeInfo
	for rows.Next() {
		var ni NodeInfo
		var started, seen, lease int64
		var tunnels int64
		if err := rows.Scan(&ni.Name, &ni.Addr, &ni.State, &started, &seen, &lease, &ni.Alive, &tunnels); err != nil {
			return nil, err
		}
		ni.StartedAt, ni.LastSeen, ni.LeaseUntil = time.UnixMilli(started), time.UnixMilli(seen), time.UnixMilli(lease)
		ni.Tunnels = int(tunnels)
		if !ni.Alive && ni.State != StateLeft {
			ni.State = "lost"
		}
		out = append(out, ni)
	}
	return out, rows.Err()
}

// Nodes lists the cluster's nodes with the names each holds, read from
// the database (for `porthole admin nodes`).
func (n *Node) Nodes(ctx context.Context) ([]NodeInfo, error) {
	return n.queryNodes(ctx, true)
}

// node returns what the node map knows of name. A name it does not know
// (a node that joined since the map was read) makes the renew loop read
// the map again now rather than at its next tick.
func (n *Node) node(name string) (NodeInfo, bool) {
	ni, ok := (*n.nodes.Load())[name]
	if !ok {
		select {
		case n.pollNow <- struct{}{}:
		default:
		}
	}
	return ni, ok
}

// Leave marks the node as gone and stops its loops; its claims become
// held for their owners (their clients were told to move) and its pool
// is closed. The server calls it after its sessions have ended.
func (n *Node) Leave(ctx context.Context) error {
	if n.left.Swap(true) {
		return nil
	}
	n.cancel()
	n.wg.Wait()
	defer n.pool.Close()
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	rows, err := n.pool.Query(ctx, `UPDATE cluster_claims SET held_until = `+nowMS+` + $2, generation = nextval('cluster_generation'), updated_at = `+nowMS+`
		WHERE node = $1 AND held_until IS NULL RETURNING key, generation`, n.cfg.Name, n.cfg.Grace.Milliseconds())
	if err == nil {
		var changed []keyGen
		if changed, err = collectKeyGens(rows); err == nil {
			for _, kg := range changed {
				n.announce(ctx, n.pool, kg.key, kg.gen)
			}
		}
	}
	_, err2 := n.pool.Exec(ctx, `UPDATE cluster_nodes SET state = 'left', lease_until = `+nowMS+`, last_seen = `+nowMS+` WHERE name = $1 AND incarnation = $2`,
		n.cfg.Name, n.incarnation)
	return errors.Join(err, err2)
}

// Close stops the node's loops without leaving (its lease runs out by
// itself), as a crash would; tests use it.
func (n *Node) Close() {
	n.cancel()
	n.wg.Wait()
	n.pool.Close()
}

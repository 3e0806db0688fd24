package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config describes one node.
type Config struct {
	// DatabaseURL is the postgres:// URL the server's store uses.
	DatabaseURL string
	// Name is the node's name, unique in the cluster.
	Name string
	// Addr is where the other nodes reach this node's cluster listener.
	Addr string
	// Grace is the server's tunnel grace period: a disconnected client's
	// names are held for it this long, also when its node is lost.
	Grace time.Duration
	// RenewEvery is the lease heartbeat (default 2 s), LeaseTTL how long
	// a lease lasts past a renewal (default 10 s), FenceAfter how long
	// without a renewal before this node refuses binds (default 6 s,
	// below LeaseTTL).
	RenewEvery, LeaseTTL, FenceAfter time.Duration
	// ReconcileEvery is the period of the full reload that makes up for
	// lost notifications (default 30 s).
	ReconcileEvery time.Duration
	// OpTimeout bounds each database operation of a bind or a release
	// (default 3 s).
	OpTimeout time.Duration
	// Logger is required.
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultRenewEvery     = 2 * time.Second
	DefaultLeaseTTL       = 10 * time.Second
	DefaultFenceAfter     = 6 * time.Second
	DefaultReconcileEvery = 30 * time.Second
	DefaultOpTimeout      = 3 * time.Second
)

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.RenewEvery, DefaultRenewEvery)
	def(&c.LeaseTTL, DefaultLeaseTTL)
	def(&c.FenceAfter, DefaultFenceAfter)
	def(&c.ReconcileEvery, DefaultReconcileEvery)
	def(&c.OpTimeout, DefaultOpTimeout)
}

// Validate checks c after defaults are applied.
func (c *Config) Validate() error {
	switch {
	case c.DatabaseURL == "":
		return errors.New("cluster: a postgres:// database is required")
	case c.Name == "":
		return errors.New("cluster: the node needs a name")
	case c.Addr == "":
		return errors.New("cluster: the node needs an advertised address")
	case c.Logger == nil:
		return errors.New("cluster: Logger is required")
	case c.Grace < 0:
		return errors.New("cluster: grace period may not be negative")
	case c.RenewEvery <= 0 || c.FenceAfter <= c.RenewEvery || c.LeaseTTL <= c.FenceAfter:
		// The fence must fall before the lease ends, with room for a
		// renewal or two before it.
		return fmt.Errorf("cluster: want 0 < renew (%v) < fence (%v) < lease (%v)", c.RenewEvery, c.FenceAfter, c.LeaseTTL)
	}
	return nil
}

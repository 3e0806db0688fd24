package store

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/porthole/porthole/internal/config"
)

// Timeouts a PostgreSQL store gets when neither the URL nor the config
// sets them: a database that does not answer, or a statement stuck behind
// a lock, fails with an error instead of hanging a handshake or an admin
// command. Every statement porthole runs is short.
const (
	DefaultConnectTimeout   = 10 * time.Second
	DefaultStatementTimeout = 30 * time.Second
)

// PoolConfig is the server's [database_pool] table: the PostgreSQL pool
// and timeouts as TOML keys. Each set key becomes the URL parameter of the
// same meaning (max_conns is pool_max_conns, and so on); a key left at
// zero keeps the URL's value or the default. SQLite has no pool: the table
// is refused with a sqlite database.
type PoolConfig struct {
	MaxConns         int             `toml:"max_conns"`
	MinConns         int             `toml:"min_conns"`
	MaxConnIdleTime  config.Duration `toml:"max_conn_idle_time"`
	MaxConnLifetime  config.Duration `toml:"max_conn_lifetime"`
	ConnectTimeout   config.Duration `toml:"connect_timeout"`
	StatementTimeout config.Duration `toml:"statement_timeout"`
}

// IsZero reports whether no key is set.
func (p PoolConfig) IsZero() bool { return p == PoolConfig{} }

// IsPostgres reports whether dbURL names a PostgreSQL database.
func IsPostgres(dbURL string) bool {
	return strings.HasPrefix(dbURL, "postgres://") || strings.HasPrefix(dbURL, "postgresql://")
}

// Apply returns dbURL with the set keys as URL parameters. A key whose
// parameter the URL also sets, to another value, is an error: the
// setting must live in one place.
func (p PoolConfig) Apply(dbURL string) (string, error) {
	if p.IsZero() {
		return dbURL, nil
	}
	if !IsPostgres(dbURL) {
		return "", fmt.Errorf("database_pool: only a PostgreSQL database (database = \"postgres://...\") has a pool")
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", fmt.Errorf("database %s: not a valid PostgreSQL URL", Redact(dbURL))
	}
	var errs []string
	q := u.Query()
	set := func(key, param, v string) {
		if old := q.Get(param); old != "" && old != v {
			errs = append(errs, fmt.Sprintf("database_pool.%s gives %s=%s but the database URL has %s=%s: set it in one place", key, param, v, param, old))
			return
		}
		q.Set(param, v)
	}
	dur := func(key string, d config.Duration) bool {
		if d < 0 {
			errs = append(errs, fmt.Sprintf("database_pool.%s: %s is negative", key, d.D()))
			return false
		}
		return d > 0
	}
	if p.MaxConns < 0 || p.MinConns < 0 {
		errs = append(errs, "database_pool.max_conns and min_conns may not be negative")
	}
	if p.MaxConns > 0 {
		set("max_conns", "pool_max_conns", strconv.Itoa(p.MaxConns))
	}
	if p.MinConns > 0 {
		set("min_conns", "pool_min_conns", strconv.Itoa(p.MinConns))
	}
	if dur("max_conn_idle_time", p.MaxConnIdleTime) {
		set("max_conn_idle_time", "pool_max_conn_idle_time", p.MaxConnIdleTime.D().String())
	}
	if dur("max_conn_lifetime", p.MaxConnLifetime) {
		set("max_conn_lifetime", "pool_max_conn_lifetime", p.MaxConnLifetime.D().String())
	}
	if dur("connect_timeout", p.ConnectTimeout) {
		// PostgreSQL's connect_timeout is whole seconds.
		set("connect_timeout", "connect_timeout", strconv.FormatInt(int64((p.ConnectTimeout.D()+time.Second-1)/time.Second), 10))
	}
	if dur("statement_timeout", p.StatementTimeout) {
		// statement_timeout is milliseconds.
		set("statement_timeout", "statement_timeout", strconv.FormatInt(max(p.StatementTimeout.D().Milliseconds(), 1), 10))
	}
	if len(errs) > 0 {
		return "", fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

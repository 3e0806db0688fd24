package store

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// PoolOptions size the connection pool of a PostgreSQL store. They are
// given in the database URL beside PostgreSQL's own parameters, with
// pgxpool's names, and taken out before the URL reaches the driver:
//
//	postgres://u:p@db/porthole?pool_max_conns=16&pool_max_conn_idle_time=1m&connect_timeout=5&statement_timeout=10000
//
// connect_timeout (seconds) and statement_timeout (milliseconds, applied
// by the server to every statement) are PostgreSQL's own and pass through;
// without them, DefaultConnectTimeout and DefaultStatementTimeout apply.
// The server's [database_pool] table sets the same (PoolConfig).
type PoolOptions struct {
	MaxConns        int           // pool_max_conns; default 8
	MaxIdleConns    int           // pool_min_conns: connections kept open when idle; default 2
	MaxConnIdleTime time.Duration // pool_max_conn_idle_time; default 5m
	MaxConnLifetime time.Duration // pool_max_conn_lifetime; default 1h
}

// DefaultPoolOptions are used for what the URL leaves out.
func DefaultPoolOptions() PoolOptions {
	return PoolOptions{MaxConns: 8, MaxIdleConns: 2, MaxConnIdleTime: 5 * time.Minute, MaxConnLifetime: time.Hour}
}

// splitPoolOptions takes the pool parameters out of dbURL.
func splitPoolOptions(dbURL string) (string, PoolOptions, error) {
	o := DefaultPoolOptions()
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL, o, nil // the driver reports a bad URL
	}
	q := u.Query()
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", strconv.Itoa(int(DefaultConnectTimeout/time.Second)))
	}
	if q.Get("statement_timeout") == "" {
		q.Set("statement_timeout", strconv.FormatInt(DefaultStatementTimeout.Milliseconds(), 10))
	}
	ints := map[string]*int{"pool_max_conns": &o.MaxConns, "pool_min_conns": &o.MaxIdleConns}
	for k, p := range ints {
		if v := q.Get(k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || (k == "pool_max_conns" && n == 0) {
				return "", o, fmt.Errorf("%s=%q: want a positive whole number", k, v)
			}
			*p = n
			q.Del(k)
		}
	}
	durs := map[string]*time.Duration{"pool_max_conn_idle_time": &o.MaxConnIdleTime, "pool_max_conn_lifetime": &o.MaxConnLifetime}
	for k, p := range durs {
		if v := q.Get(k); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return "", o, fmt.Errorf("%s=%q: want a duration such as 5m", k, v)
			}
			*p = d
			q.Del(k)
		}
	}
	if o.MaxIdleConns > o.MaxConns {
		o.MaxIdleConns = o.MaxConns
	}
	u.RawQuery = q.Encode()
	return u.String(), o, nil
}

// PostgresConfig parses dbURL as OpenPostgres does, the pool parameters
// taken out, for a package that needs connections of its own (the
// cluster's LISTEN connection and lease heartbeat).
func PostgresConfig(dbURL string) (*pgx.ConnConfig, error) {
	clean, _, err := splitPoolOptions(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", Redact(dbURL), err)
	}
	cfg, err := pgx.ParseConfig(clean)
	if err != nil {
		return nil, fmt.Errorf("database %s: not a valid PostgreSQL URL", Redact(dbURL))
	}
	return cfg, nil
}

package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/porthole/porthole/internal/config"
)

func TestPoolConfigApply(t *testing.T) {
	p := PoolConfig{MaxConns: 4, MinConns: 1, MaxConnIdleTime: config.Duration(time.Minute), MaxConnLifetime: config.Duration(2 * time.Hour),
		ConnectTimeout: config.Duration(2500 * time.Millisecond), StatementTimeout: config.Duration(1500 * time.Millisecond)}
	got, err := p.Apply("postgres://u:secret@h/db?sslmode=disable&pool_max_conns=4")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(got)
	want := map[string]string{"pool_max_conns": "4", "pool_min_conns": "1", "pool_max_conn_idle_time": "1m0s", "pool_max_conn_lifetime": "2h0m0s",
		"connect_timeout": "3", "statement_timeout": "1500", "sslmode": "disable"}
	for k, v := range want {
		if u.Query().Get(k) != v {
			t.Errorf("%s=%q, want %q (%s)", k, u.Query().Get(k), v, Redact(got))
		}
	}
	clean, o, err := splitPoolOptions(got)
	if err != nil || o.MaxConns != 4 || o.MaxIdleConns != 1 || o.MaxConnIdleTime != time.Minute || o.MaxConnLifetime != 2*time.Hour {
		t.Fatalf("the pool gets %+v, %v", o, err)
	}
	if strings.Contains(clean, "pool_") {
		t.Fatalf("the driver gets %s", clean)
	}

	for _, c := range []struct {
		p         PoolConfig
		url, want string
	}{
		{PoolConfig{MaxConns: 4}, "postgres://u:secret@h/db?pool_max_conns=8", "set it in one place"},
		{PoolConfig{StatementTimeout: config.Duration(time.Second)}, "postgres://u:secret@h/db?statement_timeout=500", "statement_timeout=500"},
		{PoolConfig{MaxConns: -1}, "postgres://u:secret@h/db", "may not be negative"},
		{PoolConfig{ConnectTimeout: config.Duration(-time.Second)}, "postgres://u:secret@h/db", "negative"},
		{PoolConfig{MaxConns: 2}, "sqlite:/var/lib/porthole.db", "only a PostgreSQL database"},
		{PoolConfig{MaxConns: 2}, "", "only a PostgreSQL database"},
	} {
		_, err := c.p.Apply(c.url)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%+v on %s: %v, want an error with %q and no password", c.p, Redact(c.url), err, c.want)
		}
	}
	if got, err := (PoolConfig{}).Apply("sqlite:/x.db"); err != nil || got != "sqlite:/x.db" {
		t.Fatalf("no keys: %q, %v", got, err)
	}
}

func TestPoolDefaultTimeouts(t *testing.T) {
	clean, _, err := splitPoolOptions("postgres://h/db")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(clean)
	if u.Query().Get("connect_timeout") != "10" || u.Query().Get("statement_timeout") != "30000" {
		t.Fatalf("without settings the driver gets %s, want connect_timeout=10 and statement_timeout=30000", clean)
	}
	clean, _, _ = splitPoolOptions("postgres://h/db?statement_timeout=0&connect_timeout=3")
	if u, _ := url.Parse(clean); u.Query().Get("connect_timeout") != "3" || u.Query().Get("statement_timeout") != "0" {
		t.Fatalf("the URL's own values were replaced: %s", clean)
	}
}

// TestPostgresPoolFromConfig: the [database_pool] keys reach a real
// PostgreSQL's pool: at most max_conns connections, the connect timeout
// in the driver's config, and a statement past statement_timeout canceled
// with PostgreSQL's own error. Without keys, the defaults hold.
func TestPostgresPoolFromConfig(t *testing.T) {
	base := os.Getenv("PORTHOLE_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("PORTHOLE_TEST_POSTGRES is not set")
		}
		t.Skip("PORTHOLE_TEST_POSTGRES not set")
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var b [6]byte
	rand.Read(b[:])
	schema := "porthole_poolcfg_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP SCHEMA " + schema + " CASCADE") })
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	ctx := context.Background()
	open := func(t *testing.T, p PoolConfig) *pgStore {
		dbURL, err := p.Apply(u.String())
		if err != nil {
			t.Fatal(err)
		}
		st, err := Open(ctx, dbURL, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st.(*pgStore)
	}

	t.Run("keys", func(t *testing.T) {
		st := open(t, PoolConfig{MaxConns: 2, MinConns: 1, ConnectTimeout: config.Duration(3 * time.Second), StatementTimeout: config.Duration(300 * time.Millisecond)})
		if got := st.db.Stats().MaxOpenConnections; got != 2 {
			t.Fatalf("pool size %d, want 2", got)
		}
		if st.cfg.ConnectTimeout != 3*time.Second {
			t.Fatalf("connect timeout %s, want 3s", st.cfg.ConnectTimeout)
		}
		// Three queries at once on a pool of two: never more than two
		// connections.
		errs := make(chan error, 3)
		for range 3 {
			go func() { _, err := st.db.ExecContext(ctx, "SELECT pg_sleep(0.1)"); errs <- err }()
		}
		for range 3 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if n := st.db.Stats().OpenConnections; n > 2 {
			t.Fatalf("%d connections open, want at most 2", n)
		}
		_, err := st.db.ExecContext(ctx, "SELECT pg_sleep(5)")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" || !strings.Contains(err.Error(), "statement timeout") {
			t.Fatalf("pg_sleep(5) under statement_timeout 300ms: %v, want canceling statement due to statement timeout (57014)", err)
		}
		// The store's own statements still work on that connection pool.
		if _, err := st.CreateUser(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		st := open(t, PoolConfig{})
		if got := st.db.Stats().MaxOpenConnections; got != DefaultPoolOptions().MaxConns {
			t.Fatalf("pool size %d, want %d", got, DefaultPoolOptions().MaxConns)
		}
		if st.cfg.ConnectTimeout != DefaultConnectTimeout {
			t.Fatalf("connect timeout %s, want %s", st.cfg.ConnectTimeout, DefaultConnectTimeout)
		}
		var v string
		if err := st.db.QueryRowContext(ctx, "SHOW statement_timeout").Scan(&v); err != nil || v != "30s" {
			t.Fatalf("statement_timeout %q, %v; want 30s", v, err)
		}
	})
}

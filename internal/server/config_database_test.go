package server

import (
	"net/url"
	"strings"
	"testing"

	"github.com/porthole/porthole/internal/config"
)

// TestDatabasePoolKeys: the [database_pool] table of the server's TOML
// file reaches the database URL the store opens; a key the URL also sets
// differently, or a pool for SQLite, is refused by Validate.
func TestDatabasePoolKeys(t *testing.T) {
	cfg := DefaultConfig()
	err := config.Decode("server.toml", []byte(`database = "postgres://porthole:pw@db.internal/porthole?sslmode=require"

[database_pool]
max_conns = 2
min_conns = 1
max_conn_idle_time = "1m"
max_conn_lifetime = "30m"
connect_timeout = "5s"
statement_timeout = "2s"
`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	dbURL, err := cfg.DatabaseURL()
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(dbURL)
	for k, v := range map[string]string{"pool_max_conns": "2", "pool_min_conns": "1", "pool_max_conn_idle_time": "1m0s",
		"pool_max_conn_lifetime": "30m0s", "connect_timeout": "5", "statement_timeout": "2000", "sslmode": "require"} {
		if got := u.Query().Get(k); got != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}

	for _, c := range []struct{ toml, want string }{
		{"database = \"postgres://u:pw@db/p?pool_max_conns=8\"\n[database_pool]\nmax_conns = 2\n", "set it in one place"},
		{"[database_pool]\nmax_conns = 2\n", "only a PostgreSQL database"},
		{"database = \"postgres://u:pw@db/p\"\n[database_pool]\nstatement_timeout = \"-1s\"\n", "negative"},
	} {
		cfg := DefaultConfig()
		if err := config.Decode("server.toml", []byte(c.toml), &cfg); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.toml, err, c.want)
		}
	}
}

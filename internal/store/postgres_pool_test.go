package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

func TestSplitPoolOptions(t *testing.T) {
	clean, o, err := splitPoolOptions("postgres://u:p@h/db?pool_max_conns=3&pool_min_conns=9&pool_max_conn_idle_time=30s&pool_max_conn_lifetime=2h&sslmode=disable&statement_timeout=500")
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxConns != 3 || o.MaxIdleConns != 3 || o.MaxConnIdleTime != 30*time.Second || o.MaxConnLifetime != 2*time.Hour {
		t.Fatalf("options %+v", o)
	}
	if strings.Contains(clean, "pool_") || !strings.Contains(clean, "sslmode=disable") || !strings.Contains(clean, "statement_timeout=500") {
		t.Fatalf("the driver gets %s", clean)
	}
	if _, o, _ := splitPoolOptions("postgres://h/db"); o != DefaultPoolOptions() {
		t.Fatalf("defaults %+v", o)
	}
	for _, bad := range []string{"pool_max_conns=0", "pool_max_conns=x", "pool_min_conns=-1", "pool_max_conn_idle_time=5", "pool_max_conn_lifetime=-1m"} {
		if _, _, err := splitPoolOptions("postgres://u:secret@h/db?" + bad); err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v, want an error without the password", bad, err)
		}
	}
}

// TestPostgresPoolOptions: the pool honors its size from the URL, and
// PostgreSQL's statement_timeout passes through and cancels a slow query.
func TestPostgresPoolOptions(t *testing.T) {
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
	schema := "porthole_pool_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP SCHEMA " + schema + " CASCADE") })
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("pool_max_conns", "2")
	q.Set("statement_timeout", "300")
	u.RawQuery = q.Encode()
	ctx := context.Background()
	st, err := Open(ctx, u.String(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db := st.(*pgStore).db
	if got := db.Stats().MaxOpenConnections; got != 2 {
		t.Fatalf("pool size %d, want 2", got)
	}
	_, err = db.ExecContext(ctx, "SELECT pg_sleep(3)")
	if err == nil || !strings.Contains(err.Error(), "statement timeout") {
		t.Fatalf("a 3 s query under statement_timeout=300: %v, want canceled by the statement timeout", err)
	}
}

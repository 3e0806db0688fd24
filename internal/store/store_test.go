package store_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/porthole/porthole/internal/store"
	"github.com/porthole/porthole/internal/store/storetest"
)

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		path := filepath.Join(t.TempDir(), "porthole.db")
		return storetest.Harness{
			Open: func(ctx context.Context) (store.Store, error) { return store.Open(ctx, "sqlite:"+path, "") },
			Exec: func(ctx context.Context, q string) error {
				db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
				if err != nil {
					return err
				}
				defer db.Close()
				_, err = db.ExecContext(ctx, q)
				return err
			},
		}
	})
}

// TestPostgres runs the suite against the database in
// PORTHOLE_TEST_POSTGRES (a postgres:// URL), each subtest in a schema of
// its own. Under CI (CI=true) a missing URL is a failure, so that a run
// cannot pass with the PostgreSQL backend untested.
func TestPostgres(t *testing.T) {
	base := os.Getenv("PORTHOLE_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("PORTHOLE_TEST_POSTGRES is not set; CI must run the store suite against PostgreSQL (see .ci/postgres.sh)")
		}
		t.Skip("PORTHOLE_TEST_POSTGRES not set")
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.Ping(); err != nil {
		t.Fatalf("PORTHOLE_TEST_POSTGRES: %v", err)
	}
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		var b [6]byte
		rand.Read(b[:])
		schema := "porthole_test_" + hex.EncodeToString(b[:])
		if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Exec("DROP SCHEMA " + schema + " CASCADE") })
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		dbURL := u.String()
		return storetest.Harness{
			Open: func(ctx context.Context) (store.Store, error) { return store.Open(ctx, dbURL, "") },
			Exec: func(ctx context.Context, q string) error {
				_, err := admin.ExecContext(ctx, strings.Replace(q, "schema_migrations", schema+".schema_migrations", 1))
				return err
			},
		}
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := store.Open(ctx, "mysql://u:secret@h/db", ""); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("unknown scheme: %v", err)
	}
	if _, err := store.Open(ctx, "postgres://u:secret@127.0.0.1:1/db?connect_timeout=1", ""); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("unreachable postgres: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	s, err := store.Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	fi, err := os.Stat(filepath.Join(dir, store.DefaultFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:pw@h/db":            "postgres://u:xxxxx@h/db",
		"postgres://h/db?password=pw&x=1": "postgres://h/db?password=xxxxx&x=1",
		"sqlite:/var/lib/porthole/p.db":   "sqlite:/var/lib/porthole/p.db",
		"postgres://u@h/db":               "postgres://u@h/db",
	} {
		if got := store.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

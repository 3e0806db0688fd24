package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Times are stored as unix milliseconds (BIGINT) in both backends, so that
// the queries are shared and comparisons never depend on a text format.
// Each migration is a list of statements separated by ";\n"; a migration
// once released is never edited, only followed by a new one.

var sqliteMigrations = []string{
	// 1: the initial schema.
	`CREATE TABLE users (
		id INTEGER PRIMARY KEY,
		name TEXT NOT NULL UNIQUE,
		created_at INTEGER NOT NULL,
		max_tunnels INTEGER,
		max_sessions INTEGER,
		requests_per_second REAL,
		burst INTEGER,
		bandwidth_bytes_per_second INTEGER,
		max_connections_per_tunnel INTEGER
	);
	CREATE TABLE api_keys (
		id TEXT PRIMARY KEY,
		user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		name TEXT NOT NULL DEFAULT '',
		hash BLOB NOT NULL UNIQUE,
		created_at INTEGER NOT NULL,
		expires_at INTEGER,
		last_used_at INTEGER,
		revoked_at INTEGER
	);
	CREATE INDEX api_keys_user ON api_keys(user_id);
	CREATE TABLE revoked_tokens (
		jti TEXT PRIMARY KEY,
		user_name TEXT NOT NULL,
		revoked_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	);
	CREATE TABLE reserved_subdomains (
		name TEXT PRIMARY KEY,
		user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		created_at INTEGER NOT NULL
	);
	CREATE TABLE reserved_ports (
		port INTEGER PRIMARY KEY,
		user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		created_at INTEGER NOT NULL
	);
	CREATE TABLE domains (
		hostname TEXT PRIMARY KEY,
		user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		token TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		verified_at INTEGER,
		checked_at INTEGER
	);
	CREATE TABLE changes (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		kind TEXT NOT NULL,
		subject TEXT NOT NULL,
		at INTEGER NOT NULL
	);
	CREATE INDEX changes_at ON changes(at)`,
	// 2: revoked client certificates and token cut-off times.
	`CREATE TABLE revoked_certs (
		ref TEXT PRIMARY KEY,
		user_name TEXT NOT NULL,
		revoked_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	);
	CREATE TABLE token_cutoffs (
		issuer TEXT NOT NULL,
		user_name TEXT NOT NULL,
		cutoff INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (issuer, user_name)
	)`,
	// 3: the cluster's tables exist on PostgreSQL only (a cluster needs a
	// shared database); SQLite records the version and nothing else.
	``,
}

var postgresMigrations = []string{
	// 1: the initial schema.
	`CREATE TABLE users (
		id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		name TEXT NOT NULL UNIQUE,
		created_at BIGINT NOT NULL,
		max_tunnels INTEGER,
		max_sessions INTEGER,
		requests_per_second DOUBLE PRECISION,
		burst INTEGER,
		bandwidth_bytes_per_second BIGINT,
		max_connections_per_tunnel INTEGER
	);
	CREATE TABLE api_keys (
		id TEXT PRIMARY KEY,
		user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		name TEXT NOT NULL DEFAULT '',
		hash BYTEA NOT NULL UNIQUE,
		created_at BIGINT NOT NULL,
		expires_at BIGINT,
		last_used_at BIGINT,
		revoked_at BIGINT
	);
	CREATE INDEX api_keys_user ON api_keys(user_id);
	CREATE TABLE revoked_tokens (
		jti TEXT PRIMARY KEY,
		user_name TEXT NOT NULL,
		revoked_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL
	);
	CREATE TABLE reserved_subdomains (
		name TEXT PRIMARY KEY,
		user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE reserved_ports (
		port INTEGER PRIMARY KEY,
		user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE domains (
		hostname TEXT PRIMARY KEY,
		user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		token TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		verified_at BIGINT,
		checked_at BIGINT
	);
	CREATE TABLE changes (
		seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		kind TEXT NOT NULL,
		subject TEXT NOT NULL,
		at BIGINT NOT NULL
	);
	CREATE INDEX changes_at ON changes(at)`,
	// 2: revoked client certificates and token cut-off times.
	`CREATE TABLE revoked_certs (
		ref TEXT PRIMARY KEY,
		user_name TEXT NOT NULL,
		revoked_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL
	);
	CREATE TABLE token_cutoffs (
		issuer TEXT NOT NULL,
		user_name TEXT NOT NULL,
		cutoff BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (issuer, user_name)
	)`,
	// 3: the cluster (internal/cluster): nodes with leases, one claim per
	// hostname or TCP port, and the route log that NOTIFY announces.
	// Times are unix milliseconds of the database's clock, so that nodes
	// with skewed clocks agree on leases.
	`CREATE TABLE cluster_nodes (
		name TEXT PRIMARY KEY,
		addr TEXT NOT NULL,
		incarnation TEXT NOT NULL,
		state TEXT NOT NULL,
		started_at BIGINT NOT NULL,
		last_seen BIGINT NOT NULL,
		lease_until BIGINT NOT NULL
	);
	CREATE SEQUENCE cluster_generation;
	CREATE TABLE cluster_claims (
		key TEXT PRIMARY KEY,
		owner_user TEXT NOT NULL,
		owner_client TEXT NOT NULL,
		node TEXT NOT NULL,
		generation BIGINT NOT NULL,
		held_until BIGINT,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX cluster_claims_node ON cluster_claims(node);
	CREATE INDEX cluster_claims_user ON cluster_claims(owner_user);
	CREATE TABLE cluster_route_log (
		id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		key TEXT NOT NULL,
		generation BIGINT NOT NULL,
		at BIGINT NOT NULL
	);
	CREATE INDEX cluster_route_log_at ON cluster_route_log(at)`,
}

// migrate brings the schema up to the newest version this binary knows,
// in one transaction, and refuses a database that is already newer.
func (s *sqlStore) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if s.d.lockMigrations != "" {
		if _, err := tx.ExecContext(ctx, s.d.lockMigrations); err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("schema_migrations: %w", err)
	}
	have, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	known := len(s.d.migrations)
	if have > known {
		return fmt.Errorf("%w: the database is at schema version %d, this porthole knows versions up to %d; upgrade porthole (a database is never migrated down)", ErrSchemaTooNew, have, known)
	}
	for v := have + 1; v <= known; v++ {
		for _, stmt := range strings.Split(s.d.migrations[v-1], ";\n") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("schema migration %d: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), v, s.now().UnixMilli()); err != nil {
			return fmt.Errorf("schema migration %d: %w", v, err)
		}
	}
	return tx.Commit()
}

type queryRower interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

func schemaVersion(ctx context.Context, q queryRower) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return int(v.Int64), nil
}

// SchemaVersion implements Store.
func (s *sqlStore) SchemaVersion(ctx context.Context) (int, error) {
	return schemaVersion(ctx, s.db)
}

// LatestSchemaVersion is the newest schema version this binary knows.
func LatestSchemaVersion() int { return len(sqliteMigrations) }

var errMigrationsDiffer = errors.New("store: the backends' migration lists differ in length")

func init() {
	if len(sqliteMigrations) != len(postgresMigrations) {
		panic(errMigrationsDiffer)
	}
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

var sqliteDialect = &dialect{
	name:       "sqlite",
	migrations: sqliteMigrations,
	rebind:     func(q string) string { return q },
	greatest:   "MAX",
	isUnique: func(err error) bool {
		var se *sqlite.Error
		return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
	},
}

// OpenSQLite opens (creating and migrating as needed) the SQLite database
// at path.
//
// WAL mode lets the server read while `porthole admin` writes from another
// process; busy_timeout makes a writer wait for the other's lock instead
// of failing; and every transaction starts with BEGIN IMMEDIATE, because a
// deferred transaction that reads and then writes can fail at once with
// SQLITE_BUSY when another process wrote in between, whatever the timeout.
func OpenSQLite(ctx context.Context, path string) (Store, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	// Writers are serialized by SQLite anyway; a few connections let
	// reads proceed beside a write.
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(time.Minute)
	s := &sqlStore{db: db, d: sqliteDialect, now: time.Now}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	// The database holds key hashes and tokens for domain checks: keep it
	// to the server's user.
	_ = os.Chmod(path, 0o600)
	return s, nil
}

package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// notifyChannel is the LISTEN/NOTIFY channel on which a committed change
// is announced.
const notifyChannel = "porthole_changes"

var postgresDialect = &dialect{
	name:       "postgres",
	migrations: postgresMigrations,
	rebind:     rebindDollar,
	greatest:   "GREATEST",
	isUnique: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505"
	},
	// An identity column hands out numbers at insert, not at commit: two
	// concurrent writers could commit 6 before 5 and a reader that saw 6
	// would skip 5. A transaction-scoped lock makes change-logging
	// transactions commit one after another. The numbers are arbitrary
	// constants ("porthole", then a purpose).
	lockChanges:    `SELECT pg_advisory_xact_lock(7072746, 1)`,
	lockMigrations: `SELECT pg_advisory_xact_lock(7072746, 2)`,
	notify:         `SELECT pg_notify('` + notifyChannel + `', '')`,
}

// rebindDollar turns '?' placeholders into $1, $2, ...; the shared
// queries have no '?' inside literals.
func rebindDollar(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

type pgStore struct {
	*sqlStore
	cfg *pgx.ConnConfig
}

// OpenPostgres connects to the PostgreSQL database at dbURL and migrates
// it. Several servers may share it.
func OpenPostgres(ctx context.Context, dbURL string) (Store, error) {
	clean, pool, err := splitPoolOptions(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", Redact(dbURL), err)
	}
	cfg, err := pgx.ParseConfig(clean)
	if err != nil {
		// pgx's message can quote the URL; do not repeat a password.
		return nil, fmt.Errorf("database %s: not a valid PostgreSQL URL", Redact(dbURL))
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(pool.MaxConns)
	db.SetMaxIdleConns(pool.MaxIdleConns)
	db.SetConnMaxIdleTime(pool.MaxConnIdleTime)
	db.SetConnMaxLifetime(pool.MaxConnLifetime)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: %w", Redact(dbURL), err)
	}
	s := &pgStore{sqlStore: &sqlStore{db: db, d: postgresDialect, now: time.Now}, cfg: cfg}
	if err := s.migrate(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: %w", Redact(dbURL), err)
	}
	return s, nil
}

// Notify implements Notifier with a dedicated connection that LISTENs on
// the change channel, reconnecting after errors; polling covers the gaps.
func (s *pgStore) Notify(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	go func() {
		backoff := 500 * time.Millisecond
		for ctx.Err() == nil {
			err := s.listen(ctx, func() {
				backoff = 500 * time.Millisecond
				signal()
			})
			if ctx.Err() != nil {
				return
			}
			// Notifications are lost while disconnected: the watcher's
			// poll covers that, and a signal after reconnecting too.
			_ = err
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
			signal()
		}
	}()
	return ch
}

func (s *pgStore) listen(ctx context.Context, onNotify func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		onNotify()
	}
}

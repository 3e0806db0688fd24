package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// dialect is what differs between the SQL backends; the queries
// themselves are shared and written with '?' placeholders.
type dialect struct {
	name       string
	migrations []string
	// rebind rewrites '?' placeholders to the backend's form.
	rebind func(string) string
	// isUnique reports a unique-constraint violation.
	isUnique func(error) bool
	// lockChanges, run first in every transaction that logs a change,
	// serializes those transactions so that change sequence numbers
	// become visible in order and a reader never skips one. SQLite
	// serializes writers anyway.
	lockChanges string
	// notify, when set, is run in a transaction that logged a change.
	notify string
	// lockMigrations makes concurrent migrators wait for each other.
	lockMigrations string
	// greatest is the two-argument maximum function (MAX in SQLite).
	greatest string
}

// sqlStore implements Store on database/sql for both backends.
type sqlStore struct {
	db *sql.DB
	d  *dialect
	// now is the clock for changes' timestamps and pruning.
	now func() time.Time
	// closeExtra releases backend resources besides db.
	closeExtra func()
}

// changeRetention bounds the change log: a watcher that has been away
// longer than this re-reads current state instead.
const changeRetention = 7 * 24 * time.Hour

func (s *sqlStore) q(query string) string { return s.d.rebind(query) }

func ms(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

func (s *sqlStore) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return s.db.ExecContext(ctx, s.q(query), args...)
}

// tx runs fn in a transaction.
func (s *sqlStore) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// logChange appends to the change log inside tx; tx must have run
// d.lockChanges first.
func (s *sqlStore) logChange(ctx context.Context, tx *sql.Tx, kind ChangeKind, subject string) error {
	now := s.now()
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO changes (kind, subject, at) VALUES (?, ?, ?)`), string(kind), subject, now.UnixMilli()); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM changes WHERE at < ?`), now.Add(-changeRetention).UnixMilli()); err != nil {
		return err
	}
	if s.d.notify != "" {
		if _, err := tx.ExecContext(ctx, s.d.notify); err != nil {
			return err
		}
	}
	return nil
}

func (s *sqlStore) changeTx(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if s.d.lockChanges != "" {
			if _, err := tx.ExecContext(ctx, s.d.lockChanges); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

func (s *sqlStore) userID(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, name string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, s.q(`SELECT id FROM users WHERE name = ?`), name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return id, err
}

// CreateUser implements Store.
func (s *sqlStore) CreateUser(ctx context.Context, name string) (User, error) {
	if err := ValidateUserName(name); err != nil {
		return User{}, err
	}
	now := s.now().Truncate(time.Millisecond).UTC()
	_, err := s.exec(ctx, `INSERT INTO users (name, created_at) VALUES (?, ?)`, name, now.UnixMilli())
	if err != nil {
		if s.d.isUnique(err) {
			return User{}, fmt.Errorf("user %q: %w", name, ErrExists)
		}
		return User{}, err
	}
	return User{Name: name, CreatedAt: now}, nil
}

const userCols = `name, created_at, max_tunnels, max_sessions, requests_per_second, burst, bandwidth_bytes_per_second, max_connections_per_tunnel`

func scanUser(sc interface{ Scan(...any) error }) (User, error) {
	var (
		u       User
		created int64
		mt, mss sql.NullInt64
		rps     sql.NullFloat64
		burst   sql.NullInt64
		bw, mct sql.NullInt64
	)
	if err := sc.Scan(&u.Name, &created, &mt, &mss, &rps, &burst, &bw, &mct); err != nil {
		return u, err
	}
	u.CreatedAt = time.UnixMilli(created).UTC()
	u.Limits = Limits{
		MaxTunnels:              nullInt(mt),
		MaxSessions:             nullInt(mss),
		Burst:                   nullInt(burst),
		BandwidthBytesPerSecond: nullInt64(bw),
		MaxConnectionsPerTunnel: nullInt(mct),
	}
	if rps.Valid {
		v := rps.Float64
		u.Limits.RequestsPerSecond = &v
	}
	return u, nil
}

func nullInt(v sql.NullInt64) *int {
	if !v.Valid {
		return nil
	}
	i := int(v.Int64)
	return &i
}

func nullInt64(v sql.NullInt64) *int64 {
	if !v.Valid {
		return nil
	}
	i := v.Int64
	return &i
}

// GetUser implements Store.
func (s *sqlStore) GetUser(ctx context.Context, name string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, s.q(`SELECT `+userCols+` FROM users WHERE name = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return u, err
}

// ListUsers implements Store.
func (s *sqlStore) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// DeleteUser implements Store.
func (s *sqlStore) DeleteUser(ctx context.Context, name string) error {
	return s.changeTx(ctx, func(tx *sql.Tx) error {
		id, err := s.userID(ctx, tx, name)
		if err != nil {
			return err
		}
		// Foreign keys cascade, but the dependent rows are deleted
		// explicitly so that the result does not hang on a pragma.
		for _, t := range []string{"api_keys", "reserved_subdomains", "reserved_ports", "domains"} {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+t+` WHERE user_id = ?`), id); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM users WHERE id = ?`), id); err != nil {
			return err
		}
		return s.logChange(ctx, tx, ChangeUserDeleted, name)
	})
}

// SetUserLimits implements Store.
func (s *sqlStore) SetUserLimits(ctx context.Context, name string, l Limits) error {
	var rps any
	if l.RequestsPerSecond != nil {
		rps = *l.RequestsPerSecond
	}
	res, err := s.exec(ctx, `UPDATE users SET max_tunnels = ?, max_sessions = ?, requests_per_second = ?, burst = ?, bandwidth_bytes_per_second = ?, max_connections_per_tunnel = ? WHERE name = ?`,
		ptrArg(l.MaxTunnels), ptrArg(l.MaxSessions), rps, ptrArg(l.Burst), ptrArg64(l.BandwidthBytesPerSecond), ptrArg(l.MaxConnectionsPerTunnel), name)
	if err != nil {
		return err
	}
	return mustAffect(res, fmt.Errorf("user %q: %w", name, ErrNotFound))
}

func ptrArg(p *int) any {
	if p == nil {
		return nil
	}
	return int64(*p)
}

func ptrArg64(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func mustAffect(res sql.Result, notFound error) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound
	}
	return nil
}

// CreateAPIKey implements Store.
func (s *sqlStore) CreateAPIKey(ctx context.Context, k NewAPIKey) (APIKey, error) {
	if k.ID == "" || len(k.Hash) == 0 {
		return APIKey{}, errors.New("store: an API key needs an id and a hash")
	}
	now := s.now().Truncate(time.Millisecond).UTC()
	var out APIKey
	err := s.tx(ctx, func(tx *sql.Tx) error {
		uid, err := s.userID(ctx, tx, k.User)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO api_keys (id, user_id, name, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`),
			k.ID, uid, k.Name, k.Hash, now.UnixMilli(), ms(k.ExpiresAt))
		if err != nil {
			if s.d.isUnique(err) {
				return fmt.Errorf("API key %s: %w", k.ID, ErrExists)
			}
			return err
		}
		out = APIKey{ID: k.ID, User: k.User, Name: k.Name, CreatedAt: now}
		if !k.ExpiresAt.IsZero() {
			out.ExpiresAt = time.UnixMilli(k.ExpiresAt.UnixMilli()).UTC()
		}
		return nil
	})
	return out, err
}

const keyCols = `k.id, u.name, k.name, k.created_at, k.expires_at, k.last_used_at, k.revoked_at`

func scanKey(sc interface{ Scan(...any) error }, extra ...any) (APIKey, error) {
	var (
		k                   APIKey
		created             int64
		expires, used, revd sql.NullInt64
	)
	dst := append([]any{&k.ID, &k.User, &k.Name, &created, &expires, &used, &revd}, extra...)
	if err := sc.Scan(dst...); err != nil {
		return k, err
	}
	k.CreatedAt = time.UnixMilli(created).UTC()
	k.ExpiresAt, k.LastUsedAt, k.RevokedAt = fromMS(expires), fromMS(used), fromMS(revd)
	return k, nil
}

// APIKeyByHash implements Store.
func (s *sqlStore) APIKeyByHash(ctx context.Context, hash []byte) (APIKey, []byte, error) {
	var stored []byte
	k, err := scanKey(s.db.QueryRowContext(ctx, s.q(`SELECT `+keyCols+`, k.hash FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.hash = ?`), hash), &stored)
	if errors.Is(err, sql.ErrNoRows) {
		return k, nil, fmt.Errorf("API key: %w", ErrNotFound)
	}
	return k, stored, err
}

// APIKeyByID implements Store.
func (s *sqlStore) APIKeyByID(ctx context.Context, id string) (APIKey, error) {
	k, err := scanKey(s.db.QueryRowContext(ctx, s.q(`SELECT `+keyCols+` FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("API key %s: %w", id, ErrNotFound)
	}
	return k, err
}

// ListAPIKeys implements Store.
func (s *sqlStore) ListAPIKeys(ctx context.Context, user string) ([]APIKey, error) {
	query := `SELECT ` + keyCols + ` FROM api_keys k JOIN users u ON u.id = k.user_id`
	var args []any
	if user != "" {
		if _, err := s.userID(ctx, s.db, user); err != nil {
			return nil, err
		}
		query += ` WHERE u.name = ?`
		args = append(args, user)
	}
	rows, err := s.db.QueryContext(ctx, s.q(query+` ORDER BY k.created_at, k.id`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeAPIKey implements Store.
func (s *sqlStore) RevokeAPIKey(ctx context.Context, id string, at time.Time) error {
	return s.changeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`), at.UnixMilli(), id)
		if err != nil {
			return err
		}
		if err := mustAffect(res, fmt.Errorf("API key %s: %w", id, ErrNotFound)); err != nil {
			return err
		}
		return s.logChange(ctx, tx, ChangeKeyRevoked, id)
	})
}

// TouchAPIKey implements Store.
func (s *sqlStore) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	t := at.UnixMilli()
	_, err := s.exec(ctx, `UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`, t, id, t-60_000)
	return err
}

// forever stands for "kept for good" in expires_at columns.
const forever = int64(1) << 62

// revocationSlack is how long past a credential's expiry its revocation
// record is kept: more than any clock skew a check allows.
const revocationSlack = time.Hour

func expiresMS(t time.Time) int64 {
	if t.IsZero() {
		return forever
	}
	return t.UnixMilli()
}

// RevokeToken implements Store.
func (s *sqlStore) RevokeToken(ctx context.Context, jti, user string, expires time.Time) error {
	if jti == "" {
		return errors.New("store: a token id is needed to revoke a token")
	}
	now := s.now()
	return s.changeTx(ctx, func(tx *sql.Tx) error {
		// Records of tokens that have expired anyway are dropped; a
		// record's expiry is the token's own, never earlier.
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM revoked_tokens WHERE expires_at < ?`), now.Add(-revocationSlack).UnixMilli()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO revoked_tokens (jti, user_name, revoked_at, expires_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (jti) DO UPDATE SET expires_at = `+s.d.greatest+`(revoked_tokens.expires_at, excluded.expires_at)`),
			jti, user, now.UnixMilli(), expiresMS(expires))
		if err != nil {
			return err
		}
		return s.logChange(ctx, tx, ChangeTokenRevoked, jti)
	})
}

// inList returns "(?, ?, ...)" for n values.
func inList(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
}

func anyArgs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TokenRevoked implements Store.
func (s *sqlStore) TokenRevoked(ctx context.Context, ids ...string) (bool, error) {
	if len(ids) == 0 {
		return false, nil
	}
	var n int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM revoked_tokens WHERE jti IN `+inList(len(ids))), anyArgs(ids)...).Scan(&n)
	return n > 0, err
}

// SetTokenCutoff implements Store.
func (s *sqlStore) SetTokenCutoff(ctx context.Context, issuer, user string, before time.Time) error {
	if issuer == "" {
		return errors.New("store: a token cut-off needs an issuer")
	}
	if before.IsZero() {
		return errors.New("store: a token cut-off needs a time")
	}
	now := s.now()
	return s.changeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO token_cutoffs (issuer, user_name, cutoff, created_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (issuer, user_name) DO UPDATE SET cutoff = `+s.d.greatest+`(token_cutoffs.cutoff, excluded.cutoff)`),
			issuer, user, before.UnixMilli(), now.UnixMilli())
		if err != nil {
			return err
		}
		return s.logChange(ctx, tx, ChangeTokenCutoff, CutoffSubject(issuer, user))
	})
}

// TokenCutoff implements Store.
func (s *sqlStore) TokenCutoff(ctx context.Context, issuer, user string) (time.Time, error) {
	var v sql.NullInt64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT MAX(cutoff) FROM token_cutoffs WHERE issuer = ? AND (user_name = '' OR user_name = ?)`), issuer, user).Scan(&v)
	return fromMS(v), err
}

// RevokeCert implements Store.
func (s *sqlStore) RevokeCert(ctx context.Context, c CertRevocation) error {
	if !strings.HasPrefix(c.Ref, "serial:") && !strings.HasPrefix(c.Ref, "sha256:") {
		return fmt.Errorf("store: certificate reference %q: want serial:HEX or sha256:HEX", c.Ref)
	}
	now := s.now()
	return s.changeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM revoked_certs WHERE expires_at < ?`), now.Add(-revocationSlack).UnixMilli()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO revoked_certs (ref, user_name, revoked_at, expires_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (ref) DO UPDATE SET expires_at = `+s.d.greatest+`(revoked_certs.expires_at, excluded.expires_at)`),
			c.Ref, c.User, now.UnixMilli(), expiresMS(c.ExpiresAt))
		if err != nil {
			return err
		}
		return s.logChange(ctx, tx, ChangeCertRevoked, c.Ref)
	})
}

// CertRevoked implements Store.
func (s *sqlStore) CertRevoked(ctx context.Context, refs ...string) (bool, error) {
	if len(refs) == 0 {
		return false, nil
	}
	var n int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM revoked_certs WHERE ref IN `+inList(len(refs))), anyArgs(refs)...).Scan(&n)
	return n > 0, err
}

// ListCertRevocations implements Store.
func (s *sqlStore) ListCertRevocations(ctx context.Context) ([]CertRevocation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT ref, user_name, revoked_at, expires_at FROM revoked_certs ORDER BY revoked_at, ref`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []CertRevocation
	for rows.Next() {
		var (
			c            CertRevocation
			revd, expiry int64
		)
		if err := rows.Scan(&c.Ref, &c.User, &revd, &expiry); err != nil {
			return nil, err
		}
		c.RevokedAt = time.UnixMilli(revd).UTC()
		if expiry != forever {
			c.ExpiresAt = time.UnixMilli(expiry).UTC()
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func reservationTable(kind ReservationKind) (table, col string, err error) {
	switch kind {
	case ReservedSubdomain:
		return "reserved_subdomains", "name", nil
	case ReservedPort:
		return "reserved_ports", "port", nil
	}
	return "", "", fmt.Errorf("store: unknown reservation kind %q", kind)
}

func reservationKey(kind ReservationKind, name string) (any, error) {
	if kind == ReservedPort {
		p, err := strconv.Atoi(name)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%q is not a port number", name)
		}
		return int64(p), nil
	}
	if name == "" {
		return nil, errors.New("empty subdomain")
	}
	return name, nil
}

// Reserve implements Store.
func (s *sqlStore) Reserve(ctx context.Context, r Reservation) error {
	table, col, err := reservationTable(r.Kind)
	if err != nil {
		return err
	}
	key, err := reservationKey(r.Kind, r.Name)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		uid, err := s.userID(ctx, tx, r.User)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO `+table+` (`+col+`, user_id, created_at) VALUES (?, ?, ?)`), key, uid, s.now().UnixMilli())
		if err != nil && s.d.isUnique(err) {
			return fmt.Errorf("%s %s: %w", r.Kind, r.Name, ErrExists)
		}
		return err
	})
}

// Unreserve implements Store.
func (s *sqlStore) Unreserve(ctx context.Context, kind ReservationKind, name string) error {
	table, col, err := reservationTable(kind)
	if err != nil {
		return err
	}
	key, err := reservationKey(kind, name)
	if err != nil {
		return err
	}
	res, err := s.exec(ctx, `DELETE FROM `+table+` WHERE `+col+` = ?`, key)
	if err != nil {
		return err
	}
	return mustAffect(res, fmt.Errorf("reserved %s %s: %w", kind, name, ErrNotFound))
}

// ReservationOwner implements Store.
func (s *sqlStore) ReservationOwner(ctx context.Context, kind ReservationKind, name string) (string, error) {
	table, col, err := reservationTable(kind)
	if err != nil {
		return "", err
	}
	key, err := reservationKey(kind, name)
	if err != nil {
		return "", err
	}
	var owner string
	err = s.db.QueryRowContext(ctx, s.q(`SELECT u.name FROM `+table+` r JOIN users u ON u.id = r.user_id WHERE r.`+col+` = ?`), key).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("reserved %s %s: %w", kind, name, ErrNotFound)
	}
	return owner, err
}

// ListReservations implements Store.
func (s *sqlStore) ListReservations(ctx context.Context, user string) ([]Reservation, error) {
	query := `SELECT 'subdomain', r.name, u.name, r.created_at FROM reserved_subdomains r JOIN users u ON u.id = r.user_id WHERE (? = '' OR u.name = ?)
		UNION ALL
		SELECT 'port', CAST(r.port AS TEXT), u.name, r.created_at FROM reserved_ports r JOIN users u ON u.id = r.user_id WHERE (? = '' OR u.name = ?)
		ORDER BY 1, 3, 2`
	rows, err := s.db.QueryContext(ctx, s.q(query), user, user, user, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Reservation
	for rows.Next() {
		var (
			r       Reservation
			kind    string
			created int64
		)
		if err := rows.Scan(&kind, &r.Name, &r.User, &created); err != nil {
			return nil, err
		}
		r.Kind = ReservationKind(kind)
		r.CreatedAt = time.UnixMilli(created).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// AddDomain implements Store.
func (s *sqlStore) AddDomain(ctx context.Context, d Domain) (Domain, error) {
	d.Hostname = strings.ToLower(strings.TrimSuffix(d.Hostname, "."))
	if d.Hostname == "" || d.Token == "" {
		return Domain{}, errors.New("store: a domain needs a hostname and a token")
	}
	d.CreatedAt = s.now().Truncate(time.Millisecond).UTC()
	d.VerifiedAt, d.CheckedAt = time.Time{}, time.Time{}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		uid, err := s.userID(ctx, tx, d.User)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO domains (hostname, user_id, token, created_at) VALUES (?, ?, ?, ?)`), d.Hostname, uid, d.Token, d.CreatedAt.UnixMilli())
		if err != nil && s.d.isUnique(err) {
			return fmt.Errorf("domain %s: %w", d.Hostname, ErrExists)
		}
		return err
	})
	return d, err
}

const domainCols = `d.hostname, u.name, d.token, d.created_at, d.verified_at, d.checked_at`

func scanDomain(sc interface{ Scan(...any) error }) (Domain, error) {
	var (
		d                 Domain
		created           int64
		verified, checked sql.NullInt64
	)
	if err := sc.Scan(&d.Hostname, &d.User, &d.Token, &created, &verified, &checked); err != nil {
		return d, err
	}
	d.CreatedAt = time.UnixMilli(created).UTC()
	d.VerifiedAt, d.CheckedAt = fromMS(verified), fromMS(checked)
	return d, nil
}

// GetDomain implements Store.
func (s *sqlStore) GetDomain(ctx context.Context, hostname string) (Domain, error) {
	hostname = strings.ToLower(strings.TrimSuffix(hostname, "."))
	d, err := scanDomain(s.db.QueryRowContext(ctx, s.q(`SELECT `+domainCols+` FROM domains d JOIN users u ON u.id = d.user_id WHERE d.hostname = ?`), hostname))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("domain %s: %w", hostname, ErrNotFound)
	}
	return d, err
}

// ListDomains implements Store.
func (s *sqlStore) ListDomains(ctx context.Context, user string) ([]Domain, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+domainCols+` FROM domains d JOIN users u ON u.id = d.user_id WHERE (? = '' OR u.name = ?) ORDER BY d.hostname`), user, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Domain
	for rows.Next() {
		d, err := scanDomain(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// SetDomainVerified implements Store.
func (s *sqlStore) SetDomainVerified(ctx context.Context, hostname string, verified bool, at time.Time) error {
	hostname = strings.ToLower(strings.TrimSuffix(hostname, "."))
	if verified {
		res, err := s.exec(ctx, `UPDATE domains SET verified_at = COALESCE(verified_at, ?), checked_at = ? WHERE hostname = ?`, at.UnixMilli(), at.UnixMilli(), hostname)
		if err != nil {
			return err
		}
		return mustAffect(res, fmt.Errorf("domain %s: %w", hostname, ErrNotFound))
	}
	return s.changeTx(ctx, func(tx *sql.Tx) error {
		var was sql.NullInt64
		err := tx.QueryRowContext(ctx, s.q(`SELECT verified_at FROM domains WHERE hostname = ?`), hostname).Scan(&was)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("domain %s: %w", hostname, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE domains SET verified_at = NULL, checked_at = ? WHERE hostname = ?`), at.UnixMilli(), hostname); err != nil {
			return err
		}
		if !was.Valid {
			return nil
		}
		// Tunnels that serve it stop: the domain is no longer proven.
		return s.logChange(ctx, tx, ChangeDomainChanged, hostname)
	})
}

// RemoveDomain implements Store.
func (s *sqlStore) RemoveDomain(ctx context.Context, hostname string) error {
	hostname = strings.ToLower(strings.TrimSuffix(hostname, "."))
	return s.changeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM domains WHERE hostname = ?`), hostname)
		if err != nil {
			return err
		}
		if err := mustAffect(res, fmt.Errorf("domain %s: %w", hostname, ErrNotFound)); err != nil {
			return err
		}
		return s.logChange(ctx, tx, ChangeDomainRemoved, hostname)
	})
}

// LastChange implements Store.
func (s *sqlStore) LastChange(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT MAX(seq) FROM changes`).Scan(&seq)
	return seq.Int64, err
}

// ChangesSince implements Store.
func (s *sqlStore) ChangesSince(ctx context.Context, after int64, limit int) ([]Change, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT seq, kind, subject, at FROM changes WHERE seq > ? ORDER BY seq LIMIT ?`), after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var (
			c    Change
			kind string
			at   int64
		)
		if err := rows.Scan(&c.Seq, &kind, &c.Subject, &at); err != nil {
			return nil, err
		}
		c.Kind = ChangeKind(kind)
		c.At = time.UnixMilli(at).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// Ping implements Store.
func (s *sqlStore) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Backend implements Store.
func (s *sqlStore) Backend() string { return s.d.name }

// Close implements Store.
func (s *sqlStore) Close() error {
	if s.closeExtra != nil {
		s.closeExtra()
	}
	return s.db.Close()
}

// ValidateUserName checks a user name: 1-64 characters of lowercase
// letters, digits and . _ - @ +, so that an e-mail address or a DNS name
// from a certificate can serve as one.
func ValidateUserName(name string) error {
	if name == "" {
		return errors.New("user name is empty")
	}
	if len(name) > 64 {
		return fmt.Errorf("user name %q is longer than 64 characters", name[:64]+"...")
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', strings.ContainsRune("._-@+", c):
		case c >= 'A' && c <= 'Z':
			return fmt.Errorf("user name %q has uppercase letters; use %q", name, strings.ToLower(name))
		default:
			return fmt.Errorf("user name %q has the character %q; only a-z, 0-9 and . _ - @ + are allowed", name, c)
		}
	}
	return nil
}

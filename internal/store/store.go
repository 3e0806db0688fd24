// Package store keeps porthole's durable state: users and their limits,
// API keys (as hashes only), revoked tokens, reserved subdomains and TCP
// ports, custom domains with their verification state, and a change log
// through which servers learn of revocations made by other processes. It
// owns the schema and its migrations for SQLite and PostgreSQL; what the
// rows mean for authentication and authorization is package auth's
// business.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Errors a Store returns, wrapped with detail; test them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrSchemaTooNew means the database was migrated by a newer porthole.
	ErrSchemaTooNew = errors.New("database schema is newer than this porthole")
)

// Limits are a user's own limits. A nil field means the server-wide
// default applies.
type Limits struct {
	MaxTunnels              *int
	MaxSessions             *int
	RequestsPerSecond       *float64
	Burst                   *int
	BandwidthBytesPerSecond *int64
	MaxConnectionsPerTunnel *int
}

// User is an account that credentials act for.
type User struct {
	Name      string
	CreatedAt time.Time
	Limits    Limits
}

// APIKey describes a stored key; the key itself is never stored.
type APIKey struct {
	// ID names the key in lists, logs and revocations.
	ID         string
	User       string
	Name       string
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	LastUsedAt time.Time // zero: never used
	RevokedAt  time.Time // zero: not revoked
}

// NewAPIKey is what CreateAPIKey stores.
type NewAPIKey struct {
	ID        string
	User      string
	Name      string
	Hash      []byte // SHA-256 of the key
	ExpiresAt time.Time
}

// Reservation gives one user a subdomain or a TCP port.
type Reservation struct {
	Kind      ReservationKind
	Name      string // the subdomain, or the port in decimal
	User      string
	CreatedAt time.Time
}

// ReservationKind tells subdomains from ports.
type ReservationKind string

const (
	ReservedSubdomain ReservationKind = "subdomain"
	ReservedPort      ReservationKind = "port"
)

// Domain is a custom hostname a user may bind once its DNS TXT record
// has been seen.
type Domain struct {
	Hostname   string
	User       string
	Token      string // expected in the TXT record
	CreatedAt  time.Time
	VerifiedAt time.Time // zero: not verified
	CheckedAt  time.Time // last DNS check, successful or not
}

// Verified reports whether d may be bound.
func (d Domain) Verified() bool { return !d.VerifiedAt.IsZero() }

// ChangeKind says what a Change did.
type ChangeKind string

const (
	ChangeKeyRevoked    ChangeKind = "key_revoked"    // Subject: API key id
	ChangeUserDeleted   ChangeKind = "user_deleted"   // Subject: user name
	ChangeTokenRevoked  ChangeKind = "token_revoked"  // Subject: token id (jti)
	ChangeDomainRemoved ChangeKind = "domain_removed" // Subject: hostname
	// ChangeDomainChanged: the domain lost its verification (its owner
	// may no longer serve it). Subject: hostname.
	ChangeDomainChanged ChangeKind = "domain_changed"
	ChangeCertRevoked   ChangeKind = "cert_revoked" // Subject: "serial:HEX" or "sha256:HEX"
	// ChangeTokenCutoff: tokens issued before a time were revoked.
	// Subject: CutoffSubject(issuer, user).
	ChangeTokenCutoff ChangeKind = "token_cutoff"
)

// CutoffSubject is the change log subject of a token cut-off.
func CutoffSubject(issuer, user string) string { return issuer + "\n" + user }

// ParseCutoffSubject splits what CutoffSubject made.
func ParseCutoffSubject(s string) (issuer, user string) {
	issuer, user, _ = strings.Cut(s, "\n")
	return issuer, user
}

// CertRevocation is a revoked client certificate.
type CertRevocation struct {
	// Ref is "serial:HEX" (the serial number, lowercase hex) or
	// "sha256:HEX" (the SHA-256 fingerprint of the certificate's DER).
	Ref       string
	User      string // for the record
	RevokedAt time.Time
	ExpiresAt time.Time // zero: kept for good
}

// Change is one entry of the change log. Seq rises with every entry, in
// commit order, so a reader that remembers the last Seq it saw misses
// nothing.
type Change struct {
	Seq     int64
	Kind    ChangeKind
	Subject string
	At      time.Time
}

// Store is porthole's durable state. Implementations are safe for
// concurrent use, and for use by several processes on the same database
// (a server and the admin command).
type Store interface {
	CreateUser(ctx context.Context, name string) (User, error)
	GetUser(ctx context.Context, name string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// DeleteUser removes the user with their keys, reservations and
	// domains, and logs ChangeUserDeleted.
	DeleteUser(ctx context.Context, name string) error
	// SetUserLimits replaces the user's limits.
	SetUserLimits(ctx context.Context, name string, l Limits) error

	CreateAPIKey(ctx context.Context, k NewAPIKey) (APIKey, error)
	// APIKeyByHash finds a key by the hash of its secret, revoked and
	// expired ones included; the caller decides. It returns the stored hash
	// too, for a constant-time comparison.
	APIKeyByHash(ctx context.Context, hash []byte) (APIKey, []byte, error)
	APIKeyByID(ctx context.Context, id string) (APIKey, error)
	// ListAPIKeys lists a user's keys, or everyone's when user is "".
	ListAPIKeys(ctx context.Context, user string) ([]APIKey, error)
	// RevokeAPIKey marks the key revoked and logs ChangeKeyRevoked.
	// Revoking a revoked key is not an error.
	RevokeAPIKey(ctx context.Context, id string, at time.Time) error
	// TouchAPIKey records a use; it skips the write when the stored time
	// is less than a minute old, so a busy key costs few writes.
	TouchAPIKey(ctx context.Context, id string, at time.Time) error

	// RevokeToken records a token id (its jti, or "sha256:HEX" of a token
	// without one) as revoked and logs ChangeTokenRevoked. The record is
	// kept until expires, the token's own expiry (zero: for good);
	// revoking again keeps the later expiry.
	RevokeToken(ctx context.Context, jti, user string, expires time.Time) error
	// TokenRevoked reports whether any of ids is revoked.
	TokenRevoked(ctx context.Context, ids ...string) (bool, error)
	// SetTokenCutoff revokes the tokens of issuer issued before before,
	// for user, or for every user when user is ""; a later cut-off for
	// the same pair replaces an earlier one, never the other way round.
	// It logs ChangeTokenCutoff. The record is kept for good.
	SetTokenCutoff(ctx context.Context, issuer, user string, before time.Time) error
	// TokenCutoff returns the cut-off that applies to user's tokens from
	// issuer: the later of the user's own and the issuer-wide one (zero:
	// none). With user "", only the issuer-wide one.
	TokenCutoff(ctx context.Context, issuer, user string) (time.Time, error)

	// RevokeCert records a client certificate as revoked, kept until
	// c.ExpiresAt (the certificate's NotAfter; zero: for good), and logs
	// ChangeCertRevoked.
	RevokeCert(ctx context.Context, c CertRevocation) error
	// CertRevoked reports whether any of refs is revoked.
	CertRevoked(ctx context.Context, refs ...string) (bool, error)
	ListCertRevocations(ctx context.Context) ([]CertRevocation, error)

	Reserve(ctx context.Context, r Reservation) error
	Unreserve(ctx context.Context, kind ReservationKind, name string) error
	// ReservationOwner returns who holds the reservation, or ErrNotFound.
	ReservationOwner(ctx context.Context, kind ReservationKind, name string) (string, error)
	// ListReservations lists a user's reservations, or all when user is "".
	ListReservations(ctx context.Context, user string) ([]Reservation, error)

	AddDomain(ctx context.Context, d Domain) (Domain, error)
	GetDomain(ctx context.Context, hostname string) (Domain, error)
	ListDomains(ctx context.Context, user string) ([]Domain, error)
	// SetDomainVerified records a DNS check: verified keeps (or sets)
	// VerifiedAt, not verified clears it; CheckedAt becomes at. Clearing
	// it from a verified domain logs ChangeDomainChanged.
	SetDomainVerified(ctx context.Context, hostname string, verified bool, at time.Time) error
	// RemoveDomain deletes the domain and logs ChangeDomainRemoved.
	RemoveDomain(ctx context.Context, hostname string) error

	// LastChange is the Seq of the newest change log entry (0: none).
	LastChange(ctx context.Context) (int64, error)
	// ChangesSince lists up to limit entries with Seq > after, oldest
	// first.
	ChangesSince(ctx context.Context, after int64, limit int) ([]Change, error)

	// SchemaVersion is the database's migration version.
	SchemaVersion(ctx context.Context) (int, error)
	Ping(ctx context.Context) error
	// Backend names the implementation: "sqlite" or "postgres".
	Backend() string
	Close() error
}

// Notifier is implemented by stores that can announce changes as they
// commit (PostgreSQL's LISTEN/NOTIFY), so a watcher need not wait for its
// next poll.
type Notifier interface {
	// Notify sends on the returned channel (without blocking, coalescing)
	// whenever a change may have been logged, until ctx ends.
	Notify(ctx context.Context) <-chan struct{}
}

// DefaultFile is the SQLite database's name inside the data directory.
const DefaultFile = "porthole.db"

// Open opens (and migrates) the database named by dbURL: "sqlite:PATH",
// "postgres://..." or "postgresql://...". An empty dbURL means the SQLite
// file DefaultFile in dataDir, which is created if needed.
func Open(ctx context.Context, dbURL, dataDir string) (Store, error) {
	switch {
	case dbURL == "":
		if dataDir == "" {
			return nil, errors.New("store: neither a database URL nor a data directory is set")
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		return OpenSQLite(ctx, filepath.Join(dataDir, DefaultFile))
	case strings.HasPrefix(dbURL, "sqlite:"):
		path := strings.TrimPrefix(dbURL, "sqlite:")
		// sqlite:///abs/path and sqlite://rel/path are accepted as well.
		path = strings.TrimPrefix(path, "//")
		if path == "" {
			return nil, errors.New("database: sqlite: needs a file path, e.g. sqlite:/var/lib/porthole/porthole.db")
		}
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("database directory: %w", err)
			}
		}
		return OpenSQLite(ctx, path)
	case strings.HasPrefix(dbURL, "postgres://"), strings.HasPrefix(dbURL, "postgresql://"):
		return OpenPostgres(ctx, dbURL)
	}
	return nil, fmt.Errorf("database %q: want sqlite:PATH or postgres://USER:PASSWORD@HOST/DB", Redact(dbURL))
}

// Redact returns dbURL with any password replaced, for messages and logs.
func Redact(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		if strings.Contains(dbURL, "@") || strings.Contains(dbURL, "password") {
			return "(unparsable database URL)"
		}
		return dbURL
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"time"

	"github.com/porthole/porthole/internal/store"
)

// Method names how an identity was established.
type Method string

const (
	MethodNone   Method = "none" // --no-auth
	MethodAPIKey Method = "api_key"
	MethodToken  Method = "token"
	MethodCert   Method = "client_cert"
)

// Identity is who a session acts for.
type Identity struct {
	User   string
	Method Method
	// CredentialID names the credential without revealing it (an API key's
	// id, a token's jti, a certificate's serial), for logs and revocation.
	CredentialID string
	// Scope, when not nil, restricts the names this credential may bind,
	// of every kind (from a token's claims).
	Scope *Scope
	// ExpiresAt is when the credential stops being valid (zero: never).
	ExpiresAt time.Time
	// RevocationIDs are further names the credential is revoked by,
	// besides CredentialID: a certificate's serial and fingerprint, a
	// token's hash. They are not for logs.
	RevocationIDs []string
	// Issuer and IssuedAt (tokens): the iss claim and the iat claim
	// (zero when absent), for cut-offs of the tokens issued before a
	// time.
	Issuer   string
	IssuedAt time.Time
	// Limits are the user's own limits from the store, read when the
	// session authenticated; a nil field means the server-wide default.
	Limits store.Limits
}

// RevokedBy reports whether revoking credentialID revokes this identity.
func (id *Identity) RevokedBy(credentialID string) bool {
	return credentialID != "" && (id.CredentialID == credentialID || slices.Contains(id.RevocationIDs, credentialID))
}

// IssuedBefore reports whether a token identity was issued before t:
// tokens carry iat to the second, so "before t" means before t rounded up
// to a whole second, and a token without iat counts as issued before any
// cut-off.
func (id *Identity) IssuedBefore(t time.Time) bool {
	if t.IsZero() {
		return false
	}
	return id.IssuedAt.IsZero() || id.IssuedAt.Before(ceilSecond(t))
}

func ceilSecond(t time.Time) time.Time {
	if tr := t.Truncate(time.Second); !tr.Equal(t) {
		return tr.Add(time.Second)
	}
	return t
}

// Anonymous reports whether the identity carries no user.
func (id *Identity) Anonymous() bool { return id.User == "" }

// Credentials are what a client presented.
type Credentials struct {
	APIKey     string
	Token      string
	PeerCerts  []*x509.Certificate // verified chain's leaf first, from TLS
	RemoteAddr string
}

// Empty reports whether no credential was presented.
func (c Credentials) Empty() bool {
	return c.APIKey == "" && c.Token == "" && len(c.PeerCerts) == 0
}

// Authenticator resolves credentials to an identity.
type Authenticator interface {
	// Authenticate returns the identity for c, or an error whose message
	// the client is shown (a *protocol.Error to choose the code).
	// Revocation of a live session's credential is pushed to the server
	// with Server.Revoke, not polled per session.
	Authenticate(ctx context.Context, c Credentials) (*Identity, error)
}

// ErrNoCredentials is returned when a server requires credentials and none
// were presented.
// A client certificate that the server's client CA did not sign is not
// even sent by Go's TLS client, so the hint names that case too.
var ErrNoCredentials = errors.New("this server requires a credential: pass --api-key, --token or --cert/--key (a client certificate counts only when the server's client CA signed it)")

// Open accepts everyone as an anonymous identity: the server's --no-auth mode.
type Open struct{}

// Authenticate implements Authenticator.
func (Open) Authenticate(ctx context.Context, c Credentials) (*Identity, error) {
	return &Identity{Method: MethodNone}, nil
}

// APIKeyPrefix starts every API key, so that keys are recognizable in
// configuration files and by secret scanners, and told apart from tokens.
const APIKeyPrefix = "phk_"

// LooksLikeAPIKey reports whether s has the API key form.
func LooksLikeAPIKey(s string) bool {
	return len(s) > len(APIKeyPrefix) && s[:len(APIKeyPrefix)] == APIKeyPrefix
}

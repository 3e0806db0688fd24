package auth

import (
	"context"
	"crypto/x509"
	"errors"
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
	// Limits are the user's own limits from the store, read when the
	// session authenticated; a nil field means the server-wide default.
	Limits store.Limits
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

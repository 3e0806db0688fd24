package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/store"
)

// Options are what a Service is built from besides its Config.
type Options struct {
	Store store.Store
	// DataDir holds the token signing key unless Config.SigningKeyFile
	// names another place.
	DataDir string
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service authenticates tunnel clients against the store: API keys,
// tokens (its own and external issuers') and client certificates. It
// implements Authenticator.
type Service struct {
	cfg     Config
	st      store.Store
	log     *slog.Logger
	now     func() time.Time
	key     *SigningKey
	issuers map[string]*verifier
	thr     *throttle
	// touching bounds the background writes that record key use.
	touching chan struct{}
}

// touch records a key's use in the background: it is a convenience, and a
// database busy with an admin's write must not delay or refuse a valid
// key for it. Uses beyond a few concurrent writes are not recorded.
func (s *Service) touch(id string, now time.Time) {
	select {
	case s.touching <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-s.touching }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.st.TouchAPIKey(ctx, id, now); err != nil {
			s.log.Debug("could not record API key use", "key_id", id, "err", err)
		}
	}()
}

// SigningKeyPath is where cfg keeps the token signing key.
func SigningKeyPath(cfg Config, dataDir string) string {
	if cfg.SigningKeyFile != "" {
		return cfg.SigningKeyFile
	}
	return filepath.Join(dataDir, SigningKeyFile)
}

// New builds a Service, creating the token signing key in the data
// directory if it does not exist yet and loading external issuers' keys.
func New(cfg Config, o Options) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if o.Store == nil {
		return nil, errors.New("auth: a store is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	key, err := LoadOrCreateSigningKey(SigningKeyPath(cfg, o.DataDir))
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, st: o.Store, log: o.Logger, now: o.Now, key: key,
		issuers:  map[string]*verifier{cfg.TokenIssuer: ownVerifier(cfg.TokenIssuer, key)},
		thr:      newThrottle(cfg.FailedAuthPerMinute, cfg.FailedAuthBurst),
		touching: make(chan struct{}, 4),
	}
	for _, ic := range cfg.Issuers {
		v, err := newVerifier(ic)
		if err != nil {
			return nil, err
		}
		s.issuers[ic.Issuer] = v
	}
	return s, nil
}

// Store returns the store the service reads.
func (s *Service) Store() store.Store { return s.st }

// Config returns the service's config with defaults filled in.
func (s *Service) Config() Config { return s.cfg }

func unauthorized(format string, args ...any) error {
	return protocol.Err(protocol.CodeUnauthorized, true, format, args...)
}

func (s *Service) internalErr(what string, err error) error {
	return internalError(s.log, what, err)
}

// Authenticate implements Authenticator. An API key wins over a token,
// and both over a client certificate, when several are presented.
func (s *Service) Authenticate(ctx context.Context, c Credentials) (*Identity, error) {
	now := s.now()
	if wait, blocked := s.thr.blocked(c.RemoteAddr, now); blocked {
		secs := int64(wait/time.Second) + 1
		e := protocol.Err(protocol.CodeRateLimited, false, "too many failed authentication attempts from your address; try again in %ds", secs)
		e.RetryAfterMillis = secs * 1000
		return nil, e
	}
	var (
		id  *Identity
		err error
	)
	switch {
	case c.APIKey != "":
		id, err = s.authAPIKey(ctx, c.APIKey, now)
	case c.Token != "":
		id, err = s.authToken(ctx, c.Token, now)
	case len(c.PeerCerts) > 0:
		id, err = s.authCert(ctx, c, now)
	default:
		return nil, ErrNoCredentials
	}
	if err != nil {
		var perr *protocol.Error
		if errors.As(err, &perr) && perr.Code == protocol.CodeUnauthorized {
			s.thr.failed(c.RemoteAddr, now)
		}
		return nil, err
	}
	return id, nil
}

func (s *Service) authAPIKey(ctx context.Context, key string, now time.Time) (*Identity, error) {
	if !wellFormedAPIKey(key) {
		return nil, unauthorized("the API key is malformed (want %s followed by 43 letters and digits, as 'porthole admin keys create' prints it)", APIKeyPrefix)
	}
	h := HashAPIKey(key)
	k, stored, err := s.st.APIKeyByHash(ctx, h)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !hashesEqual(stored, h)) {
		return nil, unauthorized("unknown API key")
	}
	if err != nil {
		return nil, s.internalErr("API key", err)
	}
	if !k.RevokedAt.IsZero() {
		return nil, unauthorized("API key %s was revoked at %s", k.ID, k.RevokedAt.Format(time.RFC3339))
	}
	if !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
		return nil, unauthorized("API key %s expired at %s", k.ID, k.ExpiresAt.Format(time.RFC3339))
	}
	u, err := s.st.GetUser(ctx, k.User)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, unauthorized("API key %s belongs to a user who no longer exists", k.ID)
		}
		return nil, s.internalErr("API key", err)
	}
	s.touch(k.ID, now)
	return &Identity{User: u.Name, Method: MethodAPIKey, CredentialID: k.ID, ExpiresAt: k.ExpiresAt, Limits: u.Limits}, nil
}

// tokenHeader is a token's first part; it is read before verification
// only to choose the issuer and explain refusals.
type tokenHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

func peek(raw string) (tokenHeader, string, error) {
	var h tokenHeader
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return h, "", errors.New("not three dot-separated parts")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &h) != nil {
		return h, "", errors.New("bad header")
	}
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Iss any `json:"iss"`
	}
	if err != nil || json.Unmarshal(cb, &claims) != nil {
		return h, "", errors.New("bad claims")
	}
	iss, _ := claims.Iss.(string)
	return h, iss, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func (s *Service) authToken(ctx context.Context, raw string, now time.Time) (*Identity, error) {
	hdr, iss, err := peek(raw)
	if err != nil {
		return nil, unauthorized("the token is malformed: %v", err)
	}
	v := s.issuers[iss]
	if v == nil {
		return nil, unauthorized("tokens from issuer %q are not accepted by this server", clip(iss))
	}
	if !slices.Contains(v.algs, hdr.Alg) {
		return nil, unauthorized("token algorithm %q is not accepted from issuer %s (allowed: %s)", clip(hdr.Alg), v.name, strings.Join(v.algs, ", "))
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(raw, claims, v.keyFunc,
		// Base64 leaves spare bits in a part's last character: without
		// strict decoding a signature has several spellings that verify,
		// each with its own hash, and a token revoked by its hash came
		// back under another.
		jwt.WithStrictDecoding(),
		jwt.WithValidMethods(v.algs),
		jwt.WithIssuer(v.issuer),
		jwt.WithAudience(v.audience...),
		jwt.WithLeeway(s.cfg.Leeway.D()),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return nil, tokenError(err, claims)
	}
	user, _ := claims[v.userClaim].(string)
	user = strings.ToLower(user)
	if user == "" {
		return nil, unauthorized("the token has no %q claim naming the user", v.userClaim)
	}
	if err := store.ValidateUserName(user); err != nil {
		return nil, unauthorized("the token's %s claim: %v", v.userClaim, err)
	}
	scope, err := readScope(claims, v.scope)
	if err != nil {
		return nil, unauthorized("%v", err)
	}
	jti, _ := claims["jti"].(string)
	credID := "jwt:" + jti
	// A token without a jti is revoked by its hash.
	revID := jti
	var revIDs []string
	if jti == "" {
		revID = TokenHashRef(raw)
		revIDs = []string{"jwt:" + revID}
		sum := sha256.Sum256([]byte(raw))
		credID = "jwt:" + v.name + ":" + hex.EncodeToString(sum[:8])
	}
	revoked, err := s.st.TokenRevoked(ctx, revID)
	if err != nil {
		return nil, s.internalErr("token", err)
	}
	if revoked {
		if jti == "" {
			return nil, unauthorized("the token was revoked")
		}
		return nil, unauthorized("the token %s was revoked", clip(jti))
	}
	var exp, iat time.Time
	if e, err := claims.GetExpirationTime(); err == nil && e != nil {
		exp = e.Time
	}
	if i, err := claims.GetIssuedAt(); err == nil && i != nil {
		iat = i.Time
	}
	id := &Identity{User: user, Method: MethodToken, CredentialID: credID, Scope: scope, ExpiresAt: exp,
		RevocationIDs: revIDs, Issuer: v.issuer, IssuedAt: iat}
	cutoff, err := s.st.TokenCutoff(ctx, v.issuer, user)
	if err != nil {
		return nil, s.internalErr("token", err)
	}
	if id.IssuedBefore(cutoff) {
		return nil, unauthorized("tokens issued for %s by %s before %s were revoked; get a new one", user, v.name, cutoff.UTC().Format(time.RFC3339))
	}
	u, err := s.st.GetUser(ctx, user)
	switch {
	case err == nil:
		id.Limits = u.Limits
	case errors.Is(err, store.ErrNotFound) && v.allowUsers:
	case errors.Is(err, store.ErrNotFound):
		return nil, unauthorized("the token names user %q, who does not exist on this server", user)
	default:
		return nil, s.internalErr("token", err)
	}
	return id, nil
}

// tokenError explains why a token was refused, without quoting it.
func tokenError(err error, claims jwt.MapClaims) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		if e, _ := claims.GetExpirationTime(); e != nil {
			return unauthorized("the token expired at %s", e.Time.UTC().Format(time.RFC3339))
		}
		return unauthorized("the token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		if n, _ := claims.GetNotBefore(); n != nil {
			return unauthorized("the token is not valid before %s", n.Time.UTC().Format(time.RFC3339))
		}
		return unauthorized("the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return unauthorized("the token has no expiry (exp claim); tokens must expire")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return unauthorized("the token's audience (aud) is not one this server accepts")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// The key lookup's own reason follows jwt's prefix.
		msg := err.Error()
		if i := strings.LastIndex(msg, "keyfunc: "); i >= 0 {
			msg = msg[i+len("keyfunc: "):]
		}
		return unauthorized("the token cannot be verified: %s", msg)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return unauthorized("the token's signature does not verify (it was altered or signed with another key)")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return unauthorized("the token is malformed")
	}
	return unauthorized("the token is invalid: %v", err)
}

func (s *Service) authCert(ctx context.Context, c Credentials, now time.Time) (*Identity, error) {
	leaf := c.PeerCerts[0]
	if now.After(leaf.NotAfter) {
		return nil, unauthorized("the client certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	user, err := certUser(s.cfg.ClientCert, leaf)
	if err != nil {
		return nil, unauthorized("%v", err)
	}
	if err := store.ValidateUserName(user); err != nil {
		return nil, unauthorized("the client certificate's user: %v", err)
	}
	refs := CertRefs(leaf)
	revoked, err := s.st.CertRevoked(ctx, refs...)
	if err != nil {
		return nil, s.internalErr("client certificate", err)
	}
	if revoked {
		return nil, unauthorized("the client certificate (serial %x) was revoked", leaf.SerialNumber)
	}
	id := &Identity{User: user, Method: MethodCert, CredentialID: certID(leaf), ExpiresAt: leaf.NotAfter,
		RevocationIDs: []string{"cert:" + refs[0], "cert:" + refs[1]}}
	u, err := s.st.GetUser(ctx, user)
	switch {
	case err == nil:
		id.Limits = u.Limits
	case errors.Is(err, store.ErrNotFound) && s.cfg.ClientCert.AllowUnknownUsers:
	case errors.Is(err, store.ErrNotFound):
		return nil, unauthorized("the client certificate names user %q, who does not exist on this server", user)
	default:
		return nil, s.internalErr("client certificate", err)
	}
	return id, nil
}

// IssueToken signs a token for an existing user with the server's key;
// scope, when not nil, restricts it.
func (s *Service) IssueToken(ctx context.Context, user string, ttl time.Duration, scope *Scope) (IssuedToken, error) {
	return IssueToken(ctx, s.st, s.key, s.cfg, user, ttl, scope, s.now())
}

// IssueToken signs a token for user, who must exist in st.
func IssueToken(ctx context.Context, st store.Store, key *SigningKey, cfg Config, user string, ttl time.Duration, scope *Scope, now time.Time) (IssuedToken, error) {
	cfg = cfg.withDefaults()
	if _, err := st.GetUser(ctx, user); err != nil {
		return IssuedToken{}, err
	}
	return key.IssueToken(cfg.TokenIssuer, user, ttl, scope, now)
}

// compile-time check
var _ Authenticator = (*Service)(nil)

// TokenHashRef is the id a token without a jti is revoked by: the hash of
// its canonical spelling (each part's base64 without spare bits, the only
// one Authenticate accepts), so that a revocation made from another
// spelling of the same token still matches.
func TokenHashRef(raw string) string {
	parts := strings.Split(raw, ".")
	for i, p := range parts {
		if b, err := base64.RawURLEncoding.DecodeString(p); err == nil {
			parts[i] = base64.RawURLEncoding.EncodeToString(b)
		}
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, ".")))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// TokenRevocation reads what `porthole admin tokens revoke` needs from a
// token, without verifying it (revoking a forged token does no harm): the
// id it is revoked by (its jti, or its hash when it has none), its user
// claim and its expiry, so that the record is kept exactly as long as
// the token is valid.
func TokenRevocation(raw string) (id, sub string, exp time.Time, err error) {
	var claims jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &claims); err != nil {
		return "", "", time.Time{}, fmt.Errorf("not a token: %w", err)
	}
	id, _ = claims["jti"].(string)
	if id == "" {
		id = TokenHashRef(raw)
	}
	sub, _ = claims["sub"].(string)
	if e, err := claims.GetExpirationTime(); err == nil && e != nil {
		exp = e.Time
	}
	return id, sub, exp, nil
}

package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/store"
)

func openStore(t testing.TB) (store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// refusedWith checks that err is a final unauthorized refusal whose
// message contains want.
func refusedWith(t *testing.T, err error, want string) {
	t.Helper()
	var perr *protocol.Error
	if !errors.As(err, &perr) {
		t.Fatalf("error %v (%T) is not a protocol error; want %q", err, err, want)
	}
	if perr.Code != protocol.CodeUnauthorized || !perr.Final || !strings.Contains(perr.Message, want) {
		t.Fatalf("refusal %s/%v %q, want unauthorized final containing %q", perr.Code, perr.Final, perr.Message, want)
	}
}

func TestAPIKeyShape(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		key, id, hash := NewAPIKey()
		if !wellFormedAPIKey(key) || !LooksLikeAPIKey(key) || !IsKeyID(id) || len(hash) != 32 {
			t.Fatalf("key %q id %q", key, id)
		}
		if seen[key] {
			t.Fatal("duplicate key")
		}
		seen[key] = true
	}
	for _, bad := range []string{"phk_", "phk_abc", "phk_" + strings.Repeat("!", 43), "xyz_" + strings.Repeat("a", 43)} {
		if wellFormedAPIKey(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func newService(t testing.TB, cfg Config) (*Service, store.Store, string) {
	t.Helper()
	st, dir := openStore(t)
	svc, err := New(cfg, Options{Store: st, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return svc, st, dir
}

func TestAuthenticateAPIKey(t *testing.T) {
	svc, st, _ := newService(t, Config{})
	ctx := context.Background()
	_, err := st.CreateUser(ctx, "alice")
	must(t, err)
	must(t, st.SetUserLimits(ctx, "alice", store.Limits{MaxTunnels: ptr(2)}))
	key, id, hash := NewAPIKey()
	_, err = st.CreateAPIKey(ctx, store.NewAPIKey{ID: id, User: "alice", Hash: hash})
	must(t, err)

	ident, err := svc.Authenticate(ctx, Credentials{APIKey: key, RemoteAddr: "127.0.0.1:1"})
	must(t, err)
	if ident.User != "alice" || ident.Method != MethodAPIKey || ident.CredentialID != id || *ident.Limits.MaxTunnels != 2 {
		t.Fatalf("identity %+v", ident)
	}
	// The use is recorded in the background.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if k, _ := st.APIKeyByID(ctx, id); !k.LastUsedAt.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("last use not recorded")
		}
	}

	other, _, _ := NewAPIKey()
	_, err = svc.Authenticate(ctx, Credentials{APIKey: other})
	refusedWith(t, err, "unknown API key")
	_, err = svc.Authenticate(ctx, Credentials{APIKey: "phk_nope"})
	refusedWith(t, err, "malformed")

	exp, eid, ehash := NewAPIKey()
	_, err = st.CreateAPIKey(ctx, store.NewAPIKey{ID: eid, User: "alice", Hash: ehash, ExpiresAt: time.Now().Add(-time.Second)})
	must(t, err)
	_, err = svc.Authenticate(ctx, Credentials{APIKey: exp})
	refusedWith(t, err, "expired at")

	must(t, st.RevokeAPIKey(ctx, id, time.Now()))
	_, err = svc.Authenticate(ctx, Credentials{APIKey: key})
	refusedWith(t, err, "was revoked")
}

func ptr[T any](v T) *T { return &v }

func TestThrottle(t *testing.T) {
	cfg := Config{FailedAuthBurst: 2, FailedAuthPerMinute: 1}
	svc, _, _ := newService(t, cfg)
	ctx := context.Background()
	bad := Credentials{APIKey: "phk_bad", RemoteAddr: "192.0.2.1:5000"}
	for range 2 {
		_, err := svc.Authenticate(ctx, bad)
		refusedWith(t, err, "malformed")
	}
	_, err := svc.Authenticate(ctx, bad)
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeRateLimited || perr.Final || perr.RetryAfterMillis <= 0 {
		t.Fatalf("third failure: %v", err)
	}
	// Another address, and another port of... no: the same host on
	// another port is the same address.
	bad.RemoteAddr = "192.0.2.1:6000"
	if _, err := svc.Authenticate(ctx, bad); !errors.As(err, &perr) || perr.Code != protocol.CodeRateLimited {
		t.Fatalf("same host, other port: %v", err)
	}
	bad.RemoteAddr = "192.0.2.2:5000"
	_, err = svc.Authenticate(ctx, bad)
	refusedWith(t, err, "malformed")

	// Memory stays bounded.
	th := newThrottle(60, 1)
	th.max = 100
	now := time.Now()
	for i := range 1000 {
		th.failed(fmt.Sprintf("10.0.%d.%d:1", i/256, i%256), now)
	}
	if len(th.addr) > 100 {
		t.Fatalf("%d entries", len(th.addr))
	}
}

func TestSigningKeyCreatedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", SigningKeyFile)
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := LoadOrCreateSigningKey(path)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = k.KeyID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("key ids differ: %v", ids)
		}
	}
	fi, err := os.Stat(path)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsFor(iss, sub string, exp time.Time) jwt.MapClaims {
	return jwt.MapClaims{"iss": iss, "aud": "porthole", "sub": sub, "exp": exp.Unix(), "jti": fmt.Sprint(time.Now().UnixNano())}
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	must(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return p
}

func enc64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestTokens(t *testing.T) {
	dir := t.TempDir()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaPEM := writePEM(t, dir, "rsa.pem", "PUBLIC KEY", rsaDER)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecPoint, _ := ecKey.PublicKey.Bytes()
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "EC", "kid": "ec1", "crv": "P-256", "x": enc64(ecPoint[1:33]), "y": enc64(ecPoint[33:])},
		{"kty": "OKP", "kid": "ed1", "crv": "Ed25519", "x": enc64(edPub)},
	}})
	jwksFile := filepath.Join(dir, "jwks.json")
	must(t, os.WriteFile(jwksFile, jwks, 0o600))
	secret := "hs-secret-0123456789abcdef0123456789abcdef"

	cfg := Config{FailedAuthBurst: 1000, Issuers: []IssuerConfig{
		{Issuer: "hs", Audience: []string{"porthole"}, Algorithms: []string{"HS256"}, Secret: secret},
		{Issuer: "rs", Audience: []string{"porthole"}, Algorithms: []string{"RS256"}, PublicKeyFile: rsaPEM},
		{Issuer: "jwks", Audience: []string{"porthole"}, Algorithms: []string{"ES256", "EdDSA"}, JWKSFile: jwksFile, AllowUnknownUsers: true},
	}}
	svc, st, _ := newService(t, cfg)
	ctx := context.Background()
	for _, u := range []string{"alice", "bob"} {
		_, err := st.CreateUser(ctx, u)
		must(t, err)
	}
	auth := func(tok string) (*Identity, error) {
		return svc.Authenticate(ctx, Credentials{Token: tok, RemoteAddr: "127.0.0.1:1"})
	}
	hour := time.Now().Add(time.Hour)

	// The server's own tokens.
	own, err := svc.IssueToken(ctx, "alice", time.Hour, &Scope{Subdomains: []string{"web"}})
	must(t, err)
	id, err := auth(own.Token)
	must(t, err)
	if id.User != "alice" || id.Method != MethodToken || id.CredentialID != "jwt:"+own.ID || id.Scope == nil || len(id.Scope.Subdomains) != 1 || id.ExpiresAt.IsZero() {
		t.Fatalf("own token identity %+v", id)
	}
	if _, err := svc.IssueToken(ctx, "nobody", time.Hour, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("token for a missing user: %v", err)
	}
	// Within the leeway an expired token still passes; beyond it, not.
	old, _ := svc.key.IssueToken("porthole", "alice", time.Hour, nil, time.Now().Add(-time.Hour-10*time.Second))
	if _, err := auth(old.Token); err != nil {
		t.Fatalf("token expired 10s ago, leeway 30s: %v", err)
	}
	old, _ = svc.key.IssueToken("porthole", "alice", time.Hour, nil, time.Now().Add(-2*time.Hour))
	_, err = auth(old.Token)
	refusedWith(t, err, "expired at")
	must(t, st.RevokeToken(ctx, own.ID, "alice", own.ExpiresAt))
	_, err = auth(own.Token)
	refusedWith(t, err, "was revoked")

	cases := []struct {
		name, tok, want string
	}{
		{"hs ok", sign(t, jwt.SigningMethodHS256, []byte(secret), claimsFor("hs", "bob", hour), ""), ""},
		{"hs wrong secret", sign(t, jwt.SigningMethodHS256, []byte(secret+"x"), claimsFor("hs", "bob", hour), ""), "signature does not verify"},
		{"hs384 not allowed", sign(t, jwt.SigningMethodHS384, []byte(secret), claimsFor("hs", "bob", hour), ""), `algorithm "HS384" is not accepted`},
		{"rs ok", sign(t, jwt.SigningMethodRS256, rsaKey, claimsFor("rs", "alice", hour), ""), ""},
		// Algorithm confusion: the RSA public key used as an HMAC secret.
		{"rs confusion", sign(t, jwt.SigningMethodHS256, mustRead(t, rsaPEM), claimsFor("rs", "alice", hour), ""), `algorithm "HS256" is not accepted`},
		{"es via jwks", sign(t, jwt.SigningMethodES256, ecKey, claimsFor("jwks", "carol", hour), "ec1"), ""},
		{"ed via jwks", sign(t, jwt.SigningMethodEdDSA, edPriv, claimsFor("jwks", "carol", hour), "ed1"), ""},
		{"ed with the ec kid", sign(t, jwt.SigningMethodEdDSA, edPriv, claimsFor("jwks", "carol", hour), "ec1"), "does not fit"},
		{"unknown kid", sign(t, jwt.SigningMethodES256, ecKey, claimsFor("jwks", "carol", hour), "zz"), "not one of this issuer's keys"},
		{"unknown issuer", sign(t, jwt.SigningMethodHS256, []byte(secret), claimsFor("evil", "bob", hour), ""), `issuer "evil" are not accepted`},
		{"unknown user", sign(t, jwt.SigningMethodHS256, []byte(secret), claimsFor("hs", "mallory", hour), ""), `user "mallory", who does not exist`},
		{"no exp", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"iss": "hs", "aud": "porthole", "sub": "bob"}, ""), "no expiry"},
		{"wrong aud", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"iss": "hs", "aud": "other", "sub": "bob", "exp": hour.Unix()}, ""), "audience"},
		{"not yet", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"iss": "hs", "aud": "porthole", "sub": "bob", "exp": hour.Unix(), "nbf": time.Now().Add(10 * time.Minute).Unix()}, ""), "not valid before"},
		{"bad subdomains", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"iss": "hs", "aud": "porthole", "sub": "bob", "exp": hour.Unix(), "subdomains": "x"}, ""), "not a list"},
		{"none", enc64([]byte(`{"alg":"none"}`)) + "." + enc64([]byte(`{"iss":"hs","aud":"porthole","sub":"bob","exp":9999999999}`)) + ".", `algorithm "none" is not accepted`},
		{"garbage", "not.a.token", "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := auth(c.tok)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if id.User == "" || id.CredentialID == "" {
					t.Fatalf("identity %+v", id)
				}
				return
			}
			refusedWith(t, err, c.want)
		})
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}

func TestConfigValidate(t *testing.T) {
	good := IssuerConfig{Issuer: "x", Audience: []string{"a"}, Algorithms: []string{"RS256"}, PublicKeyFile: "k.pem"}
	cases := map[string]struct {
		mod  func(*Config)
		want string
	}{
		"none":           {func(c *Config) { c.Issuers[0].Algorithms = []string{"none"} }, `"none" is never accepted`},
		"hs with key":    {func(c *Config) { c.Issuers[0].Algorithms = []string{"HS256"} }, "needs a shared secret"},
		"rs with secret": {func(c *Config) { c.Issuers[0].PublicKeyFile = ""; c.Issuers[0].Secret = strings.Repeat("s", 32) }, "needs a public key"},
		"two sources":    {func(c *Config) { c.Issuers[0].JWKSFile = "j.json" }, "exactly one of"},
		"no aud":         {func(c *Config) { c.Issuers[0].Audience = nil }, "audience"},
		"short secret": {func(c *Config) {
			c.Issuers[0] = IssuerConfig{Issuer: "x", Audience: []string{"a"}, Algorithms: []string{"HS256"}, Secret: "short"}
		}, "shorter than 32"},
		"own issuer":  {func(c *Config) { c.Issuers[0].Issuer = "porthole" }, "own token_issuer"},
		"unknown alg": {func(c *Config) { c.Issuers[0].Algorithms = []string{"XX1"} }, "unknown algorithm"},
		"user_from":   {func(c *Config) { c.ClientCert.UserFrom = "serial" }, "user_from"},
		"resolver":    {func(c *Config) { c.DNSResolver = "nowhere" }, "dns_resolver"},
		"poll":        {func(c *Config) { c.RevocationPoll = config.Duration(10 * time.Second) }, "revocation_poll"},
	}
	c := Config{Issuers: []IssuerConfig{good}}
	if err := c.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, tc := range cases {
		c := Config{Issuers: []IssuerConfig{good}}
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func clientCert(t *testing.T, cn string, mod func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestClientCertificates(t *testing.T) {
	ctx := context.Background()
	spiffe, _ := url.Parse("spiffe://example.org/user/alice")
	cases := []struct {
		name string
		cc   CertConfig
		cert *x509.Certificate
		want string // user, or "!" + refusal text
	}{
		{"cn", CertConfig{}, clientCert(t, "Alice", nil), "alice"},
		{"cn unknown", CertConfig{}, clientCert(t, "mallory", nil), `!user "mallory", who does not exist`},
		{"cn unknown allowed", CertConfig{AllowUnknownUsers: true}, clientCert(t, "mallory", nil), "mallory"},
		{"no cn", CertConfig{}, clientCert(t, "", nil), "!no common name"},
		{"san dns", CertConfig{UserFrom: "san_dns"}, clientCert(t, "x", func(c *x509.Certificate) { c.DNSNames = []string{"alice"} }), "alice"},
		{"san email", CertConfig{UserFrom: "san_email", AllowUnknownUsers: true}, clientCert(t, "x", func(c *x509.Certificate) { c.EmailAddresses = []string{"Bob@example.org"} }), "bob@example.org"},
		{"san uri", CertConfig{UserFrom: "san_uri", URIPrefix: "spiffe://example.org/user/"}, clientCert(t, "x", func(c *x509.Certificate) { c.URIs = []*url.URL{spiffe} }), "alice"},
		{"expired", CertConfig{}, clientCert(t, "alice", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Minute) }), "!expired at"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc, st, _ := newService(t, Config{ClientCert: c.cc})
			_, err := st.CreateUser(ctx, "alice")
			must(t, err)
			id, err := svc.Authenticate(ctx, Credentials{PeerCerts: []*x509.Certificate{c.cert}})
			if strings.HasPrefix(c.want, "!") {
				refusedWith(t, err, c.want[1:])
				return
			}
			must(t, err)
			if id.User != c.want || id.Method != MethodCert || id.CredentialID != "cert:2a" {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}

type revocations struct {
	mu       sync.Mutex
	creds    []string
	users    []string
	matchers []func(*Identity) bool
	hosts    []string
	keeps    []func(string) bool
}

func (r *revocations) Revoke(id, reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.creds = append(r.creds, id)
	return 1
}

func (r *revocations) RevokeUser(user, reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.users = append(r.users, user)
	return 1
}

func (r *revocations) RevokeMatching(match func(*Identity) bool, reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.matchers = append(r.matchers, match)
	return 1
}

func (r *revocations) ReleaseHostname(host, reason string, keep func(string) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hosts = append(r.hosts, host)
	r.keeps = append(r.keeps, keep)
	return 1
}

func TestWatcher(t *testing.T) {
	ctx := context.Background()
	st, dir := openStore(t)
	// The admin command's handle, as from another process.
	other, err := store.Open(ctx, "", dir)
	must(t, err)
	defer other.Close()
	_, err = other.CreateUser(ctx, "alice")
	must(t, err)
	_, id, hash := NewAPIKey()
	_, err = other.CreateAPIKey(ctx, store.NewAPIKey{ID: id, User: "alice", Hash: hash})
	must(t, err)
	// A revocation from before the watcher started is not replayed.
	_, oldID, oldHash := NewAPIKey()
	_, err = other.CreateAPIKey(ctx, store.NewAPIKey{ID: oldID, User: "alice", Hash: oldHash})
	must(t, err)
	must(t, other.RevokeAPIKey(ctx, oldID, time.Now()))

	rv := &revocations{}
	w, err := NewWatcher(ctx, st, rv, 50*time.Millisecond, nil)
	must(t, err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.Run(wctx)

	must(t, other.RevokeAPIKey(ctx, id, time.Now()))
	must(t, other.RevokeToken(ctx, "jti-1", "alice", time.Now().Add(time.Hour)))
	must(t, other.DeleteUser(ctx, "alice"))
	deadline := time.Now().Add(2 * time.Second)
	for {
		rv.mu.Lock()
		done := len(rv.creds) == 2 && len(rv.users) == 1
		got := fmt.Sprint(rv.creds, rv.users)
		rv.mu.Unlock()
		if done {
			if got != fmt.Sprintf("[%s jwt:jti-1] [alice]", id) {
				t.Fatalf("revocations %s", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("revocations after 2s: %s", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SigningKeyFile is the default name of the server's token signing key in
// the data directory.
const SigningKeyFile = "token-signing-key.pem"

// SigningKey is the server's own Ed25519 key for the tokens that
// `porthole admin tokens issue` signs.
type SigningKey struct {
	priv ed25519.PrivateKey
	// KeyID identifies the key in a token's kid header, so that a key can
	// be replaced while tokens signed by the old one are refused clearly.
	KeyID string
}

// Public returns the verification key.
func (k *SigningKey) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

func keyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// LoadOrCreateSigningKey reads the PKCS#8 PEM key at path, creating it
// (mode 0600) when it does not exist. Two processes creating it at once
// agree on one key: the file appears complete, by a hard link, or not at
// all.
func LoadOrCreateSigningKey(path string) (*SigningKey, error) {
	if k, err := readSigningKey(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("token signing key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".signing-key-*")
	if err != nil {
		return nil, fmt.Errorf("token signing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("token signing key: %w", err)
	}
	return readSigningKey(path)
}

func readSigningKey(path string) (*SigningKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("token signing key %s: no PEM block", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("token signing key %s: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("token signing key %s: not an Ed25519 key", path)
	}
	return &SigningKey{priv: priv, KeyID: keyID(priv.Public().(ed25519.PublicKey))}, nil
}

// TokenClaims are what porthole reads from a token besides the
// registered claims.
type TokenClaims struct {
	jwt.RegisteredClaims
	// The token's scope (see Scope). A token with none of these claims
	// acts with its user's full rights; with any of them, it may bind
	// only what they grant.
	Subdomains []string `json:"subdomains,omitempty"`
	Hostnames  []string `json:"hostnames,omitempty"`
	TCP        bool     `json:"tcp,omitempty"`
	TCPPorts   []int    `json:"tcp_ports,omitempty"`
}

// IssuedToken describes a token IssueToken made.
type IssuedToken struct {
	Token     string
	ID        string // jti
	ExpiresAt time.Time
}

// IssueToken signs a token for user, valid for ttl from now, with the
// issuer (also the audience) iss. scope, when not nil, restricts it.
func (k *SigningKey) IssueToken(iss, user string, ttl time.Duration, scope *Scope, now time.Time) (IssuedToken, error) {
	if ttl <= 0 {
		return IssuedToken{}, errors.New("token lifetime must be positive")
	}
	var jti [16]byte
	rand.Read(jti[:])
	id := hex.EncodeToString(jti[:])
	now = now.Truncate(time.Second)
	exp := now.Add(ttl)
	claims := TokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    iss,
			Subject:   user,
			Audience:  jwt.ClaimStrings{iss},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        id,
		},
	}
	if scope != nil {
		if scope.Empty() {
			return IssuedToken{}, errors.New("a token's scope must grant something: a subdomain, a hostname or TCP")
		}
		claims.Subdomains, claims.Hostnames = scope.Subdomains, scope.Hostnames
		claims.TCP, claims.TCPPorts = scope.TCP, scope.TCPPorts
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = k.KeyID
	s, err := t.SignedString(k.priv)
	if err != nil {
		return IssuedToken{}, err
	}
	return IssuedToken{Token: s, ID: id, ExpiresAt: exp}, nil
}

// verifier checks the tokens of one issuer.
type verifier struct {
	name       string
	issuer     string
	audience   []string
	algs       []string
	userClaim  string
	scope      scopeClaims
	allowUsers bool
	// keys by kid; "" holds the key for tokens without a kid (a single
	// configured key).
	keys map[string]crypto.PublicKey
	hmac []byte
}

func ownVerifier(iss string, key *SigningKey) *verifier {
	return &verifier{
		name: "porthole", issuer: iss, audience: []string{iss}, algs: []string{"EdDSA"},
		userClaim: "sub", scope: defaultScopeClaims,
		keys: map[string]crypto.PublicKey{key.KeyID: key.Public()},
	}
}

// newVerifier loads an external issuer's key material.
func newVerifier(c IssuerConfig) (*verifier, error) {
	v := &verifier{
		name: c.Name, issuer: c.Issuer, audience: c.Audience, algs: c.Algorithms,
		userClaim: c.UserClaim, allowUsers: c.AllowUnknownUsers,
		scope: scopeClaims{subdomains: c.SubdomainsClaim, hostnames: c.HostnamesClaim, tcp: c.TCPClaim, tcpPorts: c.TCPPortsClaim},
		keys:  map[string]crypto.PublicKey{},
	}
	switch {
	case c.Secret != "":
		v.hmac = []byte(c.Secret)
	case c.SecretFile != "":
		b, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("issuer %s: secret_file: %w", c.Name, err)
		}
		v.hmac = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(v.hmac) < 32 {
			return nil, fmt.Errorf("issuer %s: secret_file %s holds fewer than 32 bytes; use a long random secret", c.Name, c.SecretFile)
		}
	case c.PublicKeyFile != "":
		b, err := os.ReadFile(c.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("issuer %s: public_key_file: %w", c.Name, err)
		}
		key, err := parsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("issuer %s: public_key_file %s: %w", c.Name, c.PublicKeyFile, err)
		}
		v.keys[""] = key
	case c.JWKSFile != "":
		b, err := readFileMax(c.JWKSFile, maxJWKSBytes)
		if err != nil {
			return nil, fmt.Errorf("issuer %s: jwks_file: %w", c.Name, err)
		}
		keys, err := parseJWKS(b)
		if err != nil {
			return nil, fmt.Errorf("issuer %s: jwks_file %s: %w", c.Name, c.JWKSFile, err)
		}
		v.keys = keys
	}
	// Every configured algorithm must fit the key, so that a token cannot
	// pick a family the key was never meant for.
	for _, alg := range v.algs {
		if v.hmac != nil {
			continue // Validate paired secrets with HS* already
		}
		fits := false
		for _, k := range v.keys {
			if keyFits(alg, k) {
				fits = true
			}
		}
		if !fits {
			return nil, fmt.Errorf("issuer %s: no configured key can verify %s", c.Name, alg)
		}
	}
	return v, nil
}

// readFileMax reads at most limit+1 bytes of path: parseJWKS refuses a
// longer file without the whole of it being read.
func readFileMax(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

func parsePublicKeyPEM(b []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	}
	return nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
}

// keyFits reports whether key can verify alg: the check that keeps a token
// from choosing how it is verified.
func keyFits(alg string, key crypto.PublicKey) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return algFamily[alg] == "rsa"
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// keyFunc picks the verification key for t.
func (v *verifier) keyFunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if v.hmac != nil {
		if algFamily[alg] != "hmac" {
			return nil, fmt.Errorf("algorithm %s is not allowed for this issuer", alg)
		}
		return v.hmac, nil
	}
	kid, _ := t.Header["kid"].(string)
	var key crypto.PublicKey
	if k, ok := v.keys[kid]; ok {
		key = k
	} else if kid == "" || len(v.keys) == 1 {
		// A token without a kid, or a single configured key: use the one
		// key that fits the algorithm, if exactly one does.
		n := 0
		for _, k := range v.keys {
			if keyFits(alg, k) {
				key, n = k, n+1
			}
		}
		if n != 1 {
			return nil, errors.New("the token names no key id and the issuer has several keys")
		}
	} else {
		return nil, fmt.Errorf("the token's key id %q is not one of this issuer's keys", kid)
	}
	if !keyFits(alg, key) {
		return nil, fmt.Errorf("algorithm %s does not fit the issuer's key", alg)
	}
	return key, nil
}

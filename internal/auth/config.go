package auth

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/porthole/porthole/internal/config"
)

// Config is the [auth] table of the server's TOML file.
type Config struct {
	// RestrictToReservations lets users bind only the subdomains and TCP
	// ports reserved for them (random names are still handed out).
	RestrictToReservations bool `toml:"restrict_to_reservations"`
	// DNSResolver ("HOST:PORT") answers the TXT lookups that verify custom
	// domains; empty means the first nameserver in /etc/resolv.conf.
	DNSResolver string `toml:"dns_resolver"`
	// DomainRecheck is how old a custom domain's last DNS check may be
	// before a bind checks again; a record that disappeared then stops
	// the domain from binding.
	DomainRecheck config.Duration `toml:"domain_recheck"`
	// Leeway is the clock skew allowed when checking tokens' exp and nbf.
	Leeway config.Duration `toml:"leeway"`
	// TokenIssuer is the iss and aud of tokens that `porthole admin
	// tokens issue` signs.
	TokenIssuer string `toml:"token_issuer"`
	// SigningKeyFile holds the Ed25519 key those tokens are signed with;
	// empty means token-signing-key.pem in the data directory.
	SigningKeyFile string `toml:"signing_key_file"`
	// FailedAuthBurst failed attempts from one address are allowed at
	// once, then FailedAuthPerMinute; beyond that the address is refused
	// before its credential is looked at.
	FailedAuthBurst     int     `toml:"failed_auth_burst"`
	FailedAuthPerMinute float64 `toml:"failed_auth_per_minute"`
	// RevocationPoll is how often the store is polled for revocations
	// made by other processes (PostgreSQL also announces them at once).
	RevocationPoll config.Duration `toml:"revocation_poll"`

	ClientCert CertConfig     `toml:"client_cert"`
	Issuers    []IssuerConfig `toml:"issuers"`
}

// CertConfig maps a client certificate to a user.
type CertConfig struct {
	// UserFrom is the field that names the user: "cn" (the default),
	// "san_dns", "san_email" or "san_uri".
	UserFrom string `toml:"user_from"`
	// URIPrefix, with san_uri, is cut from the URI to leave the user name
	// (e.g. "spiffe://example.org/user/").
	URIPrefix string `toml:"uri_prefix"`
	// AllowUnknownUsers accepts certificates naming users that are not in
	// the store; they get the server's default limits.
	AllowUnknownUsers bool `toml:"allow_unknown_users"`
}

// IssuerConfig trusts tokens from an external issuer.
type IssuerConfig struct {
	// Name labels the issuer in logs; defaults to Issuer.
	Name string `toml:"name"`
	// Issuer is the exact iss claim its tokens carry.
	Issuer string `toml:"issuer"`
	// Audience: a token's aud must contain one of these.
	Audience []string `toml:"audience"`
	// Algorithms allowed, e.g. ["HS256"] or ["RS256"]; tokens signed any
	// other way are refused, "none" always.
	Algorithms []string `toml:"algorithms"`
	// Exactly one key source: a shared secret (HS*), inline or in a file,
	// or a PEM public key, or a JWKS file (RS*, PS*, ES*, EdDSA).
	Secret        string `toml:"secret"`
	SecretFile    string `toml:"secret_file"`
	PublicKeyFile string `toml:"public_key_file"`
	JWKSFile      string `toml:"jwks_file"`
	// UserClaim names the user (default "sub"). The scope claims, when
	// any is present in a token, restrict it to what they grant (see
	// Scope): SubdomainsClaim and HostnamesClaim list names (defaults
	// "subdomains", "hostnames"), TCPClaim is true for any TCP port
	// ("tcp"), TCPPortsClaim lists ports ("tcp_ports").
	UserClaim       string `toml:"user_claim"`
	SubdomainsClaim string `toml:"subdomains_claim"`
	HostnamesClaim  string `toml:"hostnames_claim"`
	TCPClaim        string `toml:"tcp_claim"`
	TCPPortsClaim   string `toml:"tcp_ports_claim"`
	// AllowUnknownUsers accepts tokens naming users not in the store.
	AllowUnknownUsers bool `toml:"allow_unknown_users"`
}

// DefaultConfig returns the defaults the docs name.
func DefaultConfig() Config {
	return Config{
		DomainRecheck:       config.Duration(time.Hour),
		Leeway:              config.Duration(30 * time.Second),
		TokenIssuer:         "porthole",
		FailedAuthBurst:     10,
		FailedAuthPerMinute: 30,
		RevocationPoll:      config.Duration(time.Second),
		ClientCert:          CertConfig{UserFrom: "cn"},
	}
}

// withDefaults fills in zero values, so a config decoded into a zero
// struct behaves like DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.DomainRecheck == 0 {
		c.DomainRecheck = d.DomainRecheck
	}
	if c.Leeway == 0 {
		c.Leeway = d.Leeway
	}
	if c.TokenIssuer == "" {
		c.TokenIssuer = d.TokenIssuer
	}
	if c.FailedAuthBurst == 0 {
		c.FailedAuthBurst = d.FailedAuthBurst
	}
	if c.FailedAuthPerMinute == 0 {
		c.FailedAuthPerMinute = d.FailedAuthPerMinute
	}
	if c.RevocationPoll == 0 {
		c.RevocationPoll = d.RevocationPoll
	}
	if c.ClientCert.UserFrom == "" {
		c.ClientCert.UserFrom = d.ClientCert.UserFrom
	}
	for i := range c.Issuers {
		is := &c.Issuers[i]
		if is.Name == "" {
			is.Name = is.Issuer
		}
		if is.UserClaim == "" {
			is.UserClaim = "sub"
		}
		if is.SubdomainsClaim == "" {
			is.SubdomainsClaim = defaultScopeClaims.subdomains
		}
		if is.HostnamesClaim == "" {
			is.HostnamesClaim = defaultScopeClaims.hostnames
		}
		if is.TCPClaim == "" {
			is.TCPClaim = defaultScopeClaims.tcp
		}
		if is.TCPPortsClaim == "" {
			is.TCPPortsClaim = defaultScopeClaims.tcpPorts
		}
	}
	return c
}

// Algorithm families: the key an algorithm needs.
var algFamily = map[string]string{
	"HS256": "hmac", "HS384": "hmac", "HS512": "hmac",
	"RS256": "rsa", "RS384": "rsa", "RS512": "rsa",
	"PS256": "rsa", "PS384": "rsa", "PS512": "rsa",
	"ES256": "ecdsa", "ES384": "ecdsa", "ES512": "ecdsa",
	"EdDSA": "ed25519",
}

// Validate checks the config without reading any file.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("auth."+format, args...)) }
	if c.DomainRecheck < 0 || c.Leeway < 0 || c.RevocationPoll < 0 {
		bad("durations may not be negative")
	}
	if c.Leeway.D() > 5*time.Minute {
		bad("leeway: %s is more clock skew than a token check should allow (at most 5m)", c.Leeway.D())
	}
	if c.RevocationPoll.D() > 4*time.Second {
		bad("revocation_poll: %s would let a revoked session live past the 5s promise (at most 4s)", c.RevocationPoll.D())
	}
	if c.FailedAuthBurst < 0 || c.FailedAuthPerMinute < 0 {
		bad("failed_auth_burst and failed_auth_per_minute may not be negative")
	}
	if c.DNSResolver != "" {
		if _, _, err := net.SplitHostPort(c.DNSResolver); err != nil {
			bad("dns_resolver: %q is not HOST:PORT", c.DNSResolver)
		}
	}
	switch c.ClientCert.UserFrom {
	case "", "cn", "san_dns", "san_email", "san_uri":
	default:
		bad("client_cert.user_from: %q: want cn, san_dns, san_email or san_uri", c.ClientCert.UserFrom)
	}
	if c.ClientCert.URIPrefix != "" && c.ClientCert.UserFrom != "san_uri" {
		bad("client_cert.uri_prefix is only used with user_from = \"san_uri\"")
	}
	own := c.TokenIssuer
	if own == "" {
		own = DefaultConfig().TokenIssuer
	}
	seen := map[string]bool{own: true}
	for i, is := range c.Issuers {
		p := fmt.Sprintf("issuers[%d]", i)
		if is.Issuer == "" {
			bad("%s.issuer: must be set (the iss claim of its tokens)", p)
		} else if seen[is.Issuer] {
			bad("%s.issuer: %q is listed twice or is this server's own token_issuer", p, is.Issuer)
		}
		seen[is.Issuer] = true
		if len(is.Audience) == 0 {
			bad("%s.audience: must list at least one accepted aud value", p)
		}
		if len(is.Algorithms) == 0 {
			bad("%s.algorithms: must list the allowed algorithms, e.g. [\"RS256\"]", p)
		}
		sources := 0
		for _, s := range []string{is.Secret, is.SecretFile, is.PublicKeyFile, is.JWKSFile} {
			if s != "" {
				sources++
			}
		}
		if sources != 1 {
			bad("%s: set exactly one of secret, secret_file, public_key_file, jwks_file", p)
		}
		shared := is.Secret != "" || is.SecretFile != ""
		for _, alg := range is.Algorithms {
			fam, ok := algFamily[alg]
			switch {
			case strings.EqualFold(alg, "none"):
				bad("%s.algorithms: \"none\" is never accepted: unsigned tokens prove nothing", p)
			case !ok:
				bad("%s.algorithms: unknown algorithm %q (want one of %s)", p, alg, strings.Join(knownAlgs(), ", "))
			case shared && fam != "hmac":
				bad("%s.algorithms: %s needs a public key, but a shared secret is configured", p, alg)
			case !shared && sources == 1 && fam == "hmac":
				// HS* verified with a public key is the classic algorithm
				// confusion attack: the public key becomes the secret.
				bad("%s.algorithms: %s needs a shared secret, but a public key is configured", p, alg)
			}
		}
		if is.Secret != "" && len(is.Secret) < 32 {
			bad("%s.secret: shorter than 32 bytes; use a long random secret", p)
		}
	}
	return errors.Join(errs...)
}

func knownAlgs() []string {
	out := make([]string, 0, len(algFamily))
	for a := range algFamily {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// OwnIssuer is the iss of the server's own tokens.
func (c Config) OwnIssuer() string { return c.withDefaults().TokenIssuer }

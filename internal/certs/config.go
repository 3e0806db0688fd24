package certs

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/porthole/porthole/internal/config"
)

// Config is the [tls] table of the server configuration. The certificate
// files themselves are the top-level tls_cert/tls_key keys (and flags).
type Config struct {
	// ReloadInterval is how often the certificate files are checked for
	// changes. Zero means DefaultReloadInterval; a negative value turns
	// polling off, leaving SIGHUP as the only trigger.
	ReloadInterval config.Duration `toml:"reload_interval"`
	// ACME obtains certificates automatically.
	ACME ACMEConfig `toml:"acme"`
}

// DefaultReloadInterval is how often certificate files are checked.
const DefaultReloadInterval = 10 * time.Second

// ACMEConfig is the [tls.acme] table.
type ACMEConfig struct {
	// Wildcard obtains *.DOMAIN and DOMAIN via DNS-01 (needs [tls.acme.dns]).
	Wildcard bool `toml:"wildcard"`
	// OnDemand obtains a certificate for a verified custom domain at its
	// first TLS handshake, via HTTP-01 or TLS-ALPN-01.
	OnDemand bool `toml:"on_demand"`
	// Email is given to the CA for expiry notices and account recovery.
	Email string `toml:"email"`
	// CA is the ACME directory URL; empty means Let's Encrypt production.
	CA string `toml:"ca"`
	// CARoot is a PEM file of roots to trust for the CA's own HTTPS
	// endpoint, for a private or test CA; the system roots otherwise.
	CARoot string `toml:"ca_root"`
	// Challenges limits on-demand validation to these types: "http-01"
	// and/or "tls-alpn-01". Empty means both.
	Challenges []string `toml:"challenges"`
	// DNS configures DNS-01 for the wildcard certificate.
	DNS DNSConfig `toml:"dns"`
	// RenewalWindowRatio is the part of a certificate's lifetime, at its
	// end, in which it is renewed; zero means a third. Raise it for
	// short-lived certificates.
	RenewalWindowRatio float64 `toml:"renewal_window_ratio"`
	// RenewCheckInterval is how often certificates are checked for
	// renewal; zero means every 10 minutes.
	RenewCheckInterval config.Duration `toml:"renew_check_interval"`
}

// DNSConfig is the [tls.acme.dns] table.
type DNSConfig struct {
	// Provider names the libdns provider: "rfc2136" or "cloudflare".
	Provider string `toml:"provider"`
	// TTL of the challenge TXT record; zero means the library's default.
	TTL config.Duration `toml:"ttl"`
	// PropagationDelay is waited before the first propagation check.
	PropagationDelay config.Duration `toml:"propagation_delay"`
	// PropagationTimeout bounds the wait for the record to appear on the
	// zone's authoritative servers; zero means the library's default.
	PropagationTimeout config.Duration `toml:"propagation_timeout"`
	// SkipPropagationCheck tells the CA to validate as soon as the record
	// is written: right for a single primary server updated by RFC 2136.
	SkipPropagationCheck bool `toml:"skip_propagation_check"`
	// Resolvers are HOST:PORT addresses used to find the zone (SOA) and
	// to check propagation, instead of the system's resolvers.
	Resolvers []string `toml:"resolvers"`
	// OverrideDomain writes the challenge record under this name instead
	// of _acme-challenge.DOMAIN, for a DOMAIN whose _acme-challenge name
	// is a CNAME into a zone the provider can update.
	OverrideDomain string `toml:"override_domain"`

	RFC2136    RFC2136Config    `toml:"rfc2136"`
	Cloudflare CloudflareConfig `toml:"cloudflare"`
}

// RFC2136Config is the [tls.acme.dns.rfc2136] table: dynamic updates
// (RFC 2136) signed with a TSIG key (RFC 8945), which BIND, Knot, PowerDNS
// and most other authoritative servers accept.
type RFC2136Config struct {
	// Server is the primary's HOST:PORT.
	Server string `toml:"server"`
	// KeyName is the TSIG key's name, e.g. "porthole-acme".
	KeyName string `toml:"key_name"`
	// KeyAlg is the TSIG algorithm; empty means hmac-sha256.
	KeyAlg string `toml:"key_alg"`
	// Key is the base64 TSIG secret; KeyFile names a file holding it.
	Key     string `toml:"key"`
	KeyFile string `toml:"key_file"`
}

// CloudflareConfig is the [tls.acme.dns.cloudflare] table.
type CloudflareConfig struct {
	// APIToken needs Zone.DNS:Edit on the zone; APITokenFile names a
	// file holding it.
	APIToken     string `toml:"api_token"`
	APITokenFile string `toml:"api_token_file"`
	// ZoneToken, optional, is a Zone:Read token used to look zones up
	// when APIToken is scoped to one zone.
	ZoneToken string `toml:"zone_token"`
}

// Challenge types.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Enabled reports whether any ACME certificate is configured.
func (c *ACMEConfig) Enabled() bool { return c.Wildcard || c.OnDemand }

// challenge reports whether on-demand validation may use typ.
func (c *ACMEConfig) challenge(typ string) bool {
	return len(c.Challenges) == 0 || slices.Contains(c.Challenges, typ)
}

// Validate checks the table without touching files or the network.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	a := &c.ACME
	if !a.Enabled() {
		if a.Email != "" || a.CA != "" || a.CARoot != "" || len(a.Challenges) > 0 || a.DNS.Provider != "" {
			bad("tls.acme: set wildcard = true and/or on_demand = true to use ACME")
		}
		return errors.Join(errs...)
	}
	if a.Email != "" && !strings.Contains(a.Email, "@") {
		bad("tls.acme.email: %q is not an email address", a.Email)
	}
	if a.CA != "" {
		u, err := url.Parse(a.CA)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			bad("tls.acme.ca: %q is not an https:// ACME directory URL", a.CA)
		}
	}
	if a.RenewalWindowRatio < 0 || a.RenewalWindowRatio >= 1 {
		bad("tls.acme.renewal_window_ratio: %g: want a fraction between 0 and 1", a.RenewalWindowRatio)
	}
	if a.RenewCheckInterval < 0 {
		bad("tls.acme.renew_check_interval may not be negative")
	}
	for _, ch := range a.Challenges {
		if ch != ChallengeHTTP01 && ch != ChallengeTLSALPN01 {
			bad("tls.acme.challenges: %q: want %q or %q (the wildcard always uses dns-01)", ch, ChallengeHTTP01, ChallengeTLSALPN01)
		}
	}
	if a.Wildcard {
		if err := a.DNS.validate(); err != nil {
			errs = append(errs, err)
		}
	} else if a.DNS.Provider != "" {
		bad("tls.acme.dns is only used for the wildcard certificate: set tls.acme.wildcard = true")
	}
	return errors.Join(errs...)
}

func (d *DNSConfig) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if d.TTL < 0 || d.PropagationDelay < 0 || d.PropagationTimeout < 0 {
		bad("tls.acme.dns: durations may not be negative")
	}
	for _, r := range d.Resolvers {
		if _, _, err := net.SplitHostPort(r); err != nil {
			bad("tls.acme.dns.resolvers: %q is not HOST:PORT", r)
		}
	}
	switch d.Provider {
	case "":
		bad("tls.acme.wildcard needs tls.acme.dns.provider (%s): a wildcard certificate can only be validated through DNS", strings.Join(Providers, " or "))
	case "rfc2136":
		r := d.RFC2136
		if _, _, err := net.SplitHostPort(r.Server); err != nil {
			bad("tls.acme.dns.rfc2136.server: %q is not HOST:PORT", r.Server)
		}
		if r.KeyName == "" {
			bad("tls.acme.dns.rfc2136.key_name must be set: updates are signed with a TSIG key")
		}
		if (r.Key == "") == (r.KeyFile == "") {
			bad("tls.acme.dns.rfc2136: set exactly one of key and key_file")
		}
		if r.KeyAlg != "" && !slices.Contains(tsigAlgorithms, strings.TrimSuffix(strings.ToLower(r.KeyAlg), ".")) {
			bad("tls.acme.dns.rfc2136.key_alg: %q: want one of %s", r.KeyAlg, strings.Join(tsigAlgorithms, ", "))
		}
	case "cloudflare":
		if (d.Cloudflare.APIToken == "") == (d.Cloudflare.APITokenFile == "") {
			bad("tls.acme.dns.cloudflare: set exactly one of api_token and api_token_file")
		}
	default:
		bad("tls.acme.dns.provider: %q: want %s", d.Provider, strings.Join(Providers, " or "))
	}
	return errors.Join(errs...)
}

// Providers lists the DNS providers this build knows.
var Providers = []string{"rfc2136", "cloudflare"}

var tsigAlgorithms = []string{"hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"}

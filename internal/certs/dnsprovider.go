package certs

import (
	"fmt"
	"os"
	"strings"

	"github.com/caddyserver/certmagic"
	"github.com/libdns/cloudflare"
	"github.com/libdns/rfc2136"
)

// dnsProvider builds the libdns provider named in the config. Secrets
// given as files are read here, at start, so a missing file fails the
// start instead of the first renewal.
func dnsProvider(d *DNSConfig) (certmagic.DNSProvider, error) {
	switch d.Provider {
	case "rfc2136":
		r := d.RFC2136
		key, err := secret(r.Key, r.KeyFile, "tls.acme.dns.rfc2136.key_file")
		if err != nil {
			return nil, err
		}
		alg := strings.ToLower(r.KeyAlg)
		if alg == "" {
			alg = "hmac-sha256"
		}
		return &rfc2136.Provider{Server: r.Server, KeyName: r.KeyName, KeyAlg: alg, Key: key}, nil
	case "cloudflare":
		c := d.Cloudflare
		token, err := secret(c.APIToken, c.APITokenFile, "tls.acme.dns.cloudflare.api_token_file")
		if err != nil {
			return nil, err
		}
		return &cloudflare.Provider{APIToken: token, ZoneToken: c.ZoneToken}, nil
	}
	return nil, fmt.Errorf("tls.acme.dns.provider %q is not known", d.Provider)
}

// secret returns value, or the trimmed content of file.
func secret(value, file, what string) (string, error) {
	if file == "" {
		return value, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", what, file)
	}
	return s, nil
}

package certs

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	rfc := DNSConfig{Provider: "rfc2136", RFC2136: RFC2136Config{Server: "ns1.example.com:53", KeyName: "acme", Key: "c2VjcmV0"}}
	cases := []struct {
		name string
		cfg  Config
		want string // "" means valid
	}{
		{"empty", Config{}, ""},
		{"stray acme keys", Config{ACME: ACMEConfig{Email: "a@b.c"}}, "set wildcard = true"},
		{"on-demand alone", Config{ACME: ACMEConfig{OnDemand: true}}, ""},
		{"wildcard without dns", Config{ACME: ACMEConfig{Wildcard: true}}, "needs tls.acme.dns.provider"},
		{"wildcard rfc2136", Config{ACME: ACMEConfig{Wildcard: true, DNS: rfc}}, ""},
		{"rfc2136 without key", Config{ACME: ACMEConfig{Wildcard: true, DNS: DNSConfig{Provider: "rfc2136", RFC2136: RFC2136Config{Server: "ns:53", KeyName: "k"}}}}, "exactly one of key and key_file"},
		{"rfc2136 bad server", Config{ACME: ACMEConfig{Wildcard: true, DNS: DNSConfig{Provider: "rfc2136", RFC2136: RFC2136Config{Server: "ns", KeyName: "k", Key: "x"}}}}, "not HOST:PORT"},
		{"rfc2136 bad alg", Config{ACME: ACMEConfig{Wildcard: true, DNS: DNSConfig{Provider: "rfc2136", RFC2136: RFC2136Config{Server: "ns:53", KeyName: "k", Key: "x", KeyAlg: "md5"}}}}, "key_alg"},
		{"cloudflare", Config{ACME: ACMEConfig{Wildcard: true, DNS: DNSConfig{Provider: "cloudflare", Cloudflare: CloudflareConfig{APITokenFile: "/run/secrets/cf"}}}}, ""},
		{"cloudflare without token", Config{ACME: ACMEConfig{Wildcard: true, DNS: DNSConfig{Provider: "cloudflare"}}}, "api_token"},
		{"unknown provider", Config{ACME: ACMEConfig{Wildcard: true, DNS: DNSConfig{Provider: "route53"}}}, "rfc2136 or cloudflare"},
		{"dns without wildcard", Config{ACME: ACMEConfig{OnDemand: true, DNS: rfc}}, "only used for the wildcard"},
		{"bad challenge", Config{ACME: ACMEConfig{OnDemand: true, Challenges: []string{"dns-01"}}}, "http-01"},
		{"http CA", Config{ACME: ACMEConfig{OnDemand: true, CA: "http://ca.example/dir"}}, "https://"},
		{"bad email", Config{ACME: ACMEConfig{OnDemand: true, Email: "ops"}}, "not an email"},
		{"bad resolver", Config{ACME: ACMEConfig{Wildcard: true, DNS: DNSConfig{Provider: "rfc2136", RFC2136: rfc.RFC2136, Resolvers: []string{"8.8.8.8"}}}}, "resolvers"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

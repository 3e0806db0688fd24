package certs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libdns/cloudflare"
	"github.com/libdns/rfc2136"
)

func TestDNSProvider(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "tsig.key")
	os.WriteFile(keyFile, []byte("c2VjcmV0\n"), 0o600)
	p, err := dnsProvider(&DNSConfig{Provider: "rfc2136", RFC2136: RFC2136Config{Server: "ns1.example.test:53", KeyName: "acme", KeyFile: keyFile}})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := p.(*rfc2136.Provider)
	if !ok || r.Key != "c2VjcmV0" || r.KeyAlg != "hmac-sha256" || r.Server != "ns1.example.test:53" {
		t.Fatalf("rfc2136 provider %+v", p)
	}

	tokenFile := filepath.Join(dir, "cf.token")
	os.WriteFile(tokenFile, []byte("  tok  \n"), 0o600)
	p, err = dnsProvider(&DNSConfig{Provider: "cloudflare", Cloudflare: CloudflareConfig{APITokenFile: tokenFile}})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := p.(*cloudflare.Provider); !ok || c.APIToken != "tok" {
		t.Fatalf("cloudflare provider %+v", p)
	}

	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, f := range []string{filepath.Join(dir, "missing"), empty} {
		_, err := dnsProvider(&DNSConfig{Provider: "cloudflare", Cloudflare: CloudflareConfig{APITokenFile: f}})
		if err == nil || !strings.Contains(err.Error(), "api_token_file") {
			t.Errorf("token file %s: %v", f, err)
		}
	}
}

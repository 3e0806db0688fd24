// Package e2e drives the built porthole binary over loopback: real
// processes, real SQLite files, real TLS.
package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/protocol"
)

// TestMain builds the binary once for every test in the package.
// hsSecret is the external test issuer's shared secret.
const hsSecret = "e2e-shared-secret-0123456789abcdef-0123456789"

func identityConfig(dnsAddr string) string {
	return fmt.Sprintf(`
[auth]
dns_resolver = %q
domain_recheck = "1s"
# Many refusals below come from one address; the throttle has its own test.
failed_auth_burst = 1000

[[auth.issuers]]
name = "sso"
issuer = "https://sso.test"
audience = ["porthole"]
algorithms = ["HS256"]
secret = %q
`, dnsAddr, hsSecret)
}

func hsToken(t *testing.T, secret, sub string, exp time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "https://sso.test", "aud": "porthole", "sub": sub,
		"exp": exp.Unix(), "iat": time.Now().Unix(),
	})
	s, err := tok.SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestIdentity runs the credential and authorization cases against one
// server on SQLite, configured through admin commands as an operator
// would.
func TestIdentity(t *testing.T) {
	dnsSrv := startIDDNS(t)
	s := startIDServer(t, t.TempDir(), identityConfig(dnsSrv.addr))
	app := nameApp(t, "identity app")
	s.mustAdmin(t, "users", "add", "alice")
	s.mustAdmin(t, "users", "add", "bob")
	aliceKey := s.mustAdmin(t, "keys", "create", "--user", "alice", "--name", "laptop")
	bobKey := s.mustAdmin(t, "keys", "create", "--user", "bob")
	if !auth.LooksLikeAPIKey(aliceKey) {
		t.Fatalf("keys create's last line %q is not a key", aliceKey)
	}
	// Everything secret that passes through the server in this test; none
	// of it may show up in a log line.
	secrets := []string{aliceKey, bobKey, hsSecret}

	t.Run("APIKey", func(t *testing.T) {
		c := s.client(t, app, "--api-key", aliceKey)
		u := c.forwarding(t)
		if code, body := s.visit(t, hostOfURL(t, u)); code != 200 || body != "identity app" {
			t.Fatalf("visit: %d %q", code, body)
		}
		list := s.mustAdmin(t, "keys", "list", "--user", "alice")
		_ = list
		out, _, _ := s.admin(t, "keys", "list")
		if strings.Contains(out, aliceKey) || !strings.Contains(out, "laptop") {
			t.Fatalf("keys list shows a key or misses its name:\n%s", out)
		}
		c.stop()
	})

	t.Run("RevokeWhileConnected", func(t *testing.T) {
		key := s.mustAdmin(t, "keys", "create", "--user", "alice", "--name", "revoke-me")
		secrets = append(secrets, key)
		c := s.client(t, app, "--api-key", key)
		host := hostOfURL(t, c.forwarding(t))
		if code, _ := s.visit(t, host); code != 200 {
			t.Fatalf("before revocation: %d", code)
		}
		// Revoke by the key itself, from another process, as an operator
		// holding a leaked key would.
		start := time.Now()
		s.mustAdmin(t, "keys", "revoke", key)
		code := c.exit(t, 5*time.Second)
		took := time.Since(start)
		if code == 0 {
			t.Fatal("client exited 0 after revocation")
		}
		if !strings.Contains(c.errOut(), "revoked") {
			t.Fatalf("client stderr has no reason:\n%s", c.errOut())
		}
		if code, _ := s.visit(t, host); code != 404 {
			t.Fatalf("after revocation the name answers %d, want 404", code)
		}
		t.Logf("cut off %s after revocation", took.Round(time.Millisecond))
		// And the key is refused from now on.
		s.client(t, app, "--api-key", key).refused(t, `revoked`)
	})

	t.Run("WrongKey", func(t *testing.T) {
		var b [32]byte
		rand.Read(b[:])
		guess := auth.APIKeyPrefix + strings.Repeat("A", 43)
		s.client(t, app, "--api-key", guess).refused(t, `unknown API key`)
		s.client(t, app, "--api-key", "phk_short").refused(t, `malformed`)
	})

	t.Run("TokenCutoff", func(t *testing.T) {
		tok := s.mustAdmin(t, "tokens", "issue", "--user", "alice", "--ttl", "1h")
		secrets = append(secrets, tok)
		c := s.client(t, app, "--token", tok)
		host := hostOfURL(t, c.forwarding(t))
		if code, _ := s.visit(t, host); code != 200 {
			t.Fatalf("before the cut-off: %d", code)
		}
		// Every token of alice's issued until now, with or without an id.
		s.mustAdmin(t, "tokens", "cutoff", "--user", "alice")
		if code := c.exit(t, 5*time.Second); code == 0 {
			t.Fatal("client exited 0 after the cut-off")
		}
		if !strings.Contains(c.errOut(), "revoked") {
			t.Fatalf("client stderr has no reason:\n%s", c.errOut())
		}
		s.client(t, app, "--token", tok).refused(t, `were revoked`)
		// Tokens issued after it work (iat has a resolution of a second).
		time.Sleep(1100 * time.Millisecond)
		fresh := s.mustAdmin(t, "tokens", "issue", "--user", "alice", "--ttl", "1h")
		secrets = append(secrets, fresh)
		c = s.client(t, app, "--token", fresh)
		if code, _ := s.visit(t, hostOfURL(t, c.forwarding(t))); code != 200 {
			t.Fatalf("a token issued after the cut-off: %d", code)
		}
		c.stop()
		if _, _, code := s.admin(t, "tokens", "cutoff"); code != 2 {
			t.Fatalf("tokens cutoff without --user or --all: exit %d, want 2", code)
		}
	})

	t.Run("ExpiredKey", func(t *testing.T) {
		key := s.mustAdmin(t, "keys", "create", "--user", "alice", "--expires", "1s")
		secrets = append(secrets, key)
		time.Sleep(1100 * time.Millisecond)
		s.client(t, app, "--api-key", key).refused(t, `expired`)
	})

	t.Run("Token", func(t *testing.T) {
		tok := s.mustAdmin(t, "tokens", "issue", "--user", "alice", "--ttl", "1h")
		secrets = append(secrets, tok)
		c := s.client(t, app, "--token", tok)
		if code, _ := s.visit(t, hostOfURL(t, c.forwarding(t))); code != 200 {
			t.Fatalf("visit with token: %d", code)
		}
		c.stop()

		// The same token with its payload changed to name bob.
		parts := strings.Split(tok, ".")
		claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
		forged := strings.Replace(string(claims), `"sub":"alice"`, `"sub":"bob"`, 1)
		tampered := parts[0] + "." + b64url(forged) + "." + parts[2]
		s.client(t, app, "--token", tampered).refused(t, `signature does not verify`)

		// alg none: no signature at all.
		none := b64url(`{"alg":"none","typ":"JWT"}`) + "." + b64url(fmt.Sprintf(`{"iss":"porthole","aud":"porthole","sub":"alice","exp":%d}`, time.Now().Add(time.Hour).Unix())) + "."
		s.client(t, app, "--token", none).refused(t, `algorithm "none" is not accepted`)

		// Algorithm confusion: HS256 keyed with the server's public key.
		key, err := auth.LoadOrCreateSigningKey(filepath.Join(s.dataDir, auth.SigningKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		conf := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "porthole", "aud": "porthole", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
		confused, _ := conf.SignedString([]byte(key.Public()))
		s.client(t, app, "--token", confused).refused(t, `algorithm "HS256" is not accepted`)

		// Expired, signed by the server's own key.
		old, err := key.IssueToken("porthole", "alice", time.Hour, nil, time.Now().Add(-2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		s.client(t, app, "--token", old.Token).refused(t, `token expired at`)

		// Restricted to one subdomain.
		only := s.mustAdmin(t, "tokens", "issue", "--user", "alice", "--ttl", "10m", "--subdomain", "alice-only")
		s.client(t, app, "--token", only, "--subdomain", "elsewhere").refused(t, `may not bind subdomain "elsewhere"`)
		c = s.client(t, app, "--token", only, "--subdomain", "alice-only")
		if u := c.forwarding(t); !strings.Contains(u, "alice-only.tun.test") {
			t.Fatalf("forwarding %s", u)
		}
		c.stop()
	})

	t.Run("ExternalIssuerHS256", func(t *testing.T) {
		tok := hsToken(t, hsSecret, "bob", time.Now().Add(time.Hour))
		secrets = append(secrets, tok)
		c := s.client(t, app, "--token", tok)
		if code, _ := s.visit(t, hostOfURL(t, c.forwarding(t))); code != 200 {
			t.Fatalf("visit: %d", code)
		}
		c.stop()
		s.client(t, app, "--token", hsToken(t, "another-secret-0123456789abcdef-0123456789", "bob", time.Now().Add(time.Hour))).refused(t, `signature does not verify`)
		s.client(t, app, "--token", hsToken(t, hsSecret, "bob", time.Now().Add(-time.Hour))).refused(t, `token expired at`)
		s.client(t, app, "--token", hsToken(t, hsSecret, "mallory", time.Now().Add(time.Hour))).refused(t, `user "mallory", who does not exist`)
	})

	t.Run("Reservation", func(t *testing.T) {
		s.mustAdmin(t, "reserve", "--user", "bob", "shop")
		s.client(t, app, "--api-key", aliceKey, "--subdomain", "shop").refused(t, `reserved for another user`)
		c := s.client(t, app, "--api-key", bobKey, "--subdomain", "shop")
		u := c.forwarding(t)
		if !strings.HasPrefix(u, "http://shop.tun.test:") {
			t.Fatalf("bob's reserved tunnel at %s", u)
		}
		c.stop()
		if _, _, code := s.admin(t, "reserve", "--user", "alice", "shop"); code != 1 {
			t.Fatalf("reserving a taken name: exit %d, want 1", code)
		}
		if _, _, code := s.admin(t, "reserve", "--user", "alice", "Bad_Name"); code != 2 {
			t.Fatalf("reserving a malformed name: exit %d, want 2", code)
		}
	})

	t.Run("CustomDomain", func(t *testing.T) {
		const host = "app.example.test"
		out, _, code := s.admin(t, "domains", "add", "--user", "alice", host)
		if code != 0 {
			t.Fatalf("domains add: %d\n%s", code, out)
		}
		m := regexp.MustCompile(`_porthole-challenge\.app\.example\.test\.? TXT "([^"]+)"`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("domains add printed no TXT record:\n%s", out)
		}
		token := m[1]

		// Before the record exists.
		s.client(t, app, "--api-key", aliceKey, "--hostname", host).refused(t, `not verified.*no TXT record`)
		// A record with the wrong value.
		dnsSrv.set(auth.ChallengeName(host), "porthole-verify=wrong")
		if _, errOut, code := s.admin(t, "domains", "verify", host); code != 1 || !strings.Contains(errOut, "wrong value") {
			t.Fatalf("verify with a wrong token: exit %d\n%s", code, errOut)
		}
		// The right one.
		dnsSrv.set(auth.ChallengeName(host), token)
		if line := s.mustAdmin(t, "domains", "verify", host); !strings.Contains(line, "verified for alice") {
			t.Fatalf("verify: %q", line)
		}
		c := s.client(t, app, "--api-key", aliceKey, "--hostname", host)
		if u := c.forwarding(t); !strings.HasPrefix(u, "http://"+host+":") {
			t.Fatalf("forwarding %s", u)
		}
		if code, body := s.visit(t, host); code != 200 || body != "identity app" {
			t.Fatalf("visit %s: %d %q", host, code, body)
		}
		s.client(t, app, "--api-key", bobKey, "--hostname", host).refused(t, `belongs to another user`)
		c.stop()

		// The record disappears: once the last check is older than
		// domain_recheck, the next bind looks again and is refused.
		dnsSrv.set(auth.ChallengeName(host), "")
		time.Sleep(1100 * time.Millisecond)
		s.client(t, app, "--api-key", aliceKey, "--hostname", host).refused(t, `not verified.*no TXT record`)
		if out := s.mustAdmin(t, "domains", "list"); !strings.Contains(out, "pending") {
			t.Fatalf("domains list after the record went: %s", out)
		}
	})

	t.Run("UserRemoved", func(t *testing.T) {
		s.mustAdmin(t, "users", "add", "carol")
		key := s.mustAdmin(t, "keys", "create", "--user", "carol")
		secrets = append(secrets, key)
		c := s.client(t, app, "--api-key", key)
		c.forwarding(t)
		s.mustAdmin(t, "users", "remove", "carol")
		if code := c.exit(t, 5*time.Second); code == 0 {
			t.Fatal("client of a removed user exited 0")
		}
		if !strings.Contains(c.errOut(), "deleted") {
			t.Fatalf("client stderr:\n%s", c.errOut())
		}
	})

	t.Run("AdminUsage", func(t *testing.T) {
		if _, _, code := s.admin(t, "keys", "create"); code != 2 {
			t.Fatalf("keys create without --user: exit %d, want 2", code)
		}
		if _, _, code := s.admin(t, "keys", "create", "--user", "nobody"); code != 1 {
			t.Fatalf("keys create for a missing user: exit %d, want 1", code)
		}
		if _, _, code := s.admin(t, "keys", "revoke", "not-a-key"); code != 2 {
			t.Fatalf("keys revoke garbage: exit %d, want 2", code)
		}
		if out := s.mustAdmin(t, "users", "limits", "alice", "--max-tunnels", "1"); !strings.Contains(out, "max_tunnels=1") {
			t.Fatalf("limits: %q", out)
		}
		c := s.client(t, app, "--api-key", aliceKey)
		c.forwarding(t)
		s.client(t, app, "--api-key", aliceKey).refused(t, `tunnel limit reached`)
		c.stop()
		s.mustAdmin(t, "users", "limits", "alice", "--max-tunnels", "default")
	})

	// No credential or key material in any log line, the server's or the
	// clients'.
	s.stop()
	logs := s.errOut() + s.out()
	for _, sec := range secrets {
		if strings.Contains(logs, sec) {
			t.Errorf("server log contains a secret (%.8s...)", sec)
		}
	}
	if !strings.Contains(logs, "client refused") {
		t.Error("server log has no refusals; the log check looked at the wrong output")
	}
}

// TestIdentityThrottle checks that failed attempts from one address are
// throttled before credentials are looked at.
func TestIdentityThrottle(t *testing.T) {
	s := startIDServer(t, t.TempDir(), "[auth]\nfailed_auth_burst = 3\nfailed_auth_per_minute = 6\n")
	var codes []int
	for range 5 {
		req, _ := http.NewRequest("GET", "http://"+s.tunnelAddr+"/", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		req.Header.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
		req.Header.Set("Authorization", "Bearer "+auth.APIKeyPrefix+strings.Repeat("B", 43))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	want := []int{401, 401, 401, 429, 429}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Fatalf("statuses %v, want %v", codes, want)
	}
}

// TestIdentityMTLS connects with client certificates over wss://: a good
// one names its user; an unknown user, an expired certificate, one from
// another CA and a self-signed one are refused, and the client exits
// non-zero at once with a reason instead of retrying.
func TestIdentityMTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA := newTestCA(t, "server CA")
	clientCA := newTestCA(t, "client CA")
	otherCA := newTestCA(t, "other CA")
	srvCert, srvKey := issueIDCert(t, serverCA, dir, "tun.test", true, time.Now().Add(24*time.Hour))
	serverCAFile := filepath.Join(dir, "server-ca.pem")
	clientCAFile := filepath.Join(dir, "client-ca.pem")
	os.WriteFile(serverCAFile, serverCA.PEM, 0o600)
	os.WriteFile(clientCAFile, clientCA.PEM, 0o600)

	s := startIDServer(t, t.TempDir(), "", "--tls-cert", srvCert, "--tls-key", srvKey, "--client-ca", clientCAFile)
	if !strings.HasPrefix(s.wsURL(), "wss://") {
		t.Fatalf("tunnel listener is %s, want wss", s.wsURL())
	}
	s.mustAdmin(t, "users", "add", "alice")
	app := nameApp(t, "identity app")
	withCert := func(cert, key string) []string {
		return []string{"--ca-file", serverCAFile, "--cert", cert, "--key", key}
	}

	t.Run("Good", func(t *testing.T) {
		cert, key := issueIDCert(t, clientCA, dir, "alice", false, time.Now().Add(time.Hour))
		c := s.client(t, app, withCert(cert, key)...)
		if code, _ := s.visit(t, hostOfURL(t, c.forwarding(t))); code != 200 {
			t.Fatalf("visit: %d", code)
		}
		c.stop()
	})
	t.Run("RevokedWhileConnected", func(t *testing.T) {
		cert, key := issueIDCert(t, clientCA, dir, "alice", false, time.Now().Add(time.Hour))
		c := s.client(t, app, withCert(cert, key)...)
		host := hostOfURL(t, c.forwarding(t))
		if code, _ := s.visit(t, host); code != 200 {
			t.Fatalf("before revocation: %d", code)
		}
		s.mustAdmin(t, "certs", "revoke", "--file", cert, "--user", "alice")
		if code := c.exit(t, 5*time.Second); code == 0 {
			t.Fatal("client exited 0 after its certificate was revoked")
		}
		if !strings.Contains(c.errOut(), "revoked") {
			t.Fatalf("client stderr has no reason:\n%s", c.errOut())
		}
		if code, _ := s.visit(t, host); code != 404 {
			t.Fatalf("after revocation the name answers %d, want 404", code)
		}
		s.client(t, app, withCert(cert, key)...).refused(t, `certificate \(serial [0-9a-f]+\) was revoked`)
	})
	t.Run("RevokedBySerial", func(t *testing.T) {
		cert, key := issueIDCert(t, clientCA, dir, "alice", false, time.Now().Add(time.Hour))
		leaf := readLeaf(t, cert)
		// As an operator copies it from openssl: colon-separated hex.
		serial := leaf.SerialNumber.Text(16)
		if len(serial)%2 == 1 {
			serial = "0" + serial
		}
		var parts []string
		for i := 0; i < len(serial); i += 2 {
			parts = append(parts, serial[i:i+2])
		}
		s.mustAdmin(t, "certs", "revoke", strings.ToUpper(strings.Join(parts, ":")))
		s.client(t, app, withCert(cert, key)...).refused(t, `was revoked`)
		// Another certificate of the same user is not affected.
		cert2, key2 := issueIDCert(t, clientCA, dir, "alice", false, time.Now().Add(time.Hour))
		c := s.client(t, app, withCert(cert2, key2)...)
		if code, _ := s.visit(t, hostOfURL(t, c.forwarding(t))); code != 200 {
			t.Fatalf("another certificate of alice: %d", code)
		}
		c.stop()
		if _, _, code := s.admin(t, "certs", "revoke", "not-hex"); code != 2 {
			t.Fatalf("certs revoke garbage: exit %d, want 2", code)
		}
	})
	t.Run("UnknownUser", func(t *testing.T) {
		cert, key := issueIDCert(t, clientCA, dir, "mallory", false, time.Now().Add(time.Hour))
		s.client(t, app, withCert(cert, key)...).refused(t, `user "mallory", who does not exist`)
	})
	// The TLS handshake itself refuses these (the server asks for a
	// certificate that verifies against --client-ca); the client names
	// the certificate as the problem.
	t.Run("Expired", func(t *testing.T) {
		cert, key := issueIDCert(t, clientCA, dir, "alice", false, time.Now().Add(-time.Hour))
		s.client(t, app, withCert(cert, key)...).refused(t, `(?i)expired certificate`)
	})
	t.Run("WrongCA", func(t *testing.T) {
		cert, key := issueIDCert(t, otherCA, dir, "alice", false, time.Now().Add(time.Hour))
		s.client(t, app, withCert(cert, key)...).refused(t, `(?i)certificate`)
	})
	t.Run("SelfSigned", func(t *testing.T) {
		cert, key := issueIDCert(t, nil, dir, "alice", false, time.Now().Add(time.Hour))
		s.client(t, app, withCert(cert, key)...).refused(t, `(?i)certificate`)
	})
}

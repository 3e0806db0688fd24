package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/certs"
	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/server"
)

// TestTLSBinary drives the built binary: certificate reloads on a live
// server, and a client's verification of a wss:// server.
func TestTLSBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Run("ReloadOnChange", func(t *testing.T) { testTLSReload(t, false) })
	t.Run("ReloadOnSIGHUP", func(t *testing.T) { testTLSReload(t, true) })
	t.Run("WSS", func(t *testing.T) { testTLSWSS(t) })
}

// testTLSReload replaces the certificate files under a running server with a
// tunnel up: the next handshake gets the new certificate, connections
// made before keep working, and the tunnel is never dropped.
func testTLSReload(t *testing.T, sighup bool) {
	dir := t.TempDir()
	ca := newTestCA(t, "porthole test CA")
	caFile := tlsWriteFile(t, filepath.Join(dir, "ca.pem"), ca.PEM)
	names := []string{"*.tun.test", "tun.test", "127.0.0.1"}
	a := issueTLSLeaf(t, ca, names...)
	certFile := tlsWriteFile(t, filepath.Join(dir, "cert.pem"), a.CertPEM)
	keyFile := tlsWriteFile(t, filepath.Join(dir, "key.pem"), a.KeyPEM)
	// With polling off, only SIGHUP can make the server notice.
	interval := "100ms"
	if sighup {
		interval = "-1s"
	}
	cfg := tlsWriteFile(t, filepath.Join(dir, "server.toml"), []byte("[tls]\nreload_interval = \""+interval+"\"\n"))

	srv := startTLSServer(t, "--config", cfg, "--https-addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	client := startPorthole(t, interrupted, "http", tlsStartApp(t), "--server", "wss://"+srv.tunnelAddr,
		"--ca-file", caFile, "--subdomain", "reload", "--inspect-addr", "off")
	url := client.forwarding(t)
	if !strings.HasPrefix(url, "https://reload.tun.test:") {
		t.Fatalf("first Forwarding URL %q: want the https one", url)
	}

	before := newTLSVisitor(tlsCertPool(ca.PEM), srv.httpsAddr)
	status, body, proto := before.get(t, url)
	if status != 200 || !strings.Contains(body, "hello from the app (https)") {
		t.Fatalf("before reload: %d %q", status, body)
	}
	if proto != 2 {
		t.Errorf("visitor spoke HTTP/%d on the HTTPS listener; want HTTP/2", proto)
	}
	if got := before.lastCert().SerialNumber; got.Cmp(a.Cert.SerialNumber) != 0 {
		t.Fatalf("serving serial %v, want the first certificate's %v", got, a.Cert.SerialNumber)
	}

	// Replace the key first and the certificate second, as a careless
	// renewal script would: in between, the pair does not match, and the
	// server must keep serving the old one.
	b := issueTLSLeaf(t, ca, names...)
	tlsWriteAtomically(t, keyFile, b.KeyPEM)
	if sighup {
		time.Sleep(300 * time.Millisecond)
	} else {
		srv.wait(t, srv.errOut, regexp.MustCompile(`"msg":"certificate reload failed`), 10*time.Second)
	}
	if got := tlsHandshakeCert(t, srv.httpsAddr, "reload.tun.test"); got.SerialNumber.Cmp(a.Cert.SerialNumber) != 0 {
		t.Fatalf("with a mismatched key on disk the server switched to serial %v", got.SerialNumber)
	}
	tlsWriteAtomically(t, certFile, b.CertPEM)
	if sighup {
		time.Sleep(300 * time.Millisecond)
		if got := tlsHandshakeCert(t, srv.httpsAddr, "reload.tun.test"); got.SerialNumber.Cmp(a.Cert.SerialNumber) != 0 {
			t.Fatal("the server reloaded without SIGHUP although polling is off")
		}
		if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	tlsWaitServing(t, srv.httpsAddr, "reload.tun.test", b.Cert)
	tlsWaitServing(t, srv.tunnelAddr, "", b.Cert)

	// A new visitor connection verifies the new certificate; the old
	// connection, made with the old one, still works.
	after := newTLSVisitor(tlsCertPool(ca.PEM), srv.httpsAddr)
	if status, body, _ := after.get(t, url); status != 200 || !strings.Contains(body, "hello from the app") {
		t.Fatalf("after reload: %d %q", status, body)
	}
	if got := after.lastCert().SerialNumber; got.Cmp(b.Cert.SerialNumber) != 0 {
		t.Fatalf("new connection got serial %v, want the new certificate's %v", got, b.Cert.SerialNumber)
	}
	if status, _, _ := before.get(t, url); status != 200 {
		t.Fatalf("connection from before the reload: status %d", status)
	}
	if s := client.errOut(); strings.Contains(s, "disconnected") || strings.Contains(s, "reconnecting") {
		t.Fatalf("the tunnel was dropped during the reload:\n%s", s)
	}
	// The reloads are counted, and the new expiry is exported.
	resp, err := http.Get("http://" + srv.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`porthole_tls_certificate_reloads_total{result="ok"} 1`,
		fmt.Sprintf(`porthole_tls_certificate_expiry_timestamp_seconds{name="*.tun.test",source="file"} %g`, float64(b.Cert.NotAfter.Unix())),
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Polling saw the mismatched pair and kept the old certificate, then
	// saw the complete one.
	if s := srv.errOut(); !strings.Contains(s, "certificate reloaded") || (!sighup && !strings.Contains(s, "certificate reload failed")) {
		t.Errorf("server log lacks the reloads:\n%s", s)
	}
}

// tlsWaitServing waits until a handshake with addr gets want.
func tlsWaitServing(t *testing.T, addr, sni string, want *x509.Certificate) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := tlsHandshakeCert(t, addr, sni)
		if got.SerialNumber.Cmp(want.SerialNumber) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still serves serial %v, want %v", addr, got.SerialNumber, want.SerialNumber)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testTLSWSS checks how a client verifies a server with a self-signed
// certificate: trusted through --ca-file, or through --server-pin; a
// wrong pin, or neither, is a final error that says what to do.
func testTLSWSS(t *testing.T) {
	dir := t.TempDir()
	self := issueTLSLeaf(t, nil, "tun.test", "127.0.0.1")
	certFile := tlsWriteFile(t, filepath.Join(dir, "cert.pem"), self.CertPEM)
	keyFile := tlsWriteFile(t, filepath.Join(dir, "key.pem"), self.KeyPEM)
	srv := startTLSServer(t, "--tls-cert", certFile, "--tls-key", keyFile)
	server := "wss://" + srv.tunnelAddr
	app := tlsStartApp(t)
	pin := certs.SPKIPin(self.Cert)
	other := issueTLSLeaf(t, nil, "tun.test")
	otherDigest := certs.SPKIDigest(other.Cert)

	connects := func(t *testing.T, args ...string) {
		c := startPorthole(t, interrupted, append([]string{"http", app, "--server", server, "--inspect-addr", "off"}, args...)...)
		url := c.forwarding(t)
		v := newTLSVisitor(nil, srv.httpAddr)
		if status, body, _ := v.get(t, url); status != 200 || !strings.Contains(body, "hello from the app (http)") {
			t.Fatalf("GET %s: %d %q", url, status, body)
		}
	}
	fails := func(t *testing.T, wants []string, args ...string) {
		c := startPorthole(t, interrupted, append([]string{"http", app, "--server", server, "--inspect-addr", "off"}, args...)...)
		// Final: no retry, so the exit comes at once.
		if code := c.exit(t, 10*time.Second); code != 1 {
			t.Fatalf("exit code %d, want 1", code)
		}
		stderr := c.errOut()
		for _, w := range wants {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, stderr)
			}
		}
		if strings.Contains(stderr, "reconnecting") {
			t.Errorf("client retried a certificate failure:\n%s", stderr)
		}
	}

	t.Run("CAFile", func(t *testing.T) {
		connects(t, "--ca-file", tlsWriteFile(t, filepath.Join(t.TempDir(), "ca.pem"), self.CertPEM))
	})
	t.Run("Pin", func(t *testing.T) { connects(t, "--server-pin", pin) })
	t.Run("WrongPin", func(t *testing.T) {
		fails(t, []string{"does not match --server-pin", pin}, "--server-pin", "sha256:"+hex.EncodeToString(otherDigest[:]))
	})
	t.Run("NeitherCANorPin", func(t *testing.T) {
		fails(t, []string{"not signed by a CA this machine trusts", "--ca-file", "--server-pin " + pin})
	})
}

// tlsVerifiedDomains is the identity layer's stand-in: a fixed set of
// verified custom domains, and a count of what was asked.
type tlsVerifiedDomains struct {
	mu    sync.Mutex
	names map[string]bool
	asked []string
}

func (v *tlsVerifiedDomains) Allowed(_ context.Context, host string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.asked = append(v.asked, host)
	if !v.names[host] {
		return fmt.Errorf("%s is not a verified domain", host)
	}
	return nil
}

// tlsVerifiedPolicy lets clients bind the verified custom domains.
type tlsVerifiedPolicy struct {
	server.OpenPolicy
	domains *tlsVerifiedDomains
}

func (p tlsVerifiedPolicy) CheckHostname(ctx context.Context, _ *auth.Identity, host string) error {
	p.domains.mu.Lock()
	ok := p.domains.names[host]
	p.domains.mu.Unlock()
	if !ok {
		return protocol.Err(protocol.CodeForbidden, true, "%s is not verified", host)
	}
	return nil
}

// TestTLSACME runs the whole ACME flow on loopback against Pebble and a
// DNS server of the test's own: the wildcard certificate via DNS-01 (RFC
// 2136 updates signed with TSIG), an on-demand certificate for a verified
// custom domain via HTTP-01 or TLS-ALPN-01, tunnels served over HTTPS with
// them and a client that verifies the tunnel listener against Pebble's
// root. Unknown names must not cause a single issuance attempt.
func TestTLSACME(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Pebble")
	}
	dnsSrv := startTLSDNS(t, "acme.test", "custom.test")
	httpPort, httpsPort := freePort(t), freePort(t)
	ca := tlsStartPebble(t, dnsSrv.Addr, httpPort, httpsPort, 0)
	roots := tlsCertPool(ca.Root)

	domains := &tlsVerifiedDomains{names: map[string]bool{"app.custom.test": true, "http.custom.test": true}}

	// TLS-ALPN-01 only here, HTTP-01 only in the second server below:
	// with both allowed, the ACME client picks one at random and falls
	// back to the other, which would hide a broken one.
	acme := certs.ACMEConfig{
		Wildcard:   true,
		OnDemand:   true,
		Challenges: []string{certs.ChallengeTLSALPN01},
		DNS: certs.DNSConfig{
			Provider: "rfc2136",
			// One primary, updated directly: nothing to wait for.
			SkipPropagationCheck: true,
			Resolvers:            []string{dnsSrv.Addr},
			RFC2136:              certs.RFC2136Config{Server: dnsSrv.Addr, KeyName: dnsSrv.KeyName, Key: dnsSrv.Secret},
		},
	}
	srv, ts, cfg := tlsStartACMEServer(t, ca, httpPort, httpsPort, acme, domains)

	// The wildcard and the apex, obtained in the background at start.
	waitFor(t, "the wildcard certificate", 90*time.Second, func() bool {
		st := ts.Certs.Stats()
		return st.ACME.New.Obtained >= 2 || st.ACME.New.Failed > 0
	})
	if st := ts.Certs.Stats(); st.ACME.New.Failed > 0 {
		t.Fatalf("obtaining the wildcard failed: %+v", st.ACME)
	}
	if got := tlsHandshakeCert(t, cfg.HTTPSAddr, "anything.acme.test"); !slices.Contains(got.DNSNames, "*.acme.test") {
		t.Fatalf("subdomain handshake got a certificate for %v", got.DNSNames)
	}
	if accepted, refused := dnsSrv.counts(); accepted < 2 || refused != 0 {
		t.Fatalf("DNS updates: %d accepted, %d refused; want the TXT records added and removed with a valid signature", accepted, refused)
	}

	// A client verifies the tunnel listener against Pebble's root. It
	// dials the address but checks the server's name, as it would with
	// real DNS.
	app := tlsStartApp(t)
	clientLogs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client log:\n%s", clientLogs)
		}
	})
	ccfg := client.DefaultConfig()
	ccfg.Servers = []string{"wss://" + srv.TunnelAddr().String()}
	ccfg.InspectAddr = ""
	urls := make(chan string, 4)
	c, err := client.New(ccfg, []client.Spec{
		{Name: "web", Config: client.TunnelConfig{Proto: "http", Addr: app, Subdomain: "web", HTTPSRedirect: true, HSTSMaxAge: 3600}},
		{Name: "custom", Config: client.TunnelConfig{Proto: "http", Addr: app, Hostname: "app.custom.test"}},
	}, client.Deps{
		Logger: slog.New(slog.NewTextHandler(clientLogs, nil)),
		TLS:    &tls.Config{RootCAs: roots, ServerName: "acme.test", MinVersion: tls.VersionTLS12},
		OnEvent: func(e client.Event) {
			if e.Kind == client.EventForwarding {
				urls <- e.Tunnel.URL
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	cdone := make(chan error, 1)
	go func() { cdone <- c.Run(cctx) }()
	stopClient := sync.OnceFunc(func() { ccancel(); <-cdone })
	t.Cleanup(stopClient)
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case u := <-urls:
			got[u] = true
		case err := <-cdone:
			t.Fatalf("client stopped: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatalf("tunnels not up; got %v", got)
		}
	}
	webURL := fmt.Sprintf("https://web.acme.test:%d", httpsPort)
	customURL := fmt.Sprintf("https://app.custom.test:%d", httpsPort)
	if !got[webURL] || !got[customURL] {
		t.Fatalf("Forwarding URLs %v; want %s and %s", got, webURL, customURL)
	}

	v := newTLSVisitor(roots, cfg.HTTPSAddr)
	resp, err := v.Get(webURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "hello from the app (https)") || resp.ProtoMajor != 2 {
		t.Fatalf("GET %s: %s HTTP/%d %q", webURL, resp.Status, resp.ProtoMajor, body)
	}
	if hsts := resp.Header.Get("Strict-Transport-Security"); hsts != "max-age=3600" {
		t.Errorf("Strict-Transport-Security %q, want max-age=3600", hsts)
	}
	// Plain HTTP is redirected to the same path over HTTPS.
	plain := newTLSVisitor(nil, cfg.HTTPAddr)
	resp, err = plain.Get(fmt.Sprintf("http://web.acme.test:%d/a/b?c=d", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusPermanentRedirect || loc != webURL+"/a/b?c=d" {
		t.Errorf("plain HTTP: %s Location %q; want 308 to %s/a/b?c=d", resp.Status, loc, webURL)
	}
	if resp.Header.Get("Strict-Transport-Security") != "" {
		t.Error("HSTS sent over plain HTTP (RFC 6797 section 7.2 forbids it)")
	}

	// The verified custom domain gets its certificate at its first
	// handshake.
	before := ts.Certs.Stats().ACME.New.Attempts
	status, body2, _ := v.get(t, customURL+"/")
	if status != 200 || !strings.Contains(body2, "hello from the app") {
		t.Fatalf("GET %s: %d %q", customURL, status, body2)
	}
	if names := v.lastCert().DNSNames; !slices.Equal(names, []string{"app.custom.test"}) {
		t.Fatalf("custom domain served a certificate for %v", names)
	}
	if n := ts.Certs.Stats().ACME.New.Attempts - before; n != 1 {
		t.Fatalf("%d issuance attempts for the custom domain, want 1", n)
	}

	// Names nobody verified: refused at the decision, before any order.
	st0 := ts.Certs.Stats()
	for _, name := range []string{"unknown.example.net", "other.custom.test", "127.0.0.1.nip.example"} {
		conn, err := tls.Dial("tcp", cfg.HTTPSAddr, &tls.Config{ServerName: name, RootCAs: roots})
		if err == nil {
			conn.Close()
			t.Errorf("handshake for unverified %s succeeded", name)
		}
	}
	st1 := ts.Certs.Stats()
	if st1.ACME.New.Attempts != st0.ACME.New.Attempts {
		t.Fatalf("unknown names caused %d issuance attempts, want 0", st1.ACME.New.Attempts-st0.ACME.New.Attempts)
	}
	if st1.OnDemandRefused-st0.OnDemandRefused != 3 {
		t.Fatalf("%d on-demand refusals, want 3", st1.OnDemandRefused-st0.OnDemandRefused)
	}

	// HTTP-01, answered on the public HTTP listener, by a second server
	// on the same ports (Pebble validates there).
	stopClient()
	srv.Shutdown()
	ts.Close()
	_, ts2, cfg2 := tlsStartACMEServer(t, ca, httpPort, httpsPort, certs.ACMEConfig{
		OnDemand:   true,
		Challenges: []string{certs.ChallengeHTTP01},
	}, domains)
	if got := tlsHandshakeCertVerified(t, cfg2.HTTPSAddr, "http.custom.test", roots); !slices.Equal(got.DNSNames, []string{"http.custom.test"}) {
		t.Fatalf("HTTP-01 domain served a certificate for %v", got.DNSNames)
	}
	if st := ts2.Certs.Stats(); st.ACME.New.Attempts != 1 || st.ACME.New.Obtained != 1 {
		t.Fatalf("HTTP-01 server: %+v, want one attempt, one certificate", st.ACME.New)
	}
}

// TestTLSACMERenewal: with certificates that live 30 seconds, the
// wildcard is renewed in the background while the server runs, the next
// handshake gets the new certificate, and the renewal shows in the stats
// and the log.
func TestTLSACMERenewal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Pebble")
	}
	dnsSrv := startTLSDNS(t, "acme.test")
	httpPort, httpsPort := freePort(t), freePort(t)
	ca := tlsStartPebble(t, dnsSrv.Addr, httpPort, httpsPort, 30*time.Second)
	_, ts, cfg := tlsStartACMEServer(t, ca, httpPort, httpsPort, certs.ACMEConfig{
		Wildcard:           true,
		RenewalWindowRatio: 0.7, // renew 9 s after issuance
		RenewCheckInterval: config.Duration(time.Second),
		DNS: certs.DNSConfig{
			Provider:             "rfc2136",
			SkipPropagationCheck: true,
			Resolvers:            []string{dnsSrv.Addr},
			RFC2136:              certs.RFC2136Config{Server: dnsSrv.Addr, KeyName: dnsSrv.KeyName, Key: dnsSrv.Secret},
		},
	}, nil)
	roots := tlsCertPool(ca.Root)
	waitFor(t, "the wildcard certificate", 60*time.Second, func() bool { return ts.Certs.Stats().ACME.New.Obtained >= 2 })
	first := tlsHandshakeCertVerified(t, cfg.HTTPSAddr, "a.acme.test", roots)
	waitFor(t, "a renewal", 60*time.Second, func() bool { return ts.Certs.Stats().ACME.Renewal.Obtained >= 1 })
	waitFor(t, "the renewed certificate in use", 10*time.Second, func() bool {
		return tlsHandshakeCertVerified(t, cfg.HTTPSAddr, "a.acme.test", roots).SerialNumber.Cmp(first.SerialNumber) != 0
	})
	st := ts.Certs.Stats()
	var expiry time.Time
	for _, c := range st.Certificates {
		if c.Name == "*.acme.test" {
			expiry = c.NotAfter
		}
	}
	if !expiry.After(first.NotAfter) {
		t.Errorf("stats show the wildcard expiring at %v, not after the first certificate's %v", expiry, first.NotAfter)
	}
	t.Logf("ACME operations: %+v", st.ACME)
	if st.ACME.Renewal.Attempts < 1 || st.ACME.Renewal.Failed != 0 {
		t.Errorf("renewal counts %+v", st.ACME.Renewal)
	}
}

// tlsStartACMEServer starts an in-process server for acme.test whose ACME
// certificates come from ca, with the test's verified domains.
func tlsStartACMEServer(t *testing.T, ca *tlsPebbleCA, httpPort, httpsPort int, acme certs.ACMEConfig, domains *tlsVerifiedDomains) (*server.Server, *server.TLSSetup, server.Config) {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	cfg := server.DefaultConfig()
	cfg.Domain = "acme.test"
	cfg.HTTPAddr = "127.0.0.1:" + strconv.Itoa(httpPort)
	cfg.HTTPSAddr = "127.0.0.1:" + strconv.Itoa(httpsPort)
	cfg.TunnelAddr = "127.0.0.1:0"
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.NoAuth = true
	acme.Email, acme.CA, acme.CARoot = "ops@acme.test", ca.Directory, ca.ListenerCertFile
	cfg.TLS.ACME = acme
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tdeps := server.TLSDeps{Logger: log}
	if domains != nil {
		tdeps.Domains = domains
	} else {
		domains = &tlsVerifiedDomains{}
	}
	ts, err := server.LoadTLS(ctx, &cfg, tdeps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	srv, err := server.New(cfg, server.Deps{Logger: log, TLS: ts.Config, Certs: ts.Certs, Policy: tlsVerifiedPolicy{domains: domains}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })
	return srv, ts, cfg
}

// tlsHandshakeCertVerified dials addr with SNI name, verifies the chain
// against roots and returns the leaf.
func tlsHandshakeCertVerified(t *testing.T, addr, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		t.Fatalf("handshake with %s (SNI %s): %v", addr, name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeDomains is a fixed set of verified names that records every
// question.
type fakeDomains struct {
	mu      sync.Mutex
	allowed map[string]bool
	asked   []string
}

func (f *fakeDomains) Allowed(_ context.Context, host string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, host)
	if f.allowed[host] {
		return nil
	}
	return fmt.Errorf("%s is not verified", host)
}

// handshake runs a TLS handshake against cfg over a pipe and returns the
// server's error.
func handshake(t *testing.T, cfg *tls.Config, sni string) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		c := tls.Client(b, &tls.Config{ServerName: sni, InsecureSkipVerify: true}) //nolint:gosec // only the server side matters
		c.Handshake()
		c.Close()
	}()
	s := tls.Server(a, cfg)
	// The handshake's context bounds an on-demand issuance (certmagic
	// would otherwise retry for up to three minutes).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return s.HandshakeContext(ctx)
}

// TestOnDemandRefusesUnknownNames: a name that is not a verified custom
// domain never leads to an issuance attempt, whatever a client sends as
// SNI. The CA address is unreachable: nothing may try it.
func TestOnDemandRefusesUnknownNames(t *testing.T) {
	domains := &fakeDomains{allowed: map[string]bool{"shop.customer.test": true}}
	m, err := New(Options{
		Domain:    "tunnel.example.test",
		DataDir:   t.TempDir(),
		HTTPAddr:  "127.0.0.1:1",
		HTTPSAddr: "127.0.0.1:2",
		Config:    Config{ACME: ACMEConfig{OnDemand: true, CA: "https://127.0.0.1:1/directory"}},
		Checker:   domains,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cfg := m.TLSConfig()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x, want TLS 1.2", cfg.MinVersion)
	}

	for _, sni := range []string{
		"evil.example.net",            // unknown
		"other.customer.test",         // a sibling of a verified name
		"x.tunnel.example.test",       // under the wildcard's domain
		"tunnel.example.test",         // the apex
		"shop.customer.test.evil.net", // a verified name as a prefix
	} {
		if err := handshake(t, cfg, sni); err == nil {
			t.Errorf("handshake for %s succeeded without a certificate", sni)
		}
	}
	st := m.Stats()
	if st.ACME.New.Attempts != 0 {
		t.Fatalf("%d issuance attempts for unverified names, want 0", st.ACME.New.Attempts)
	}
	if st.OnDemandRefused != 5 || st.OnDemandAllowed != 0 {
		t.Fatalf("decisions: %d refused, %d allowed; want 5 and 0", st.OnDemandRefused, st.OnDemandAllowed)
	}
	// Names under the server's own domain are refused before the checker
	// is even asked.
	domains.mu.Lock()
	asked := len(domains.asked)
	domains.mu.Unlock()
	if asked != 3 {
		t.Errorf("checker asked %d times, want 3 (%v)", asked, domains.asked)
	}

	// A verified name is let through to the CA: one attempt (which fails
	// here, the CA being unreachable).
	handshake(t, cfg, "shop.customer.test")
	if st := m.Stats(); st.ACME.New.Attempts != 1 || st.OnDemandAllowed != 1 {
		t.Fatalf("verified name: %d attempts, %d allowed; want 1 and 1", st.ACME.New.Attempts, st.OnDemandAllowed)
	}
}

func TestOnDemandWithoutChecker(t *testing.T) {
	m, err := New(Options{
		Domain: "tunnel.example.test", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:1",
		Config: Config{ACME: ACMEConfig{OnDemand: true, CA: "https://127.0.0.1:1/directory"}},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := handshake(t, m.TLSConfig(), "shop.customer.test"); err == nil {
		t.Fatal("handshake succeeded")
	}
	if st := m.Stats(); st.ACME.New.Attempts != 0 || st.OnDemandRefused != 1 {
		t.Fatalf("stats %+v", st)
	}
	// No HTTPS listener: TLS-ALPN-01 is off, so no acme-tls/1 is offered.
	if len(m.TLSConfig().NextProtos) != 0 {
		t.Errorf("NextProtos %v without an HTTPS listener", m.TLSConfig().NextProtos)
	}
}

// TestFilesWithOnDemand: the file certificate serves the server's own
// names (and clients that send no name); other names go to the on-demand
// gate.
func TestFilesWithOnDemand(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testPair(t, dir, 7, "*.tunnel.example.test", "tunnel.example.test")
	domains := &fakeDomains{}
	m, err := New(Options{
		Domain: "tunnel.example.test", CertFile: certFile, KeyFile: keyFile,
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:1", HTTPSAddr: "127.0.0.1:2",
		Config:  Config{ACME: ACMEConfig{OnDemand: true, CA: "https://127.0.0.1:1/directory"}},
		Checker: domains,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, sni := range []string{"", "tunnel.example.test", "a.tunnel.example.test"} {
		if got := serial(t, m, sni); got != 7 {
			t.Errorf("SNI %q: serial %d, want the file certificate", sni, got)
		}
	}
	if err := handshake(t, m.TLSConfig(), "shop.customer.test"); err == nil {
		t.Error("unverified custom domain got a certificate")
	}
	if st := m.Stats(); st.ACME.New.Attempts != 0 || st.OnDemandRefused != 1 {
		t.Errorf("stats %+v", st)
	}
	// TLS-ALPN-01 stays possible next to the file certificate.
	if protos := m.TLSConfig().NextProtos; len(protos) != 1 || protos[0] != "acme-tls/1" {
		t.Errorf("NextProtos %v, want acme-tls/1", protos)
	}
}

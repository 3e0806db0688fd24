package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/tunneltest"
)

// selfSigned returns a certificate for localhost and *.localhost.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost", "*.localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestLimitVisitorConnectionsPerIPOverTLS: on the HTTPS listener a visitor
// over visitor_connections_per_ip gets its 429 over TLS, readable by an
// HTTPS client, not plain text before the handshake.
func TestLimitVisitorConnectionsPerIPOverTLS(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.HTTPAddr, cfg.HTTPSAddr, cfg.TunnelAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.DataDir = t.TempDir()
	cfg.NoAuth = true
	cfg.TLSCert, cfg.TLSKey = "unused.pem", "unused.key" // the certificate comes in Deps.TLS
	cfg.Limits.VisitorConnectionsPerIP = 1
	log, _ := tunneltest.NewLogger(t, "server")
	srv, err := server.New(cfg, server.Deps{Logger: log, TLS: &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })
	addr := srv.HTTPSAddr().String()
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the test's own certificate
		DisableKeepAlives: true,
	}}
	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = hc.Get("https://" + addr + "/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests {
				break
			}
		}
	}
	if err != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
		resp.Header.Get("X-Porthole-Error") != string(limits.VisitorConnections) {
		t.Fatalf("second HTTPS connection from one address: %v %v, want a 429 over TLS", statusOf(resp), err)
	}
}

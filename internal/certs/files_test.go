package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPair writes a self-signed certificate for names into dir.
func testPair(t *testing.T, dir string, serial int64, names ...string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(90 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	replace(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	replace(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	return certFile, keyFile
}

// replace swaps path's content by rename, as renewal tools do.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func serial(t *testing.T, m *Manager, sni string) int64 {
	t.Helper()
	c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.Int64()
}

func TestFilesReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testPair(t, dir, 1, "*.example.test", "example.test")
	var logs syncBuffer
	m, err := New(Options{
		Domain: "example.test", CertFile: certFile, KeyFile: keyFile,
		Config: Config{ReloadInterval: 20 * 1e6}, // 20ms
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := serial(t, m, "a.example.test"); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	if !strings.Contains(logs.String(), `pin="sha256:`) {
		t.Errorf("the start log does not show the pin:\n%s", logs.String())
	}

	// A broken certificate file: the old certificate stays.
	replace(t, certFile, []byte("not a certificate"))
	waitUntil(t, func() bool { return m.Stats().ReloadFailures > 0 })
	if got := serial(t, m, "a.example.test"); got != 1 {
		t.Fatalf("after a failed reload: serial %d, want 1", got)
	}

	testPair(t, dir, 2, "*.example.test", "example.test")
	waitUntil(t, func() bool { return serial(t, m, "a.example.test") == 2 })
	st := m.Stats()
	if st.Reloads != 1 || len(st.Certificates) != 1 || st.Certificates[0].Name != "*.example.test" || st.Certificates[0].Source != "file" {
		t.Fatalf("stats %+v", st)
	}
}

func TestFilesReloadOnSignalOnly(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testPair(t, dir, 1, "example.test")
	reload := make(chan os.Signal, 1)
	m, err := New(Options{
		Domain: "example.test", CertFile: certFile, KeyFile: keyFile,
		Config: Config{ReloadInterval: -1}, Reload: reload,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	testPair(t, dir, 2, "example.test")
	time.Sleep(50 * time.Millisecond)
	if got := serial(t, m, ""); got != 1 {
		t.Fatalf("reloaded without a signal: serial %d", got)
	}
	reload <- os.Interrupt
	waitUntil(t, func() bool { return serial(t, m, "") == 2 })
}

func TestNewFailsOnBadFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, _ := testPair(t, dir, 1, "example.test")
	_, otherKey := testPair(t, t.TempDir(), 2, "example.test")
	if _, err := New(Options{CertFile: certFile, KeyFile: otherKey, Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Fatal("a certificate with another certificate's key was accepted")
	}
	if _, err := New(Options{Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Fatal("no certificate source was accepted")
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTLSConfigRefusesTLS11(t *testing.T) {
	certFile, keyFile := testPair(t, t.TempDir(), 1, "example.test")
	m, err := New(Options{Domain: "example.test", CertFile: certFile, KeyFile: keyFile, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		max uint16
		ok  bool
	}{{tls.VersionTLS11, false}, {tls.VersionTLS12, true}, {tls.VersionTLS13, true}} {
		a, b := net.Pipe()
		go func() {
			c := tls.Client(b, &tls.Config{ServerName: "example.test", InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: v.max}) //nolint:gosec // testing the server's floor
			c.Handshake()
			c.Close()
		}()
		err := tls.Server(a, m.TLSConfig()).Handshake()
		a.Close()
		if (err == nil) != v.ok {
			t.Errorf("client up to %x: handshake error %v, want ok=%v", v.max, err, v.ok)
		}
	}
}
